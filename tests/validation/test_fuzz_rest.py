"""Property-based fuzz of every REST operation's path, query and JSON body.

For every operation of the published OpenAPI schema, hypothesis sends hostile
values (see ``fuzz.py``) and checks: never a 5xx; every error answer is strict
JSON in the shared shape, with a status and a code the schema lists for that
operation; a body or query the schema refuses is refused (4xx), never acted on.

The tenant's quota is 0 and the workspace refs do not exist, so nothing the
fuzz sends can start a container: what is exercised is every layer in front
of the engine (authentication, parsing, validation, audit, lookups).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.validation import FIELD_CODES
from tenants.models import AuditEvent, TenantPolicy
from tests.validation.fuzz import (
    assert_error_shape,
    has_surrogate,
    nasty_text,
    nasty_value,
    query_text,
    strict_json,
)

REFUSAL_CODES = {"validation_failed", *FIELD_CODES.values()}
# Answered for any path under /api/v1/ when a path parameter holds a '/'.
ROUTING_CODES = {404: "route_not_found"}


def _schema() -> dict[str, Any]:
    from devbench_site.api import api

    return json.loads(json.dumps(api.get_openapi_schema()))


SCHEMA = _schema()
OPERATIONS = [
    (path, method, operation)
    for path, item in SCHEMA["paths"].items()
    for method, operation in item.items()
    if isinstance(operation, dict) and "operationId" in operation
]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(SCHEMA["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def _json_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return _resolve(schema) if schema else None


def _validator(schema: dict[str, Any]) -> Any:
    # References resolve against the whole document.
    return jsonschema_rs.validator_for({**schema, "components": SCHEMA["components"]})


@st.composite
def _request(draw: st.DrawFn, path: str, operation: dict[str, Any]) -> dict[str, Any]:
    url = path
    query: dict[str, str] = {}
    query_invalid = False
    for param in operation.get("parameters", []):
        name, where = param["name"], param["in"]
        if where == "path":
            value = draw(st.one_of(st.just("ws_nothere0000"), nasty_text))
            raw = query_text(value).encode("utf-8", "surrogatepass")
            url = url.replace("{" + name + "}", quote(raw, safe="") or "x")
        elif where == "query" and draw(st.booleans()):
            value = draw(nasty_value(0))
            query[name] = query_text(value)
            typed = _as_query_typed(value, param["schema"])
            if not _validator(param["schema"]).is_valid(typed):
                query_invalid = True
    body_schema = _json_body_schema(operation)
    body: Any = None
    body_invalid = False
    if body_schema is not None:
        properties = body_schema.get("properties", {})
        body = draw(
            st.one_of(
                nasty_value(1),
                st.fixed_dictionaries(
                    {},
                    optional={name: nasty_value(1) for name in properties},
                ),
            )
        )
        # A JSON string may carry an unpaired surrogate (as an escape); no schema admits it.
        body_invalid = has_surrogate(body) or not _validator(body_schema).is_valid(body)
    return {
        "url": url,
        "query": query,
        "body": body,
        "has_body": body_schema is not None,
        "invalid": query_invalid or body_invalid,
    }


def _as_query_typed(value: Any, schema: dict[str, Any]) -> Any:
    """What a query string's text means for a typed parameter, as the server reads it."""
    # The server decodes the query string as UTF-8, an unpaired surrogate as U+FFFD.
    text = query_text(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    types = {s.get("type") for s in [schema, *schema.get("anyOf", [])]}
    if "integer" in types or "number" in types:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


@pytest.fixture
def fuzz_client(transactional_db: Any, tenant: Any, make_token: Any) -> Client:
    TenantPolicy.objects.update_or_create(tenant=tenant, defaults={"max_workspaces": 0})
    token = make_token(tenant, scopes=("read", "write"))
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}")


@pytest.mark.parametrize(
    ("path", "method", "operation"),
    OPERATIONS,
    ids=[op["operationId"] for _, _, op in OPERATIONS],
)
def test_every_operation_survives_hostile_input(
    fuzz_client: Client, path: str, method: str, operation: dict[str, Any]
) -> None:
    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI stays reproducible
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=_request(path, operation))
    def check(request: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {"QUERY_STRING": _query_string(request["query"])}
        if request["has_body"]:
            kwargs["data"] = json.dumps(request["body"]).encode("utf-8", "surrogatepass")
            kwargs["content_type"] = "application/json"
        response = fuzz_client.generic(method.upper(), request["url"], **kwargs)
        _check_answer(operation, response, invalid=request["invalid"])
        if response.status_code == 422 and response.json()["code"] in REFUSAL_CODES:
            refused.append(response["X-Request-ID"])

    refused: list[str] = []
    check()
    # Every refusal reached the audit log, NULs and all.
    audited = set(
        AuditEvent.objects.filter(action="input.invalid").values_list("request_id", flat=True)
    )
    assert set(refused) <= audited


def _query_string(query: dict[str, str]) -> str:
    return "&".join(
        f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in query.items()
    )


def _check_answer(operation: dict[str, Any], response: Any, *, invalid: bool) -> None:
    status = response.status_code
    assert status < 500, (status, response.content[:500])
    if status >= 400:
        body = strict_json(response.content)
        assert_error_shape(body)
        if ROUTING_CODES.get(status) == body["code"]:
            return
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{operation['operationId']}: undocumented {status} {body}"
        assert body["code"] in documented["x-error-codes"], (operation["operationId"], body)
    else:
        assert not invalid, f"{operation['operationId']} accepted what its schema refuses"
        if response.get("Content-Type", "").startswith("application/json"):
            strict_json(response.content)
