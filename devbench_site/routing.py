"""Websocket routes from every app, and the Origin check in front of them."""

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from django.urls import re_path

from execution.consumers import ExecStreamConsumer, ShellConsumer

websocket_urlpatterns: list[Any] = [
    # Execution: an exec's output live; an interactive shell in a workspace.
    re_path(r"^ws/execs/(?P<exec_id>[A-Za-z0-9_]+)/?$", ExecStreamConsumer.as_asgi()),
    re_path(r"^ws/workspaces/(?P<workspace_id>[A-Za-z0-9_.-]+)/shell/?$", ShellConsumer.as_asgi()),
]


class _BrowserOriginValidator(OriginValidator):
    """Checks Origin against ALLOWED_HOSTS when there is one.

    Browsers always send Origin on a websocket handshake, so a cross-site page
    riding on a user's session cookie is always caught. A handshake without
    Origin comes from a non-browser client, which authenticates with a token
    (or holds the session itself); refusing it would only lock such clients out.
    """

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or bool(super().valid_origin(parsed_origin))


def websocket_origin_validator(application: Any) -> Any:
    allowed: OriginValidator = AllowedHostsOriginValidator(application)
    return _BrowserOriginValidator(application, allowed.allowed_origins)
