"""URL resolution of recently requested paths, remembered per process.

Resolving a path walks the URL patterns in order, and each router of the REST API
that does not hold the path raises, with the list of every pattern it tried, which
its parent copies into its own list: a request for a route of a late router pays
for all the patterns before it. The profile of ``fs stat`` at 50 clients showed
7 % of the web process's interpreter time there (bench/README.md). Clients poll the
same paths (an exec, a workspace, a file), so the match of a path is kept (an LRU
of ``RESOLVED_PATHS``, keyed by URLconf and path): the same path always resolves the
same way while the URLconf is the same, and the cache is dropped whenever
``ROOT_URLCONF`` changes. A path that does not resolve is not kept.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.urls import ResolverMatch, get_resolver, get_urlconf

RESOLVED_PATHS = 4096


@functools.lru_cache(maxsize=RESOLVED_PATHS)
def _match(urlconf: str, path_info: str) -> ResolverMatch:
    return get_resolver(urlconf).resolve(path_info)


def resolve(path_info: str) -> ResolverMatch:
    """The match of ``path_info`` in the current URLconf; raises ``Resolver404`` as
    ``resolve`` does. Each caller gets its own copy (with its own kwargs to change)."""
    kept = _match(str(get_urlconf() or settings.ROOT_URLCONF), path_info)
    match = ResolverMatch.__new__(ResolverMatch)  # (copy.copy: a ResolverMatch refuses)
    match.__dict__.update(kept.__dict__)
    match.kwargs = dict(kept.kwargs)
    return match


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "ROOT_URLCONF":
        _match.cache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="devbench-resolved-paths")
