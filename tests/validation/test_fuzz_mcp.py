"""Property-based fuzz of every MCP tool's arguments, through the real server in-process.

The tools' input schemas are the shared pydantic models, so the same property
as for REST holds: never ``internal_error``, every error in the shared shape,
arguments the published input schema refuses are ``validation_failed``, and
every refusal is audited. The tenant's quota is 0 and workspace refs do not
exist, so no container starts.
"""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client import Client

from core.mcp.server import build_server, tool_specs
from core.mcp.tools import ToolSpec, object_schema
from core.validation import FIELD_CODES
from tenants.auth import authenticate_bearer
from tenants.models import AuditEvent, TenantPolicy
from tests.mcp_live import error_body
from tests.validation.fuzz import assert_error_shape, has_surrogate, nasty_value

SPECS = tool_specs()
REFUSAL_CODES = {"validation_failed", *FIELD_CODES.values()}

# JSON text for a list or object field is parsed first (some clients send it so).
_no_json_text = st.text(max_size=40).filter(lambda s: not s.lstrip().startswith(("[", "{")))


def _arguments(spec: ToolSpec) -> st.SearchStrategy[dict[str, Any]]:
    properties = object_schema(spec.input_model).get("properties", {})
    plausible = {
        "container_id": st.just("ws_nothere0000"),
        "exec_id": st.just("ex_nothere0000"),
        "target": st.just("ws_nothere0000"),
    }
    return st.fixed_dictionaries(
        {},
        optional={
            name: st.one_of(plausible.get(name, nasty_value(1)), nasty_value(1))
            for name in properties
        },
    ).filter(
        # The client cannot send an unpaired surrogate: it does not encode as UTF-8.
        lambda args: not has_surrogate(args) and not any(_is_json_text(v) for v in args.values())
    )


def _as_sent(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_sent(v) for v in value]
    return value


def _is_json_text(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith(("[", "{"))


@pytest.fixture
def fuzz_principal(transactional_db: Any, tenant: Any, make_token: Any) -> Any:
    TenantPolicy.objects.update_or_create(tenant=tenant, defaults={"max_workspaces": 0})
    token = make_token(tenant, scopes=("read", "write"))
    return lambda: authenticate_bearer(f"Bearer {token.raw}")


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_every_tool_survives_hostile_arguments(fuzz_principal: Any, spec: ToolSpec) -> None:
    server = build_server(authenticate=fuzz_principal, specs=[spec])
    validator = jsonschema_rs.validator_for(object_schema(spec.input_model))
    refused: list[int] = []

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI stays reproducible
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(arguments=_arguments(spec))
    def check(arguments: dict[str, Any]) -> None:
        # What the client puts on the wire: it sends a non-finite float as null.
        invalid = not validator.is_valid(_as_sent(arguments))

        async def scenario() -> Any:
            async with Client(server) as client:
                return await client.call_tool(spec.name, arguments)

        result = anyio.run(scenario)
        # An error result carries its body as JSON text only (no structured content).
        body = error_body(result) if result.is_error else result.structured_content
        json.dumps(body, allow_nan=False)  # never a non-finite number in an answer
        if result.is_error:
            assert_error_shape(body)
            assert body["code"] != "internal_error", (spec.name, arguments, body)
            if invalid:
                assert body["code"] in REFUSAL_CODES, (spec.name, arguments, body)
            if body["code"] in REFUSAL_CODES:
                refused.append(1)
        else:
            assert not invalid, f"{spec.name} accepted {arguments!r}, which its schema refuses"

    check()
    audited = AuditEvent.objects.filter(action="input.invalid", details__operation=spec.name)
    assert audited.count() >= len(refused)
