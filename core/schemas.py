"""Schema bases every app's ``schemas.py`` may use (REST bodies and MCP tool arguments alike)."""

from __future__ import annotations

from ninja import Schema
from pydantic import ConfigDict


class NoArguments(Schema):
    """For tools and endpoints that take no input."""

    model_config = ConfigDict(extra="forbid")


class ErrorOut(Schema):
    """An error's stable code and message (the REST/MCP error body without ``extra``)."""

    code: str
    message: str
