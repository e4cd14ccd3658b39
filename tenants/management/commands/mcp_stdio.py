"""Serve the DevBench MCP tools over stdio, for one tenant.

An MCP client launches ``python manage.py mcp_stdio --tenant SLUG`` with the
token in the ``DEVBENCH_TOKEN`` environment variable (never on the command
line, where other users could read it). stdout carries only MCP messages;
logs go to stderr.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from core.errors import DevBenchError
from core.mcp.server import build_server
from tenants.auth import authenticate_bearer
from tenants.principal import Principal

TOKEN_ENV = "DEVBENCH_TOKEN"  # noqa: S105 - the variable's name, not a secret


class Command(BaseCommand):
    help = "Serve the MCP tools over stdio for one tenant; the token comes from $DEVBENCH_TOKEN."
    # stdout belongs to the protocol, and clients wait for the first answer.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")

    def handle(self, *args: Any, **options: Any) -> None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        header = f"Bearer {token}" if token else None
        slug = options["tenant"]

        def authenticate() -> Principal:
            # The same function as HTTP, called on every tool call: a revoked or
            # expired token stops working without restarting the process.
            return authenticate_bearer(header, tenant_slug=slug)

        try:
            authenticate()
        except DevBenchError as exc:
            token_error = exc.code.startswith("token_")
            hint = f" (the token is read from ${TOKEN_ENV})" if token_error else ""
            raise CommandError(f"{exc.code}: {exc.message}{hint}") from exc
        finally:
            close_old_connections()
        server = build_server(authenticate=authenticate)
        anyio.run(server.run_stdio_async)
