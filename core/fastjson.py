"""orjson for the REST API (django-ninja's renderer) and websocket frames; request bodies
are read by ``core.rest.StrictJsonParser`` (orjson too).

orjson encodes several times faster than the standard library. Values it does
not handle itself, and datetimes (passed through on purpose), go to Django's
encoder, so every answer reads exactly as before (``...T12:00:00.123Z``).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest
from ninja.renderers import BaseRenderer
from ninja.responses import NinjaJSONEncoder

_fallback = NinjaJSONEncoder().default
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_fallback, option=_OPTIONS)


def dumps_text(data: Any) -> str:
    return dumps(data).decode()


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> Any:
        return dumps(data)
