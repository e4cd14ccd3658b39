"""Image references: parsing, the tenant's image policy, resolution to a local image.

References follow the engine's grammar (``[registry[:port]/]path[:tag][@digest]``)
and Docker Hub defaults: ``busybox`` is ``docker.io/library/busybox:latest``.
Policy patterns (fnmatch) match the familiar form (``busybox:latest``), the
fully qualified form, or the bare repository name, so ``devbench/*``,
``python:3.11*`` and ``docker.io/library/python*`` all work as written.

An image not on the node is pulled there when its reference names a registry
host (``workspaces.registries.services``); a workspace then runs that exact
image id even if the tag moves later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from django.conf import settings
from django.core.cache import cache

from core.errors import ImageNotFound, ValidationFailed
from tenants.models import TenantPolicy
from workspaces.errors import DigestRequired, ImageNotAllowed, InvalidImageReference
from workspaces.nodes import node_driver
from workspaces.runtime.base import ImageInfo, PullReporter
from workspaces.scanning import image_scan_check

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = frozenset({"index.docker.io", "registry-1.docker.io"})
OFFICIAL_PREFIX = "library/"
MAX_NAME_LENGTH = 255
MAX_REFERENCE_LENGTH = 512

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"

# Used with fullmatch; ASCII so that \w is the grammar's [A-Za-z0-9_], not Unicode.
REFERENCE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
PATH_RE = re.compile(_PATH, re.ASCII)


@dataclass(frozen=True)
class ImageReference:
    """A normalised reference: ``domain`` and ``path`` are always set."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short name the engine shows (``busybox``, ``devbench/base``), unambiguous."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        remainder = path.removeprefix(OFFICIAL_PREFIX)
        if remainder != path and "/" not in remainder:
            path = remainder
        if "/" in path and _looks_like_domain(path.partition("/")[0]):
            return self.name  # "docker.io/0.0/x": dropping the domain would change its meaning
        return path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def canonical(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.familiar()


def _invalid(text: str, why: str) -> ValidationFailed:
    return InvalidImageReference(
        f"'{text}' is not a valid image reference: {why}. Use [registry/]name[:tag][@sha256:…], "
        "e.g. 'devbench/busybox:latest'.",
        image=text,
    )


def _looks_like_domain(component: str) -> bool:
    return (
        any(c in component for c in ".:")
        or component == "localhost"
        or (component.lower() != component)
    )


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a registry if it looks like a host."""
    first, sep, rest = name.partition("/")
    if sep and _looks_like_domain(first):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def image_reference_parse(text: str) -> ImageReference:
    """Parse and normalise; an untagged, undigested reference means ``:latest``."""
    if not isinstance(text, str) or not text.strip():
        raise _invalid(str(text), "it is empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise _invalid(text[:80] + "…", f"it is longer than {MAX_REFERENCE_LENGTH} characters")
    match = REFERENCE_RE.fullmatch(text)
    if match is None:
        raise _invalid(text, "it does not follow the reference grammar (lowercase repository)")
    name = match["name"]
    if len(name) > MAX_NAME_LENGTH:
        raise _invalid(text, f"the name is longer than {MAX_NAME_LENGTH} characters")
    domain, path = _split_domain(name)
    if not PATH_RE.fullmatch(path) or not DOMAIN_RE.fullmatch(domain):
        raise _invalid(text, "the repository path is not valid")
    tag, digest = match["tag"], match["digest"]
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def allowed_image_patterns(policy: TenantPolicy) -> list[str]:
    """The tenant's patterns, or the installation default when the tenant sets none."""
    return list(policy.allowed_images or settings.DEVBENCH_ALLOWED_IMAGES)


def image_reference_allowed(reference: ImageReference, patterns: list[str]) -> bool:
    candidates = {
        reference.familiar(),
        reference.canonical(),
        reference.familiar_name,
        reference.name,
    }
    return any(fnmatchcase(c, p) for p in patterns for c in candidates)


def _resolve_uncached(reference: ImageReference, node: str) -> ImageInfo:
    driver = node_driver(node)
    try:
        return driver.image_inspect(reference.familiar())
    except ImageNotFound:
        if reference.digest is None:
            raise
    # Images built on the engine have no registry digest; their content-addressed
    # id (``sha256:…`` of the image config) pins them just as firmly.
    try:
        info = driver.image_inspect(reference.digest)
    except ImageNotFound:
        info = None
    repo = reference.familiar_name
    if info is None or not any(t.rsplit(":", 1)[0] == repo for t in info.tags):
        raise ImageNotFound(
            f"Image '{reference.familiar()}' is not present on the engine: no local image of "
            f"'{repo}' has that registry digest or image id.",
            image=reference.familiar(),
        )
    return info


def _cache_key(reference: ImageReference, node: str | None) -> str:
    return f"devbench:image:{node or settings.DEVBENCH_NODE}:{reference.canonical()}"


def image_resolve(reference: ImageReference, *, node: str | None = None) -> ImageInfo:
    """The image for a reference on a node's engine (default: this process's node);
    answers are cached briefly (failures are not)."""
    key = _cache_key(reference, node)
    info = cache.get(key)
    if not isinstance(info, ImageInfo):
        info = _resolve_uncached(reference, node or settings.DEVBENCH_NODE)
        cache.set(key, info, timeout=settings.DEVBENCH_IMAGE_CACHE_TTL_S)
    return info


def image_forget(reference: ImageReference, *, node: str | None = None) -> None:
    cache.delete(_cache_key(reference, node))


@dataclass(frozen=True)
class ResolvedImage:
    reference: ImageReference
    info: ImageInfo


# Snapshot images (``devbench-snapshots/<tenant>:sn_…``) are spawned by snapshot id only,
# looked up within the tenant: never by reference, tag or digest.
RESERVED_PREFIXES = ("devbench-snapshots/", "devbench-templates/")
LABEL_SNAPSHOT = "devbench.snapshot"
LABEL_TEMPLATE = "devbench.template"


def _not_present(reference: ImageReference) -> ImageNotFound:
    return ImageNotFound(
        f"Image '{reference.familiar()}' is not present on the engine.",
        image=reference.familiar(),
    )


def image_allowed(*, policy: TenantPolicy, image: str | None) -> ImageReference:
    """Parse and apply the tenant's image policy (no engine involved)."""
    reference = image_reference_parse(image or policy.default_image)
    if reference.path.startswith(RESERVED_PREFIXES):
        raise ImageNotAllowed(
            f"Image '{reference.familiar()}' is a snapshot or template image: spawn it with "
            '"snapshot": "sn_…" or "template": "<name>" instead of "image".',
            image=reference.familiar(),
            allowed_images=allowed_image_patterns(policy),
        )
    patterns = allowed_image_patterns(policy)
    if not image_reference_allowed(reference, patterns):
        raise ImageNotAllowed(
            f"Image '{reference.familiar()}' is not allowed by the tenant policy; allowed "
            f"patterns: {', '.join(patterns) or '(none)'}.",
            image=reference.familiar(),
            allowed_images=patterns,
        )
    if policy.require_digest and reference.digest is None:
        raise DigestRequired(
            f"The tenant policy requires images pinned by digest: use "
            f"'{reference.familiar_name}@sha256:<digest>'.",
            image=reference.familiar(),
        )
    return reference


class PullNeeded(Exception):
    """The image is not on the node but can be pulled; raised where the caller asked not
    to pull (a spawn leaves the pull to its provisioning, which reports its progress)."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


def image_check(
    *,
    policy: TenantPolicy,
    image: str | None,
    node: str | None = None,
    pull: bool = True,
    progress: PullReporter | None = None,
) -> ResolvedImage:
    """Parse, apply the tenant's image policy, and resolve to an image on the node, pulled
    there if it is missing and pullable (``pull=False``: PullNeeded instead)."""
    reference = image_allowed(policy=policy, image=image)
    try:
        info = image_resolve(reference, node=node)
    except ImageNotFound:
        from workspaces.registries.services import image_pull, image_pullable

        if not image_pullable(reference=reference, tenant_id=policy.tenant_id):
            raise
        if not pull:
            raise PullNeeded(reference.familiar()) from None
        image_pull(
            reference=reference,
            tenant_id=policy.tenant_id,
            node=node or settings.DEVBENCH_NODE,
            progress=progress,
        )
        info = image_resolve(reference, node=node)
    if LABEL_SNAPSHOT in info.labels or LABEL_TEMPLATE in info.labels:
        # A snapshot's image reached by id or digest: it answers like a missing image,
        # whoever's it is (snapshots are spawned by snapshot id, within the tenant).
        raise _not_present(reference)
    image_scan_check(policy=policy, image=info, name=reference.familiar())
    return ResolvedImage(reference=reference, info=info)
