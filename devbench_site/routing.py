"""Websocket routes from every app."""

from typing import Any

websocket_urlpatterns: list[Any] = []
