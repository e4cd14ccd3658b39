"""Template filters for execs on web pages."""

from __future__ import annotations

from django import template

from execution import views
from execution.models import Exec

register = template.Library()


@register.filter
def command(exec_: Exec) -> str:
    """The command line as the user typed it."""
    return views.command_text(exec_)


@register.filter
def duration(exec_: Exec) -> str:
    """How long it ran (or has been running): ``850 ms``, ``12.3 s``, ``4 min 05 s``."""
    ms = exec_.usage.duration_ms
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes} min {seconds:02d} s"
