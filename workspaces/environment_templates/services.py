"""Template actions: create (from an image or a Dockerfile), build, rebuild, delete.

A Dockerfile template is built by a task on a node's queue, on that node's
engine, under limits: build time, context size, image size, the tenant's
network mode, and every image it names (``FROM``, ``COPY --from``) must pass
the tenant's image policy (so no other tenant's snapshot or template can be
built upon). Before the build, each of those images is made sure of on the
node: pulled there with the matching registry credentials when missing (its
progress in the build log), the policy and scanner gate applied to it exactly as
to a spawn's image. Its log is stored as it grows; REST and the web page read it
while the build runs.
"""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
import time

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Value
from django.db.models.functions import Concat

from core.errors import DevBenchError, EngineError
from tenants.audit import audit_record, audited
from tenants.models import AuditEvent, TenantPolicy
from tenants.principal import Principal, system_principal
from tenants.selectors import tenant_policy_get
from workspaces.environment_templates.errors import (
    InvalidTemplateName,
    TemplateContextTooLarge,
    TemplateImageTooLarge,
    TemplateInUse,
    TemplateInvalid,
    TemplateNotFound,
)
from workspaces.images import image_allowed, image_check
from workspaces.models import (
    TEMPLATE_NAME_VALIDATOR,
    Template,
    TemplateStatus,
)
from workspaces.nodes import node_driver, node_queue
from workspaces.placement import node_place, required_labels
from workspaces.registries.services import (
    image_copies_remove,
    registry_image_delete,
    registry_image_on,
    registry_image_push,
    template_registry,
)
from workspaces.runtime.base import (
    LABEL_INSTANCE,
    LABEL_TENANT,
    BuildSpec,
    PullProgress,
    PullReporter,
)
from workspaces.scanning import image_scan_check, image_scan_findings_check
from workspaces.source_deletion import source_deleting

TEMPLATE_REPOSITORY_PREFIX = "devbench-templates/"
LABEL_TEMPLATE = "devbench.template"
_LOG_FLUSH_S = 0.3
_MAX_LOG_CHARS = 1_000_000
# A pull writes a line per layer event (a layer known or finished), at most this many
# per image: an image of hundreds of layers must not flood the log.
_MAX_PULL_LINES = 200
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I | re.M)
_COPY_FROM_RE = re.compile(r"^\s*(?:COPY|ADD)\s+.*?--from=(\S+)", re.I | re.M)


def _validate_name(name: str) -> None:
    try:
        TEMPLATE_NAME_VALIDATOR(name)
    except Exception as exc:
        raise InvalidTemplateName(str(TEMPLATE_NAME_VALIDATOR.message)) from exc


def dockerfile_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile builds upon (stage names excluded)."""
    stages: set[str] = set()
    images: list[str] = []
    for match in _FROM_RE.finditer(dockerfile):
        ref, alias = match.group(1), match.group(2)
        if ref.lower() not in stages and ref.lower() != "scratch":
            images.append(ref)
        if alias:
            stages.add(alias.lower())
    for match in _COPY_FROM_RE.finditer(dockerfile):
        ref = match.group(1)
        if ref.lower() not in stages and not ref.isdigit():
            images.append(ref)
    return images


def _check_dockerfile(policy: TenantPolicy, dockerfile: str) -> None:
    images = dockerfile_images(dockerfile)
    if not images and "scratch" not in dockerfile.lower():
        raise TemplateInvalid("The Dockerfile has no FROM line.", extra={"field": "dockerfile"})
    for ref in images:
        if "$" in ref:
            raise TemplateInvalid(
                f"'{ref}': build arguments in image names cannot be checked against the "
                "tenant policy; write the image name out.",
                extra={"image": ref},
            )
        image_allowed(policy=policy, image=ref)  # refusals carry their own codes


def _build_context(dockerfile: str, context: bytes) -> bytes:
    """The tar the engine builds: the uploaded context with the Dockerfile at its root."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        if context:
            try:
                with tarfile.open(fileobj=io.BytesIO(context), mode="r:*") as given:
                    for member in given.getmembers():
                        if member.name.lstrip("./") == "Dockerfile":
                            continue
                        data = given.extractfile(member) if member.isfile() else None
                        tar.addfile(member, data)
            except tarfile.TarError as exc:
                raise TemplateInvalid(
                    f"The build context is not a tar archive: {exc}", extra={"field": "context"}
                ) from exc
        body = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def template_create(
    *,
    actor: Principal,
    name: str,
    image: str = "",
    dockerfile: str = "",
    context: bytes = b"",
    description: str = "",
) -> Template:
    """A new version of template ``name``: an image reference (ready at once) or a
    Dockerfile (+ tar context) queued for building on a node."""
    actor.require_scope("write")
    with audited(actor=actor, action="template.create", target_type="template") as audit:
        _validate_name(name)
        if bool(image) == bool(dockerfile):
            raise TemplateInvalid("Give either an image or a Dockerfile.")
        policy = tenant_policy_get(tenant=actor.tenant)
        limit = settings.DEVBENCH_TEMPLATE_CONTEXT_MAX_BYTES
        if len(context) + len(dockerfile.encode()) > limit:
            raise TemplateContextTooLarge(
                f"The Dockerfile and context are {len(context) + len(dockerfile.encode())} "
                f"bytes; the limit is {limit}.",
                extra={"max_bytes": limit},
            )
        if image:
            image = image_allowed(policy=policy, image=image).familiar()
        else:
            _check_dockerfile(policy, dockerfile)
            _build_context(dockerfile, context)  # a bad tar fails now, not in the worker
        template = _new_version(
            actor=actor,
            policy=policy,
            fields={
                "name": name,
                "image": image,
                "dockerfile": dockerfile,
                "context": context,
                "description": description,
            },
        )
        audit.target_id = template.public_id
        audit.details.update(name=name, version=template.version, built=bool(dockerfile))
    return template


