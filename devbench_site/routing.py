"""Websocket routes from every app, and the Origin check in front of them."""

from typing import Any
from urllib.parse import parse_qs

from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from django.urls import re_path

from execution.consumers import ExecStreamConsumer, ShellConsumer
from workspaces.consumers import WorkspaceProgressConsumer
from workspaces.environment_templates.consumers import TemplateLogConsumer

websocket_urlpatterns: list[Any] = [
    # Execution: an exec's output live; an interactive shell in a workspace.
    re_path(r"^ws/execs/(?P<exec_id>[A-Za-z0-9_]+)/?$", ExecStreamConsumer.as_asgi()),
    re_path(r"^ws/workspaces/(?P<workspace_id>[A-Za-z0-9_.-]+)/shell/?$", ShellConsumer.as_asgi()),
    # Workspaces: progress while one is created (its image pulled onto its node).
    re_path(
        r"^ws/workspaces/(?P<workspace_id>[A-Za-z0-9_.-]+)/progress/?$",
        WorkspaceProgressConsumer.as_asgi(),
    ),
    # Environments: a template's build log live.
    re_path(r"^ws/templates/(?P<template_id>[A-Za-z0-9_]+)/log/?$", TemplateLogConsumer.as_asgi()),
]


class _OriginValidator(OriginValidator):
    """Checks Origin against ALLOWED_HOSTS, but lets token clients without one through.

    Browsers always send Origin on a websocket handshake, so a cross-site page
    riding on a user's session cookie is always checked. A handshake without
    Origin that carries a bearer token (header or ``?token=``) is a
    non-browser client: it proves who it is by the token, not by an ambient
    cookie, so there is nothing to hijack. Without Origin and without a token
    (a bare cookie) the handshake is refused as before.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        if b"origin" not in headers and _carries_token(scope, headers):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)


def _carries_token(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
    if headers.get(b"authorization", b"").lower().startswith(b"bearer "):
        return True
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return bool(query.get("token"))


def websocket_origin_validator(application: Any) -> Any:
    allowed: OriginValidator = AllowedHostsOriginValidator(application)
    return _OriginValidator(application, allowed.allowed_origins)
