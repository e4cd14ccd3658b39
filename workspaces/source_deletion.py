"""Deleting what a workspace can be spawned from besides an image: snapshots, templates.

Both are deleted the same way — audited, under a row lock, and refused while a
live workspace was spawned from them (their image is still in use) — so the
rule lives here once; each service adds only what removing its image takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar

from django.db import transaction

from core.errors import DevBenchError, NotFound
from tenants.audit import AuditScope, audited
from tenants.principal import Principal
from workspaces.models import LIVE_STATUSES, Snapshot, Template, Workspace

Source = TypeVar("Source", Snapshot, Template)
SourceKind = Literal["snapshot", "template"]

# The in-use error names at most this many of the workspaces that hold a source.
USERS_SHOWN = 20


def workspaces_live_from(*, kind: SourceKind, source: Snapshot | Template) -> list[str]:
    """Public ids of the live workspaces spawned from ``source`` (at most ``USERS_SHOWN``)."""
    return list(
        Workspace.objects.filter(**{kind: source}, status__in=LIVE_STATUSES).values_list(
            "public_id", flat=True
        )[:USERS_SHOWN]
    )


@contextmanager
def source_deleting(
    *,
    actor: Principal,
    source: Source,
    not_found: type[NotFound],
    in_use: Callable[[Source, list[str]], DevBenchError],
) -> Iterator[tuple[Source, AuditScope]]:
    """Delete ``source``: yields its locked row (and the audit record, for details) to
    remove what it owns (its images), then deletes the row. ``not_found`` when it is
    gone (or another tenant's), ``in_use(row, workspace_ids)`` while live workspaces
    were spawned from it."""
    kind: SourceKind = "snapshot" if isinstance(source, Snapshot) else "template"
    actor.require_scope("write")
    with (
        audited(
            actor=actor, action=f"{kind}.delete", target_type=kind, target_id=source.public_id
        ) as audit,
        transaction.atomic(),
    ):
        row = type(source).objects.select_for_update().filter(pk=source.pk, tenant=actor.tenant)
        locked = row.first()
        if locked is None:
            raise not_found(f"{kind.capitalize()} '{source.public_id}' not found.")
        users = workspaces_live_from(kind=kind, source=locked)
        if users:
            raise in_use(locked, users)
        yield locked, audit
        locked.delete()