def _new_version(*, actor: Principal, policy: TenantPolicy, fields: dict[str, object]) -> Template:
    node = ""
    if fields["dockerfile"]:
        labels = required_labels(policy_labels=policy.node_labels, requested=None)
        node = node_place(labels=labels, memory_bytes=0, cpus=0).name
    with transaction.atomic():
        TenantPolicy.objects.select_for_update().get(pk=policy.pk)  # versions are serial
        latest = Template.objects.filter(tenant=actor.tenant, name=fields["name"]).aggregate(
            v=Max("version")
        )["v"]
        template = Template.objects.create(
            tenant=actor.tenant,
            version=(latest or 0) + 1,
            status=TemplateStatus.BUILDING if node else TemplateStatus.READY,
            node=node,
            created_by_id=actor.user_id,
            **fields,
        )
        if node:
            transaction.on_commit(lambda: template_build_enqueue(template=template))
    return template


def template_build_enqueue(*, template: Template) -> None:
    from workspaces.environment_templates.tasks import template_build_task

    template_build_task.apply_async(args=[template.pk], queue=node_queue(template.node))


def template_rebuild(*, actor: Principal, template: Template) -> Template:
    """Build the template's Dockerfile again, as its next version."""
    actor.require_scope("write")
    if template.tenant_id != actor.tenant.pk:
        raise TemplateNotFound(f"Template '{template.public_id}' not found.")
    if not template.dockerfile:
        raise TemplateInvalid(
            f"Template '{template.name}' names an image; there is nothing to build."
        )
    source = Template.objects.get(pk=template.pk)  # with its context
    return template_create(
        actor=actor,
        name=source.name,
        dockerfile=source.dockerfile,
        context=bytes(source.context),
        description=source.description,
    )


def _append_log(template_id: int, text: str) -> None:
    Template.objects.filter(pk=template_id).update(build_log=Concat(F("build_log"), Value(text)))


def _pull_log(template_id: int, image: str) -> PullReporter:
    """A reporter writing a build log line whenever the pull's layer counts change."""
    seen: list[tuple[int, int]] = []

    def report(progress: PullProgress) -> None:
        key = (progress.layers_total, progress.layers_done)
        if (seen and seen[-1] == key) or len(seen) >= _MAX_PULL_LINES:
            return
        seen.append(key)
        _append_log(
            template_id,
            f"Pulling {image}: {progress.layers_done}/{progress.layers_total} layers, "
            f"{progress.bytes_done} of {progress.bytes_total} bytes\n",
        )

    return report


def _bases_on_node(template: Template, policy: TenantPolicy) -> None:
    """Every image the Dockerfile names, on the building node: pulled there if missing
    (the same path and policy as a spawn's image). A refusal or failed pull fails the
    build with its own code, its reason in the log."""
    for ref in dict.fromkeys(dockerfile_images(template.dockerfile)):
        try:
            image_check(
                policy=policy,
                image=ref,
                node=template.node,
                progress=_pull_log(template.pk, ref),
            )
        except DevBenchError as exc:
            _append_log(template.pk, f"The base image {ref} is not available: {exc.message}\n")
            raise


