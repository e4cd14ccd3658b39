"""Schema bases every app's ``schemas.py`` may use (REST bodies and MCP tool arguments alike).

Names: ``<Entity><Action>In`` is an action's whole input (MCP arguments; the REST body
when nothing comes from the URL); ``<Entity><Action>Body`` / ``Query`` the part of a
REST request in its body / query string when the URL names the target;
``<Entity>Out`` an output, built by its ``from_<model>()``.
"""

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
