"""Errors as types: families are caught, never raised; each error has its code and status."""

from __future__ import annotations

import importlib

import pytest

from core.errors import (
    DevBenchError,
    EngineError,
    ImageNotFound,
    NotFound,
    StoredError,
    ValidationFailed,
    error_rebuilt,
)
from tenants.errors import ScopeRequired, TenantNotFound
from workspaces.errors import WorkspaceNotFound

ERROR_MODULES = (
    "core.errors",
    "tenants.errors",
    "tenants.oidc.errors",
    "workspaces.errors",
    "workspaces.filesystem.errors",
    "workspaces.runtime.base",
    "execution.errors",
)
FAMILIES: set[type[DevBenchError]] = {
    cls
    for cls in vars(importlib.import_module("core.errors")).values()
    if isinstance(cls, type) and issubclass(cls, DevBenchError) and "code" not in vars(cls)
}


def all_errors() -> list[type[DevBenchError]]:
    for name in ERROR_MODULES:
        importlib.import_module(name)
    found, pending = [], [DevBenchError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("tests."):
            continue
        found.append(cls)
    return found


@pytest.mark.parametrize("family", sorted(FAMILIES, key=str))
def test_a_family_is_caught_but_never_raised(family: type[DevBenchError]) -> None:
    with pytest.raises(TypeError, match="family"):
        family("no code")


def test_every_error_has_a_stable_code_and_an_http_status() -> None:
    raisable = [cls for cls in all_errors() if cls not in FAMILIES]
    assert len(raisable) > 60
    for cls in raisable:
        assert cls.code and cls.code == cls.code.lower(), cls
        assert 400 <= cls.http_status < 600, cls


def test_typed_fields_become_extra_and_the_body_keeps_its_shape() -> None:
    exc = ScopeRequired(required_scope="write", granted_scopes=["read"])
    assert exc.as_dict() == {
        "code": "scope_required",
        "message": "This action needs the 'write' scope.",
        "extra": {"required_scope": "write", "granted_scopes": ["read"]},
    }
    assert (exc.http_status, TenantNotFound().message) == (403, "Tenant not found.")
    assert WorkspaceNotFound("ws_x").message == "Workspace 'ws_x' not found."


def test_a_stored_code_is_rebuilt_as_its_class() -> None:
    exc = error_rebuilt(code="image_not_found", message="gone", extra={"workspace_id": "ws_1"})
    assert isinstance(exc, ImageNotFound) and exc.http_status == 422
    assert exc.as_dict() == {
        "code": "image_not_found",
        "message": "gone",
        "extra": {"workspace_id": "ws_1"},
    }
    unknown = error_rebuilt(code="gone_away", message="old row", extra={})
    assert isinstance(unknown, StoredError) and isinstance(unknown, EngineError)
    assert unknown.code == "gone_away"


def test_families_group_their_errors() -> None:
    assert issubclass(WorkspaceNotFound, NotFound) and issubclass(TenantNotFound, NotFound)
    assert not issubclass(NotFound, ValidationFailed)
