"""Pulls from a real registry with authentication; credentials encrypted; policy applies."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import signal
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from django.core.cache import cache
from django.test import Client

from core.errors import ImageNotFound, PolicyDenied
from tenants.models import AuditEvent, TenantPolicy
from tests.environments.conftest import BUSYBOX, sh, spawn, wait_for
from tests.factories import TenantFactory
from tests.mcp_live import mcp_call, ok
from workspaces.environment_templates.services import template_build_run, template_create
from workspaces.models import Registry, Snapshot, Template, TemplateStatus
from workspaces.registries.crypto import decrypt
from workspaces.registries.services import registry_save
from workspaces.runtime import get_driver
from workspaces.runtime.base import PullProgress, RegistryAuth, RegistryAuthFailed
from workspaces.services import workspace_spawn

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def _push_new_image(registry, repository: str) -> dict[str, str]:
    """An image of its own (busybox plus a layer of 2 MB random bytes and a label) pushed as
    <repository>:1, then removed from the engine: no layer of its own is there."""
    client = docker.APIClient(version="auto")
    helper = client.create_container(
        BUSYBOX,
        command=["/bin/sh", "-c", "head -c 2000000 /dev/urandom > /blob"],
        user="0",
        host_config=client.create_host_config(network_mode="none"),
    )["Id"]
    client.start(helper)
    assert client.wait(helper)["StatusCode"] == 0
    client.commit(helper, repository=repository, tag="1", changes=[f"LABEL pushed={helper}"])
    client.remove_container(helper)
    auth = {"username": registry.username, "password": registry.password}
    digest = ""
    for event in client.push(repository, tag="1", stream=True, decode=True, auth_config=auth):
        assert "error" not in event, event
        if "digest: " in str(event.get("status", "")):
            digest = str(event["status"]).split("digest: ")[1].split()[0]
    client.remove_image(f"{repository}:1")
    assert digest.startswith("sha256:")
    return {"ref": f"{repository}:1", "repository": repository, "digest": digest}


def _removed_at_the_end(image: dict[str, str]) -> Iterator[dict[str, str]]:
    # The registry's port is new each run: a copy left on the engine would stay for good.
    yield image
    with contextlib.suppress(docker.errors.NotFound):
        docker.APIClient(version="auto").remove_image(image["ref"], force=True)


@pytest.fixture(scope="module")
def pushed(registry) -> Iterator[dict[str, str]]:
    """<registry>/team/tool:1, for the module's tests (which pull it again and again)."""
    yield from _removed_at_the_end(_push_new_image(registry, f"{registry.host}/team/tool"))


@pytest.fixture
def never_pulled(registry) -> Iterator[dict[str, str]]:
    """<registry>/team/fresh:1, a new image for one test: no layer of it is on the engine,
    not even under an image an earlier test's workspace still holds."""
    yield from _removed_at_the_end(_push_new_image(registry, f"{registry.host}/team/fresh"))


def _forget(ref: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        docker.APIClient(version="auto").remove_image(ref, force=True)
    cache.clear()  # what the platform remembers of images on the engine


def _credentials(tenant, registry, password: str) -> Registry:
    return registry_save(
        actor=None,
        registry=Registry(tenant=tenant, host=registry.host, username=registry.username),
        password=password,
    )


def test_pull_with_credentials_on_spawn(live_worker, actor, tenant, registry, pushed, kill_after):
    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    row = _credentials(tenant, registry, registry.password)
    # Encrypted at rest: the column never holds the password.
    assert registry.password not in row.password_encrypted
    assert decrypt(Registry.objects.get(pk=row.pk).password_encrypted) == registry.password

    workspace = spawn(actor, kill_after, image=pushed["ref"])
    assert sh(workspace, "echo pulled") == "pulled\n"
    assert get_driver().image_inspect(pushed["ref"]).id == workspace.image_id
    for event in AuditEvent.objects.all():
        assert registry.password not in str(event.details)


def test_wrong_credentials_are_a_clear_error(live_worker, actor, tenant, registry, pushed):
    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    _credentials(tenant, registry, "not-the-password")
    with pytest.raises(RegistryAuthFailed) as refused:
        workspace_spawn(actor=actor, image=pushed["ref"])
    assert refused.value.code == "registry_auth_failed"
    assert registry.host in refused.value.message
    assert "not-the-password" not in refused.value.message
    with pytest.raises(ImageNotFound):
        get_driver().image_inspect(pushed["ref"])


def test_allow_list_and_digest_pinning_apply_before_any_pull(
    live_worker, actor, tenant, registry, pushed, kill_after
):
    _forget(pushed["ref"])
    _credentials(tenant, registry, registry.password)
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=["devbench/*"])
    with pytest.raises(PolicyDenied) as not_allowed:
        workspace_spawn(actor=actor, image=pushed["ref"])
    assert not_allowed.value.code == "image_not_allowed"
    TenantPolicy.objects.filter(tenant=tenant).update(
        allowed_images=[f"{registry.host}/team/*"], require_digest=True
    )
    with pytest.raises(PolicyDenied) as unpinned:
        workspace_spawn(actor=actor, image=pushed["ref"])
    assert unpinned.value.code == "digest_required"
    with pytest.raises(ImageNotFound):  # neither refusal pulled anything
        get_driver().image_inspect(pushed["ref"])

    pinned = f"{pushed['repository']}@{pushed['digest']}"
    workspace = spawn(actor, kill_after, image=pinned)
    assert sh(workspace, "echo pinned") == "pinned\n"


