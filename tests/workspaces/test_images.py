"""Image references, the image policy and resolution to local images."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ImageNotFound, PolicyDenied, ValidationFailed
from tenants.models import TenantPolicy
from workspaces.images import (
    ImageReference,
    image_check,
    image_forget,
    image_reference_allowed,
    image_reference_parse,
    image_resolve,
)
from workspaces.runtime import get_driver

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("devbench/busybox", "docker.io/devbench/busybox:latest", "devbench/busybox:latest"),
        ("ghcr.io/org/app:v1.2", "ghcr.io/org/app:v1.2", "ghcr.io/org/app:v1.2"),
        ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("Registry/app", "Registry/app:latest", "Registry/app:latest"),
        (f"python@{DIGEST}", f"docker.io/library/python@{DIGEST}", f"python@{DIGEST}"),
        (
            f"python:3.11@{DIGEST}",
            f"docker.io/library/python:3.11@{DIGEST}",
            f"python:3.11@{DIGEST}",
        ),
        ("a__b/c-d.e_f:T_1.x-y", "docker.io/a__b/c-d.e_f:T_1.x-y", "a__b/c-d.e_f:T_1.x-y"),
        # Familiar forms that would read differently keep what disambiguates them.
        ("library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
        ("docker.io/0.0/app", "docker.io/0.0/app:latest", "docker.io/0.0/app:latest"),
    ],
)
def test_parse_normalises_like_the_engine(text, canonical, familiar):
    ref = image_reference_parse(text)
    assert ref.canonical() == canonical
    assert ref.familiar() == familiar


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Busybox",  # uppercase repository
        "busybox:",
        "busybox@sha256:abc",  # short digest
        "busybox@md5:" + "a" * 32,
        "-busybox",
        "busy//box",
        "busybox:-tag",
        "busybox:" + "t" * 129,
        "a" * 300,
        "bad_domain.com/app",
        "busybox:tag\n",
        "büsybox",
        "busybox:täg",
    ],
)
def test_parse_rejects_bad_references_with_a_stable_code(text):
    with pytest.raises(ValidationFailed) as excinfo:
        image_reference_parse(text)
    assert excinfo.value.code == "invalid_image_reference"


_component = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
_digest = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)
_domain = st.sampled_from(
    ["", "docker.io/", "ghcr.io/", "localhost:5000/", "registry.example:443/"]
)


@st.composite
def references(draw):
    domain = draw(_domain)
    components = draw(st.lists(_component, min_size=1, max_size=3))
    if not domain and len(components) > 1 and "." in components[0]:
        components[0] = components[0].replace(".", "-")  # it would name a registry
    text = domain + "/".join(components)
    if draw(st.booleans()):
        text += ":" + draw(_tag)
    if draw(st.booleans()):
        text += "@" + draw(_digest)
    return text


@given(references())
def test_parse_is_idempotent_through_both_forms(text):
    ref = image_reference_parse(text)
    assert image_reference_parse(ref.canonical()) == ref
    assert image_reference_parse(ref.familiar()) == ref
    assert ref.tag is not None or ref.digest is not None


@given(st.text(max_size=80))
def test_parse_never_fails_with_anything_but_a_validation_error(text):
    try:
        ref = image_reference_parse(text)
    except ValidationFailed as exc:
        assert exc.code == "invalid_image_reference"
    else:
        assert isinstance(ref, ImageReference)


@pytest.mark.parametrize(
    ("text", "patterns", "allowed"),
    [
        ("devbench/busybox", ["devbench/*"], True),
        ("docker.io/devbench/busybox:1", ["devbench/*"], True),
        ("busybox", ["devbench/*"], False),
        ("python:3.11-slim", ["python:3.11*"], True),
        ("python:3.12", ["python:3.11*"], False),
        ("python", ["docker.io/library/python*"], True),
        ("devbench/base:any", ["devbench/base"], True),  # bare name: any tag
        (f"devbench/base@{DIGEST}", ["devbench/*"], True),
        ("ghcr.io/org/app:1", ["devbench/*", "ghcr.io/org/*"], True),
        ("ghcr.io/other/app:1", ["ghcr.io/org/*"], False),
        ("anything", [], False),
    ],
)
def test_policy_patterns(text, patterns, allowed):
    assert image_reference_allowed(image_reference_parse(text), patterns) is allowed


def _policy(**kw) -> TenantPolicy:
    return TenantPolicy(**kw)  # unsaved: image_check only reads it


@pytest.mark.docker
def test_check_resolves_local_images_and_pins_by_image_id():
    busybox = get_driver().image_inspect("devbench/busybox:latest")
    resolved = image_check(policy=_policy(), image="devbench/busybox")
    assert resolved.info.id == busybox.id
    assert resolved.reference.familiar() == "devbench/busybox:latest"
    # Built locally, so no registry digest: the image id pins it.
    pinned = image_check(
        policy=_policy(require_digest=True), image=f"devbench/busybox@{busybox.id}"
    )
    assert pinned.info.id == busybox.id


@pytest.mark.docker
@pytest.mark.django_db  # a missing image may be pulled: registry credentials are rows
def test_check_errors_have_stable_codes_and_say_why():
    with pytest.raises(PolicyDenied) as excinfo:
        image_check(policy=_policy(allowed_images=["devbench/*", "python:3.11*"]), image="busybox")
    assert excinfo.value.code == "image_not_allowed"
    assert excinfo.value.extra["allowed_images"] == ["devbench/*", "python:3.11*"]
    assert "devbench/*" in excinfo.value.message

    with pytest.raises(PolicyDenied) as excinfo:
        image_check(policy=_policy(), image="busybox")  # installation default: devbench/*
    assert excinfo.value.extra["allowed_images"] == ["devbench/*"]

    with pytest.raises(PolicyDenied) as excinfo:
        image_check(policy=_policy(require_digest=True), image="devbench/busybox:latest")
    assert excinfo.value.code == "digest_required"

    with pytest.raises(ImageNotFound) as missing:
        image_check(policy=_policy(), image="devbench/absent:1")
    assert missing.value.code == "image_not_found"

    # A digest of another repository's image does not resolve under this name.
    base = get_driver().image_inspect("devbench/base:latest")
    with pytest.raises(ImageNotFound):
        image_check(policy=_policy(), image=f"devbench/busybox@{base.id}")

    with pytest.raises(ValidationFailed):
        image_check(policy=_policy(), image="Not A Reference")


@pytest.mark.docker
def test_resolution_is_cached_briefly(monkeypatch):
    ref = image_reference_parse("devbench/busybox:latest")
    image_forget(ref)
    first = image_resolve(ref)

    def engine_gone(self, ref):
        raise ImageNotFound("gone", image=str(ref))

    monkeypatch.setattr(type(get_driver()), "image_inspect", engine_gone)
    assert image_resolve(ref) == first  # answered from the cache
    image_forget(ref)
    with pytest.raises(ImageNotFound):
        image_resolve(ref)
