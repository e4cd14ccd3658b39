"""The strict layer on snapshots, templates and fork: REST, MCP tool arguments and lookups.

Every case is refused before any lookup or engine call with the field's own code
(or ``validation_failed``), as the older operations' cases in ``test_defects.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from core.errors import InvalidInput
from core.mcp.server import tool_specs
from core.mcp.tools import object_schema, validate_arguments
from tenants.models import AuditEvent
from tests.validation.fuzz import assert_error_shape, strict_json
from workspaces.environment_templates.errors import TemplateNotFound
from workspaces.environment_templates.selectors import template_for_spawn, template_get
from workspaces.snapshots.errors import SnapshotNotFound
from workspaces.snapshots.selectors import snapshot_get

pytestmark = pytest.mark.django_db

WS = "/api/v1/workspaces"
SPECS = {spec.name: spec for spec in tool_specs()}


@pytest.mark.parametrize(
    ("method", "url", "body", "code"),
    [
        ("post", f"{WS}/ws_x/fork", '{"alias": "Not An Alias"}', "invalid_alias"),
        ("post", f"{WS}/ws_x/fork", '{"ttl_s": 999999999999}', "invalid_ttl"),
        ("post", f"{WS}/ws_x/fork", '{"limits": "big"}', "invalid_limits"),
        ("post", f"{WS}/ws_x/fork", '{"persistent": "yes"}', "validation_failed"),
        ("post", f"{WS}/ws_x/fork", '{"surprise": 1}', "validation_failed"),
        ("post", f"{WS}/ws_x%00/fork", "{}", "validation_failed"),
        ("post", f"{WS}/ws_x/snapshots", '{"name": "a\\u0000"}', "validation_failed"),
        ("post", f"{WS}/ws_x/snapshots", '{"name": "two\\nlines"}', "validation_failed"),
        ("post", f"{WS}/ws_x/snapshots", '{"description": 5}', "validation_failed"),
        ("post", f"{WS}/ws_x/snapshots", "[1]", "validation_failed"),
        ("get", "/api/v1/snapshots/ws_notasnapshot", None, "validation_failed"),
        ("delete", "/api/v1/snapshots/sn_%00", None, "validation_failed"),
        ("get", "/api/v1/snapshots?workspace=a%00b", None, "validation_failed"),
        ("get", "/api/v1/snapshots?limit=100000000000000000000", None, "validation_failed"),
        ("get", "/api/v1/templates?offset=9223372036854775808", None, "validation_failed"),
        ("get", "/api/v1/templates?name=a%00", None, "validation_failed"),
        ("get", "/api/v1/templates/tp_x/log?wait_s=26", None, "invalid_wait"),
        ("get", "/api/v1/templates/tp_x/log?offset=-1", None, "validation_failed"),
        ("delete", "/api/v1/templates/Not%20A%20Name", None, "validation_failed"),
        ("post", "/api/v1/templates", '{"name": "t", "dockerfile": "FROM a\\u0000"}', None),
        ("post", "/api/v1/templates", '{"name": "t", "image": "a\\nb"}', "invalid_image_reference"),
        ("post", "/api/v1/templates", '{"name": "t", "extra": true}', None),
        ("post", WS, '{"snapshot": "tp_notasnapshot"}', "validation_failed"),
        ("post", WS, '{"template": "Bad Name!"}', "validation_failed"),
    ],
)
def test_later_operations_refuse_what_their_schema_refuses(
    api: Client, method: str, url: str, body: str | None, code: str | None
) -> None:
    kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
    response = getattr(api, method)(url, **kwargs)
    answer = strict_json(response.content)
    assert (response.status_code, answer["code"]) == (422, code or "validation_failed"), answer
    assert_error_shape(answer)
    # Refused by the layer (audited as such), not by a lookup further in.
    assert AuditEvent.objects.filter(
        action="input.invalid", request_id=response["X-Request-ID"]
    ).exists()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/api/v1/templates?bogus=1", "validation_failed"),
        ("/api/v1/snapshots?workspace=ws_x&workspace=ws_y", "validation_failed"),
        (f"{WS}?alias=a&alias=b", "invalid_alias"),
        (f"{WS}/ws_x/files?path=a&path=b", "invalid_path"),
        ("/api/v1/execs/ex_x?wait_s=1&after_sq=3", "validation_failed"),
    ],
)
def test_query_strings_are_strict(api: Client, url: str, code: str) -> None:
    # An unknown or repeated parameter is refused as an unknown body field is, not ignored.
    response = api.get(url)
    answer = strict_json(response.content)
    assert (response.status_code, answer["code"]) == (422, code), answer


def test_declared_query_parameters_still_work(api: Client) -> None:
    answer = api.get("/api/v1/snapshots?workspace=ws_x&limit=5&offset=0")
    assert answer.status_code == 200 and strict_json(answer.content) == {"items": [], "count": 0}


def test_every_tool_refuses_arguments_it_does_not_declare() -> None:
    for name, spec in SPECS.items():
        assert object_schema(spec.input_model).get("additionalProperties") is False, name
        with pytest.raises(InvalidInput) as refused:
            validate_arguments(spec.input_model, {"surprise": 1})
        assert refused.value.code == "validation_failed", name
        assert any(e["type"] == "extra_forbidden" for e in refused.value.extra["errors"]), name


@pytest.mark.parametrize(
    ("tool", "arguments", "code"),
    [
        ("snapshot_delete", {"snapshot_id": "ws_notasnapshot"}, "validation_failed"),
        ("snapshot_create", {"container_id": "ws_x", "name": "a\x00"}, "validation_failed"),
        ("snapshot_list", {"workspace": "a\nb"}, "validation_failed"),
        ("fork", {"container_id": "ws_x", "alias": "ws_reserved"}, "invalid_alias"),
        ("fork", {"container_id": "ws_x", "ttl_s": 0}, "invalid_ttl"),
        ("template_list", {"name": "a\x00"}, "validation_failed"),
        ("spawn", {"snapshot": "sn_"}, "validation_failed"),
    ],
)
def test_later_tools_refuse_bad_arguments(tool: str, arguments: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_arguments(SPECS[tool].input_model, arguments)
    assert refused.value.code == code


@pytest.mark.parametrize("ref", ["tp_\x00", "a\x1b[0m", "x" * 64, "\ud800"])
def test_a_template_ref_no_template_can_have_is_not_found(actor: Any, ref: str) -> None:
    # Web URLs reach the selectors without a model: such a ref never reaches the database.
    for lookup in (template_get, template_for_spawn):
        with pytest.raises(TemplateNotFound) as missing:
            lookup(actor=actor, ref=ref)
        assert "\x00" not in str(missing.value) and "\x1b" not in str(missing.value)


@pytest.mark.parametrize("ref", ["sn_\x00", "sn_\x7f", "sn_" + "x" * 40])
def test_a_snapshot_ref_no_snapshot_can_have_is_not_found(actor: Any, ref: str) -> None:
    with pytest.raises(SnapshotNotFound) as missing:
        snapshot_get(actor=actor, ref=ref)
    assert "\x00" not in str(missing.value) and "\x7f" not in str(missing.value)
