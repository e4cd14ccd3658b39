"""``manage.py mcp_stdio``: the same tools and authentication over stdio (official client)."""

from __future__ import annotations

import subprocess
from typing import Any

import anyio
import pytest
from django.utils import timezone

from tests.mcp_live import error_code, stdio_client, stdio_params
from tests.processes import ROOT

pytestmark = [pytest.mark.e2e]


def test_stdio_serves_the_tools_for_its_tenant(
    transactional_db: Any, server_env: dict[str, str], tenant: Any, token: Any
) -> None:
    async def scenario() -> tuple[list[str], Any]:
        async with stdio_client(tenant.slug, token.raw, server_env) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            return names, await client.call_tool("system_status", {})

    names, result = anyio.run(scenario)
    assert "system_status" in names
    assert result.is_error is False
    assert result.structured_content["tenant"]["slug"] == tenant.slug


def test_stdio_rechecks_the_token_on_every_call(
    transactional_db: Any, server_env: dict[str, str], tenant: Any, token: Any
) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with stdio_client(tenant.slug, token.raw, server_env) as client:
            first = await client.call_tool("system_status", {})
            await anyio.to_thread.run_sync(revoke)
            return first, await client.call_tool("system_status", {})

    def revoke() -> None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])

    first, second = anyio.run(scenario)
    assert first.is_error is False
    assert error_code(second) == "token_revoked"


@pytest.mark.parametrize(
    ("which", "code"),
    [("none", "token_missing"), ("bad", "token_invalid"), ("foreign", "tenant_not_found")],
)
def test_stdio_refuses_to_start_without_a_valid_token_of_the_tenant(
    transactional_db: Any,
    server_env: dict[str, str],
    tenant: Any,
    other_tenant: Any,
    token: Any,
    which: str,
    code: str,
) -> None:
    raw = {"none": None, "bad": "dbt_aaaaaaaa_" + "a" * 43, "foreign": token.raw}[which]
    slug = other_tenant.slug if which == "foreign" else tenant.slug
    params = stdio_params(slug, raw, server_env)
    done = subprocess.run(
        [params.command, *params.args],
        cwd=ROOT,
        env=params.env,
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert done.stdout == b""  # stdout belongs to the protocol
    assert code.encode() in done.stderr