@pytest.mark.django_db
def test_admin_keeps_the_password_write_only_and_tenant_scoped():
    from django.test import Client

    from tests.factories import MembershipFactory, TenantFactory, UserFactory

    mine, theirs = TenantFactory(), TenantFactory()
    admin_user = UserFactory(is_staff=True)
    MembershipFactory(user=admin_user, tenant=mine, role="admin")
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/workspaces/registry/add/",
        {"tenant": mine.pk, "host": "registry.example:5000", "username": "u", "password": "pw-1"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = Registry.objects.get(tenant=mine)
    assert decrypt(row.password_encrypted) == "pw-1" and "pw-1" not in row.password_encrypted
    page = client.get(f"/admin/workspaces/registry/{row.pk}/change/").content.decode()
    assert "pw-1" not in page and row.password_encrypted not in page
    # Saving without a password keeps the stored one.
    client.post(
        f"/admin/workspaces/registry/{row.pk}/change/",
        {"tenant": mine.pk, "host": "registry.example:5000", "username": "u2", "password": ""},
    )
    row.refresh_from_db()
    assert row.username == "u2" and decrypt(row.password_encrypted) == "pw-1"
    assert AuditEvent.objects.filter(action="registry.save").count() == 2
    assert "pw-1" not in str(list(AuditEvent.objects.values_list("details", flat=True)))

    other = Registry.objects.create(tenant=theirs, host="theirs.example")
    installation = Registry.objects.create(tenant=None, host="all.example")
    listing = client.get("/admin/workspaces/registry/").content.decode()
    assert "theirs.example" not in listing and "all.example" not in listing
    for hidden in (other, installation):
        assert client.get(f"/admin/workspaces/registry/{hidden.pk}/change/").status_code == 302


def test_a_pull_reports_layers_and_bytes(registry, never_pulled):
    # An image whose layers the engine lacks: the module's own image may still be held
    # (untagged) by a workspace of an earlier test, whose kill is a task.
    seen: list[PullProgress] = []
    auth = RegistryAuth(username=registry.username, password=registry.password)
    get_driver().image_pull(never_pulled["ref"], auth=auth, progress=seen.append)
    assert seen, "no progress was reported"
    last = seen[-1]
    assert last.image == never_pulled["ref"]
    assert last.layers_total >= 1 and last.layers_done == last.layers_total
    assert last.bytes_total > 0 and last.bytes_done == last.bytes_total
    for before, after in itertools.pairwise(seen):  # it only moves forward
        assert after.layers_done >= before.layers_done
        assert after.layers_total >= before.layers_total


@contextlib.contextmanager
def _frozen(registry) -> Iterator[None]:
    """The registry stops answering (SIGSTOP) until the block ends: a pull in flight waits."""
    registry.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        registry.proc.send_signal(signal.SIGCONT)


def test_a_spawn_shows_its_pull_on_every_interface(
    live_worker, live_mcp, api, token, tenant, registry, pushed, make_token
):
    from websockets.sync.client import connect

    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    _credentials(tenant, registry, registry.password)
    url = live_mcp.base_url.replace("http://", "ws://")
    with _frozen(registry):
        answer = api.post(
            "/api/v1/workspaces",
            json.dumps({"image": pushed["ref"], "wait": False}),
            content_type="application/json",
        )
        assert answer.status_code == 202, answer.content
        workspace_id = answer.json()["id"]
        pulling = {"phase": "pulling", "image": pushed["ref"]}
        # The spawn answered at once; the node's worker pulls the image.
        got = api.get(f"/api/v1/workspaces/{workspace_id}").json()
        assert got["status"] == "creating" and got["image_id"] == ""
        assert {k: got["progress"][k] for k in pulling} == pulling, got
        listed = ok(
            mcp_call(
                live_mcp.mcp_url(tenant.slug), token.raw, "list_containers", {"status": "creating"}
            )
        )
        assert [w["progress"]["phase"] for w in listed["items"]] == ["pulling"]
        status = Client()
        status.force_login(_member(tenant))
        page = status.get(f"/t/{tenant.slug}/workspaces/{workspace_id}/status").json()
        assert page["progress"]["phase"] == "pulling"
        # Another tenant's websocket is refused like a missing workspace.
        other = make_token(TenantFactory())
        with connect(
            f"{url}/ws/workspaces/{workspace_id}/progress",
            additional_headers={"Authorization": f"Bearer {other.raw}"},
        ) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "error" and first["code"] == "workspace_not_found"
        ws = connect(
            f"{url}/ws/workspaces/{workspace_id}/progress",
            additional_headers={"Authorization": f"Bearer {token.raw}"},
        )
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "progress" and first["phase"] == "pulling", first
    frames = [json.loads(raw) for raw in ws]  # the registry answers again: the pull ends
    ws.close()
    assert frames[-1] == {
        "type": "complete",
        "status": "running",
        "error_code": "",
        "status_message": "",
    }, frames
    done = api.get(f"/api/v1/workspaces/{workspace_id}").json()
    assert done["status"] == "running" and done["progress"] is None
    assert done["image_id"] == get_driver().image_inspect(pushed["ref"]).id
    api.delete(f"/api/v1/workspaces/{workspace_id}")


def _member(tenant):
    from tests.factories import MembershipFactory, UserFactory

    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="member")
    return user