def template_build_run(*, template_id: int) -> Template | None:
    """The engine side of a build (a task on the template's node): the row ends ready or
    failed, its log stored as it grows."""
    template = Template.objects.select_related("tenant").filter(pk=template_id).first()
    if template is None or template.status != TemplateStatus.BUILDING:
        return template
    policy = tenant_policy_get(tenant=template.tenant)
    repository = f"{TEMPLATE_REPOSITORY_PREFIX}{template.tenant.slug}"
    tag = f"{template.name}-{template.version}"
    spec = BuildSpec(
        context=_build_context(template.dockerfile, bytes(template.context)),
        repository=repository,
        tag=tag,
        labels={
            LABEL_TEMPLATE: template.public_id,
            LABEL_TENANT: template.tenant.slug,
            LABEL_INSTANCE: settings.DEVBENCH_INSTANCE,
        },
        network_mode=policy.network_mode,
        timeout_s=settings.DEVBENCH_TEMPLATE_BUILD_TIMEOUT_S,
        memory_bytes=policy.memory_limit_mb * 1024 * 1024,
    )
    driver = node_driver(template.node)
    pending: list[str] = []
    written = 0
    flushed = time.monotonic()
    try:
        _bases_on_node(template, policy)
        build = driver.image_build(spec)
        while True:
            try:
                line = next(build)
            except StopIteration as done:
                image_id = str(done.value)
                break
            if written < _MAX_LOG_CHARS:
                pending.append(line + "\n")
                written += len(line) + 1
            if time.monotonic() - flushed >= _LOG_FLUSH_S:
                _append_log(template.pk, "".join(pending))
                pending.clear()
                flushed = time.monotonic()
        _append_log(template.pk, "".join(pending))
        pending.clear()
        info = driver.image_inspect(image_id)
        if info.size > settings.DEVBENCH_TEMPLATE_MAX_IMAGE_BYTES:
            driver.image_remove(f"{repository}:{tag}")
            raise TemplateImageTooLarge(
                f"The built image is {info.size} bytes; the limit is "
                f"{settings.DEVBENCH_TEMPLATE_MAX_IMAGE_BYTES}."
            )
        try:
            # Before the push: a refused image goes nowhere.
            image_scan_findings_check(policy=policy, image=info, name=f"{repository}:{tag}")
        except DevBenchError:
            driver.image_remove(f"{repository}:{tag}")
            raise
        registry_ref = _push(template, image_id=image_id, repository=repository, tag=tag)
    except DevBenchError as exc:
        _append_log(template.pk, "".join(pending))
        Template.objects.filter(pk=template.pk).update(
            status=TemplateStatus.FAILED, error_code=exc.code, status_message=exc.message
        )
        audit_record(
            actor=system_principal(template.tenant),
            action="template.build",
            outcome=AuditEvent.Outcome.ERROR,
            target_type="template",
            target_id=template.public_id,
            error_code=exc.code,
        )
        template.refresh_from_db()
        return template
    Template.objects.filter(pk=template.pk).update(
        status=TemplateStatus.READY,
        image_ref=f"{repository}:{tag}",
        image_id=image_id,
        registry_ref=registry_ref,
    )
    template.refresh_from_db()
    return template


def _push(template: Template, *, image_id: str, repository: str, tag: str) -> str:
    """Push a built image to the template registry (if one is set), so any node can spawn
    it; its progress goes to the build log. A failed push fails the build (its image is
    removed): a template that only one node could spawn would fail later, elsewhere."""
    host = template_registry()
    if not host:
        return ""
    _append_log(template.pk, f"Pushing the image to {host}/{repository}:{tag}\n")
    try:
        ref = registry_image_push(
            node=template.node, source=image_id, repository=repository, tag=tag, host=host
        )
    except DevBenchError as exc:
        _append_log(template.pk, f"The push failed: {exc.message}\n")
        with contextlib.suppress(DevBenchError):
            node_driver(template.node).image_remove(f"{repository}:{tag}")
        raise
    _append_log(template.pk, f"Pushed {ref}\n")
    return ref


def template_delete(*, actor: Principal, template: Template) -> None:
    """Delete one template version, its built image on the nodes and its copy in the
    template registry; refused while in use."""
    with source_deleting(
        actor=actor, source=template, not_found=TemplateNotFound, in_use=TemplateInUse.spawned_from
    ) as (row, audit):
        if row.registry_ref:
            # First, so that a refusal leaves everything as it was (the call can be repeated).
            audit.details["registry_deleted"] = registry_image_delete(registry_ref=row.registry_ref)
            image_copies_remove(registry_ref=row.registry_ref, except_node=row.node)
        if row.image_ref:
            try:
                node_driver(row.node).image_remove(row.image_ref)
            except EngineError as exc:
                if exc.code == "engine_conflict":
                    raise TemplateInUse(f"The image of template '{row}' is in use.") from exc
                raise


def template_image(
    *,
    policy: TenantPolicy,
    template: Template,
    node: str,
    pull: bool = True,
    progress: PullReporter | None = None,
) -> str:
    """The image id a workspace of this template runs on ``node`` (pulled there if need be;
    ``pull=False``: PullNeeded instead)."""
    if template.image:
        return image_check(
            policy=policy, image=template.image, node=node, pull=pull, progress=progress
        ).info.id
    info = registry_image_on(
        node=node,
        image_id=template.image_id,
        registry_ref=template.registry_ref,
        pull=pull,
        progress=progress,
    )
    if info.labels.get(LABEL_TEMPLATE) != template.public_id:
        raise TemplateNotFound(f"Template '{template.public_id}' has no image on node {node}.")
    image_scan_check(policy=policy, image=info, name=template.image_ref)
    return info.id
