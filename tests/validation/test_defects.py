"""Each input defect of the hardening report, reproduced: it answered 500 (or accepted
garbage) before the validation layer, and now answers a documented 4xx, audited."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from django.test import Client

from core.validation import escape_unstorable
from tenants.audit import audit_record
from tenants.models import AuditEvent
from tests.validation.fuzz import assert_error_shape, strict_json
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

WS = "/api/v1/workspaces"
FILES = f"{WS}/ws_nothere0000/files"


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    body = strict_json(response.content)
    assert (response.status_code, body.get("code")) == (status, code), body
    assert_error_shape(body)
    return body


def _post(api: Client, url: str, body: str, **kw: Any) -> Any:
    return api.post(url, body, content_type="application/json", **kw)


# --- 2: NUL and control characters ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "code"),
    [
        ("get", f"{WS}?status=a%00b", None, "validation_failed"),
        ("get", f"{WS}?alias=a%00b", None, "invalid_alias"),
        ("post", WS, '{"idempotency_key": "k\\u0000"}', "invalid_idempotency_key"),
        ("post", WS, '{"alias": "a\\u0000b"}', "invalid_alias"),
        # A final newline is no exception ($ is the end of the text, as in ECMA-262).
        ("post", WS, '{"alias": "box\\n"}', "invalid_alias"),
        ("post", WS, '{"idempotency_key": "k\\n"}', "invalid_idempotency_key"),
        ("post", f"{WS}/ws_x/attach", '{"client_name": "me\\n"}', "validation_failed"),
        ("post", WS, '{"image": "busybox\\u001b[0m"}', "invalid_image_reference"),
        ("post", f"{WS}/ws_x/attach", '{"client_name": "a\\u0000"}', "validation_failed"),
        ("post", f"{WS}/ws_x/attach", '{"session_id": "\\u0007"}', "validation_failed"),
        ("post", f"{WS}/ws_x%00/attach", "{}", "validation_failed"),
        ("put", f"{FILES}?path=a%00b", '{"content": "x"}', "invalid_path"),
        ("delete", f"{FILES}?path=a%00b", None, "invalid_path"),
        ("post", f"{FILES}/mkdir", '{"path": "a\\u0000b"}', "invalid_path"),
        ("post", f"{FILES}/move", '{"path": "a", "destination": "b\\u0000"}', "invalid_path"),
        ("put", f"{WS}/ws_x/archive?path=a%00b", None, "invalid_path"),
        ("post", f"{WS}/ws_x/execs", '{"cmd": ["a\\u0000"]}', "invalid_cmd"),
        ("post", f"{WS}/ws_x/execs", '{"cmd": ["sh"], "env": {"A": "\\u0000"}}', "invalid_env"),
    ],
)
def test_nul_and_control_characters_are_refused_and_audited(
    api: Client, method: str, url: str, body: str | None, code: str
) -> None:
    kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
    response = getattr(api, method)(url, **kwargs)
    _error(response, 422, code)
    event = AuditEvent.objects.get(action="input.invalid", request_id=response["X-Request-ID"])
    assert event.error_code == "validation_failed" and event.outcome == "error"
    assert "\x00" not in json.dumps(event.details)


def test_idempotency_key_header_with_a_control_character_is_refused(api: Client) -> None:
    response = _post(api, WS, "{}", HTTP_IDEMPOTENCY_KEY="k\x01")
    _error(response, 422, "invalid_idempotency_key")


def test_the_audit_stores_any_string_escaped(tenant: Any, actor: Any) -> None:
    nasty = "a\x00b\x1b[31m\ud800\x7f\u0085"
    event = audit_record(
        actor=actor,
        action=f"fs.write{nasty}",
        outcome=AuditEvent.Outcome.DENIED,
        target_type=nasty,
        target_id=nasty * 50,
        error_code=nasty,
        details={nasty: [nasty, {"path": nasty}], "n": float("inf")},
    )
    event.refresh_from_db()
    assert event.target_id.startswith("a\\x00b\\x1b[31m\\ud800\\x7f\\x85")
    assert len(event.target_id) == 100
    stored = json.dumps(event.details)
    assert "\\\\x00" in stored and "\\u0000" not in stored
    assert event.details["n"] == "inf"
    assert escape_unstorable("tab\tand\nnewline") == "tab\tand\nnewline"


# --- 3: out-of-range numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (f"{WS}?offset=9223372036854775808", "validation_failed"),
        (f"{WS}?limit=100000000000000000000", "validation_failed"),
        (f"{WS}?limit=1e20", "validation_failed"),
        (f"{WS}?limit=0", "validation_failed"),
        ("/api/v1/execs/ex_x?after_seq=9223372036854775808", "invalid_seq"),
        ("/api/v1/execs/ex_x?wait_s=1e400", "invalid_wait"),
        (f"{FILES}?path=a&offset=9223372036854775808", "validation_failed"),
        (f"{FILES}/list?max_entries=-1", "invalid_max_entries"),
    ],
)
def test_out_of_range_numbers_are_refused(api: Client, url: str, code: str) -> None:
    _error(api.get(url), 422, code)


# --- 4: bodies over the request limit ------------------------------------------------------


@pytest.mark.parametrize("url", [WS, f"{WS}/ws_x/execs", f"{FILES}/mkdir"])
def test_json_bodies_over_the_limit_are_413(api: Client, settings: Any, url: str) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = _error(_post(api, url, json.dumps({"image": "x" * 4096})), 413, "payload_too_large")
    assert body["extra"]["max_bytes"] == 1024


# --- 5: malformed bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("[1,2]", "validation_failed"),
        ("null", "validation_failed"),
        ('"x"', "validation_failed"),
        ("7", "validation_failed"),
        ('{"limits": "big"}', "invalid_limits"),
        ('{"limits": [1]}', "invalid_limits"),
        ('{"limits": {"cpus": "2"}}', "invalid_limits"),
        ('{"persistent": "yes"}', "validation_failed"),
        ('{"persistent": 1}', "validation_failed"),
        ('{"wait": "false"}', "validation_failed"),
        ('{"ttl_s": "60"}', "invalid_ttl"),
        ('{"ttl_s": 60.5}', "invalid_ttl"),
    ],
)
def test_malformed_spawn_bodies_are_refused(api: Client, body: str, code: str) -> None:
    _error(_post(api, WS, body), 422, code)
    assert not Workspace.objects.exists()


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (f"{WS}/ws_x/execs", '{"cmd": "ls"}'),
        (f"{WS}/ws_x/execs", '{"cmd": ["ls"], "as_root": "true"}'),
        (f"{WS}/ws_x/execs", '{"cmd": ["ls"], "timeout_s": true}'),
        (f"{FILES}/mkdir", '{"path": "a", "parents": "no"}'),
        (f"{FILES}/move", '{"path": "a", "destination": "b", "overwrite": 0}'),
    ],
)
def test_coercions_are_refused_in_every_body(api: Client, url: str, body: str) -> None:
    assert _post(api, url, body).status_code == 422


# --- 9: unknown routes and non-finite numbers ----------------------------------------------


def test_unknown_paths_and_methods_answer_the_json_error_shape(api: Client) -> None:
    _error(api.get("/api/v1/nope"), 404, "route_not_found")
    _error(Client().get("/api/v1/nope/deeper"), 404, "route_not_found")
    response = api.patch(WS, "{}", content_type="application/json")
    body = _error(response, 405, "method_not_allowed")
    assert set(body["extra"]["allowed"]) == {"GET", "POST"}
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


@pytest.mark.parametrize(
    "body",
    [
        '{"ttl_s": Infinity}',
        '{"limits": {"cpus": NaN}}',
        '{"limits": {"cpus": 1e400}}',
        '{"limits": {"cpus": -Infinity}}',
        "{not json",
    ],
)
def test_non_finite_numbers_are_invalid_json_and_never_echoed(api: Client, body: str) -> None:
    response = _post(api, WS, body)
    _error(response, 400, "invalid_json")
    assert b"Infinity" not in response.content and b"NaN" not in response.content


def test_non_finite_floats_in_queries_are_refused_without_echo(api: Client) -> None:
    for value in ("Infinity", "NaN", "-inf"):
        response = api.get("/api/v1/execs/ex_x", {"wait_s": value})
        _error(response, 422, "invalid_wait")
        strict_json(response.content)


# --- 10: the schema states what the server enforces ----------------------------------------


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from devbench_site.api import api

    return json.loads(json.dumps(api.get_openapi_schema()))


def _validator(openapi: dict[str, Any], name: str) -> Any:
    schema = {**openapi["components"]["schemas"][name], "components": openapi["components"]}
    return jsonschema_rs.validator_for(schema)


@pytest.mark.parametrize(
    ("model", "value", "url"),
    [
        ("WorkspaceSpawnIn", {"alias": ""}, WS),
        ("WorkspaceSpawnIn", {"alias": "ws_taken"}, WS),
        ("WorkspaceSpawnIn", {"ttl_s": 10**12}, WS),
        ("ExecStartBody", {"cmd": [""]}, f"{WS}/ws_x/execs"),
        ("ExecStartBody", {"cmd": ["sh"], "timeout_s": 10**12}, f"{WS}/ws_x/execs"),
        ("ExecStartBody", {"cmd": ["sh"], "env": {"1BAD": "x"}}, f"{WS}/ws_x/execs"),
        ("ExecStartBody", {"cmd": ["sh"], "env": {"DEVBENCH_EXEC_ID": "x"}}, f"{WS}/ws_x/execs"),
        ("ExecStartBody", {"cmd": ["sh"], "cwd": "relative"}, f"{WS}/ws_x/execs"),
        ("FsMoveBody", {"path": "a", "destination": ""}, f"{FILES}/move"),
        ("FsMoveBody", {"path": "/workspace", "destination": "b"}, f"{FILES}/move"),
        ("FsMkdirBody", {"path": ""}, f"{FILES}/mkdir"),
    ],
)
def test_the_schema_refuses_what_the_server_refuses(
    api: Client, openapi: dict[str, Any], model: str, value: dict[str, Any], url: str
) -> None:
    assert not _validator(openapi, model).is_valid(value)
    assert _post(api, url, json.dumps(value)).status_code == 422


@pytest.mark.parametrize("path", ["/workspace", "/workspace/", "/workspace/.", ".", "./"])
def test_deleting_the_root_is_refused_by_schema_and_server(
    api: Client, openapi: dict[str, Any], path: str
) -> None:
    operation = openapi["paths"]["/api/v1/workspaces/{ref}/files"]["delete"]
    param = next(p for p in operation["parameters"] if p["name"] == "path")
    assert not jsonschema_rs.validator_for(param["schema"]).is_valid(path)
    _error(api.delete(FILES, QUERY_STRING=f"path={path}"), 422, "invalid_path")


def test_every_operation_declares_its_errors(openapi: dict[str, Any]) -> None:
    from core.openapi import OPERATION_ERRORS

    declared = {op["operationId"] for item in openapi["paths"].values() for op in item.values()}
    assert declared == set(OPERATION_ERRORS)


def test_every_operation_documents_its_errors(openapi: dict[str, Any]) -> None:
    assert openapi["components"]["schemas"]["Error"]["required"] == ["code", "message", "extra"]
    operations = [
        op for item in openapi["paths"].values() for op in item.values() if "operationId" in op
    ]
    assert len(operations) >= 28
    for operation in operations:
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        assert {"401", "422", "500"} <= set(errors), operation["operationId"]
        for response in errors.values():
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
            assert response["x-error-codes"]
            assert all(f"`{c}`" in response["description"] for c in response["x-error-codes"])


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"HTTP_X_DEVBENCH_TENANT": "a\x00b"}, 404, "tenant_not_found"),
        ({"HTTP_X_DEVBENCH_TENANT": "A b\n"}, 404, "tenant_not_found"),
        ({"HTTP_USER_AGENT": "ua\x00\x1b"}, 422, "validation_failed"),
        ({"HTTP_X_REQUEST_ID": "r\x00"}, 422, "validation_failed"),
    ],
)
def test_hostile_headers_are_refused_before_any_lookup(
    token: Any, headers: dict[str, str], status: int, code: str
) -> None:
    environ: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token.raw}", **headers}
    client = Client(**environ)
    response = client.post(WS, "[1]", content_type="application/json")
    _error(response, status, code)
    assert AuditEvent.objects.filter(request_id=response["X-Request-ID"]).exists()


def _error_classes() -> list[type[Any]]:
    from core.errors import DevBenchError

    found, stack = [], [DevBenchError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_documented_code_is_an_error_with_that_status(openapi: dict[str, Any]) -> None:
    # A typo in the table, or a code documented under the wrong status, fails here.
    known = {(c.http_status, c.code) for c in _error_classes() if hasattr(c, "code")}
    wrong = {
        (operation["operationId"], int(status), code)
        for item in openapi["paths"].values()
        for operation in item.values()
        for status, response in operation["responses"].items()
        for code in response.get("x-error-codes", [])
        if (int(status), code) not in known
    }
    assert not wrong