def test_registry_credentials_never_leave_the_platform(
    live_worker, live_mcp, api, token, tenant, actor, registry, pushed, settings, caplog
):
    """Pulls, pushes, a refused pull, snapshots through the registry and their deletion,
    on REST and MCP: the password is in no answer, no audit event and no log line (of
    this process, the worker or the web process), nor is the engine's auth header."""
    from django.forms.models import model_to_dict

    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + "registry-password"
    secrets = [registry.password, wrong]
    headers = [
        docker.auth.encode_header({"username": registry.username, "password": p}).decode()
        for p in secrets
    ]
    answers: list[str] = []

    def rest(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = getattr(api, method)(
            path, json.dumps(body) if body else None, content_type="application/json"
        )
        answers.append(response.content.decode())
        return response

    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    row = registry_save(
        actor=actor,
        registry=Registry(tenant=tenant, host=registry.host, username=registry.username),
        password=wrong,
    )
    refused = rest("post", "/api/v1/workspaces", {"image": pushed["ref"]})
    assert refused.json()["code"] == "registry_auth_failed", refused.content
    registry_save(actor=actor, registry=row, password=registry.password)
    spawned = rest("post", "/api/v1/workspaces", {"image": pushed["ref"], "alias": "secretive"})
    assert spawned.status_code == 201, spawned.content
    rest("get", "/api/v1/workspaces/secretive")

    settings.DEVBENCH_SNAPSHOT_REGISTRY = registry.host
    registry_save(
        actor=None,
        registry=Registry(tenant=None, host=registry.host, username=registry.username),
        password=registry.password,
    )
    snapshot = rest("post", "/api/v1/workspaces/secretive/snapshots", {"name": "pushed"}).json()
    assert Snapshot.objects.get(public_id=snapshot["id"]).registry_ref
    rest("get", "/api/v1/snapshots")
    rest("get", f"/api/v1/snapshots/{snapshot['id']}")
    url = live_mcp.mcp_url(tenant.slug)
    for tool in ("list_containers", "snapshot_list"):
        answers.append(json.dumps(ok(mcp_call(url, token.raw, tool, {}))))
    rest("delete", "/api/v1/workspaces/secretive")
    assert rest("delete", f"/api/v1/snapshots/{snapshot['id']}").status_code == 204

    audit = [str(model_to_dict(event)) for event in AuditEvent.objects.all()]
    assert any("registry.save" in event for event in audit)
    logs = [
        caplog.text,
        live_worker.log_path.read_text(errors="replace"),
        live_mcp.log_path.read_text(errors="replace"),
    ]
    assert "pull " in logs[0] + logs[1]  # the pulls were logged, per layer
    for text in answers + audit + logs:
        for secret in secrets + headers:
            assert secret not in text


def test_the_scan_gate_judges_a_pulled_image_after_its_pull(
    live_worker, actor, tenant, registry, pushed
):
    from workspaces.models import Workspace

    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(
        allowed_images=[f"{registry.host}/team/*"], image_scan_block_severity="HIGH"
    )
    _credentials(tenant, registry, registry.password)
    try:
        # The request cannot judge an image it has not got: its provisioning pulls it and
        # the gate (on, with no report for this image) refuses it there.
        with pytest.raises(PolicyDenied) as refused:
            workspace_spawn(actor=actor, image=pushed["ref"])
        assert refused.value.code == "image_not_scanned"
        row = Workspace.objects.get(tenant=tenant, image_ref=pushed["ref"])
        assert (row.status, row.error_code, row.container_id) == ("error", "image_not_scanned", "")
        get_driver().image_inspect(pushed["ref"])  # judged after the pull, so it is here
    finally:
        _forget(pushed["ref"])


def _built(template: Template) -> Template:
    """The template once its build has ended (the node's worker builds it)."""
    return wait_for(
        lambda: (
            Template.objects.exclude(status=TemplateStatus.BUILDING).filter(pk=template.pk).first()
        ),
        timeout_s=300,
        what="the template build to end",
    )


def test_template_build_pulls_its_base_image(live_worker, actor, tenant, registry, pushed):
    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    _credentials(tenant, registry, registry.password)
    template = template_create(
        actor=actor,
        name="from-registry",
        dockerfile=(
            f"FROM {pushed['ref']} AS base\nFROM base\nRUN test -s /blob && echo blob-there\n"
        ),
    )
    done = _built(template)
    assert done.status == TemplateStatus.READY, done.build_log
    # One line per layer event, then the build itself on top of the pulled image.
    assert f"Pulling {pushed['ref']}: " in done.build_log
    assert "layers" in done.build_log and "blob-there" in done.build_log
    base = get_driver().image_inspect(pushed["ref"])
    built = get_driver().image_inspect(done.image_id)
    assert built.labels["pushed"] == base.labels["pushed"]  # built upon the pulled image
    assert registry.password not in done.build_log


def test_template_base_pull_with_wrong_credentials_fails_the_build(
    live_worker, actor, tenant, registry, pushed
):
    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    _credentials(tenant, registry, "not-the-password")
    template = template_create(
        actor=actor, name="refused-base", dockerfile=f"FROM {pushed['ref']}\nRUN true\n"
    )
    done = _built(template)
    assert done.status == TemplateStatus.FAILED
    assert done.error_code == "registry_auth_failed"
    assert registry.host in done.status_message
    assert f"The base image {pushed['ref']} is not available" in done.build_log
    assert "not-the-password" not in done.build_log + done.status_message
    with pytest.raises(ImageNotFound):
        get_driver().image_inspect(pushed["ref"])


def test_template_base_meets_the_policy_of_build_time(live_worker, actor, tenant, registry, pushed):
    """The policy is applied again when the build runs (it may have changed since the
    template was created): an unpinned base is refused before any pull."""
    _forget(pushed["ref"])
    TenantPolicy.objects.filter(tenant=tenant).update(allowed_images=[f"{registry.host}/team/*"])
    _credentials(tenant, registry, registry.password)
    template = template_create(
        actor=actor, name="unpinned-base", dockerfile=f"FROM {pushed['ref']}\nRUN true\n"
    )
    _built(template)
    TenantPolicy.objects.filter(tenant=tenant).update(require_digest=True)
    again = Template.objects.get(pk=template.pk)
    Template.objects.filter(pk=again.pk).update(status=TemplateStatus.BUILDING, build_log="")
    _forget(pushed["ref"])
    done = template_build_run(template_id=again.pk)
    assert done is not None and done.status == TemplateStatus.FAILED
    assert done.error_code == "digest_required"
    assert f"The base image {pushed['ref']} is not available" in done.build_log
    with pytest.raises(ImageNotFound):  # refused before any pull
        get_driver().image_inspect(pushed["ref"])
