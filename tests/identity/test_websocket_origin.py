"""Websockets refuse pages of other origins (cross-site websocket hijacking).

Main has no websocket route yet, so the allowed-origin case uses a test-only
consumer behind the same middleware stack as ``devbench_site.asgi``; the refusal
is also checked against the real ASGI application.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import WebsocketConsumer
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from channels.testing import WebsocketCommunicator
from django.urls import path


class EchoConsumer(WebsocketConsumer):
    def connect(self) -> None:
        self.accept()

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.send(text_data=text_data)


def _stack() -> Any:
    # The same wrapping as devbench_site.asgi.application["websocket"].
    return AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]))
    )


def _connects(app: Any, origin: str | None) -> bool:
    headers = [(b"origin", origin.encode())] if origin else []

    async def attempt() -> bool:
        communicator = WebsocketCommunicator(app, "/ws/echo/", headers=headers)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.send_to(text_data="ping")
            assert await communicator.receive_from() == "ping"
        await communicator.disconnect()
        return bool(connected)

    return async_to_sync(attempt)()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1", True),
        ("http://localhost:8000", True),
        ("https://evil.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("null", False),
        (None, False),
    ],
)
def test_only_own_origins_may_open_a_websocket(origin, allowed):
    assert _connects(_stack(), origin) is allowed


def test_production_application_checks_the_origin():
    from devbench_site.asgi import application

    websocket_app = application.application_mapping["websocket"]
    assert isinstance(websocket_app, OriginValidator)
    assert _connects(application, "https://evil.example") is False
