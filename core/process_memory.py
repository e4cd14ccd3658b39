"""Keeping CPython's cyclic garbage collector off the request path of long-lived processes.

Once Django, the API's schemas, the MCP tools and the engine clients are loaded, a web
or worker process holds ~240,000 objects the collector tracks (functions, dicts,
tuples, pydantic and Django field definitions), nearly all of them for the life of the
process. Every full collection walks all of them, and every collection stops the whole
process while it runs. Measured in the web workers under the read benchmark's load
(`bench/run --rows reads`, a ``gc.callbacks`` timer in each worker): ten full
collections per worker of up to 330 ms each, 2 s in all, the one-client-at-a-time
requests' worst latencies and most of the 50-client p99.

:func:`freeze_loaded_objects` moves what is loaded at start (the URL configuration
included, which Django otherwise imports at the first request) into the collector's
permanent generation: those objects are never walked again. Objects created later are
collected as before, so a reference cycle made while serving is still freed.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_loaded_objects() -> int:
    """Load what the first request would, then exclude every object alive now from all
    later collections; returns how many objects were frozen."""
    _load_url_configuration()
    gc.collect()  # garbage of the start itself is freed, not kept for good
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.debug("%s objects frozen out of garbage collection", frozen)
    return frozen


def _load_url_configuration() -> None:
    from django.urls import get_resolver

    # Imports every view module and builds the REST API's routers and schemas.
    get_resolver().url_patterns  # noqa: B018
