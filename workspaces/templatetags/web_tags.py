"""Compact times for web pages: "just now", "5 min ago", "in 3 h"."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()

_UNITS = ((86400, "day"), (3600, "h"), (60, "min"))


def _span(seconds: float) -> str:
    for size, unit in _UNITS:
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
    return f"{int(seconds)} s"


@register.filter
def ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    seconds = (timezone.now() - moment).total_seconds()
    return "just now" if seconds < 60 else f"{_span(seconds)} ago"


@register.filter
def from_now(moment: datetime | None) -> str:
    if moment is None:
        return ""
    seconds = (moment - timezone.now()).total_seconds()
    if seconds <= 0:
        return "now"
    return f"in {_span(seconds)}" if seconds >= 60 else "in less than a minute"


@register.filter
def breakable(reference: str) -> str:
    """An image reference that may wrap after '/' and before ':' or '@', nowhere else."""
    text = str(conditional_escape(reference))
    for mark, spot in (("/", "/<wbr>"), (":", "<wbr>:"), ("@", "<wbr>@")):
        text = text.replace(mark, spot)
    return mark_safe(text)  # noqa: S308 - escaped above; only <wbr> added
