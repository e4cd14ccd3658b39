"""The one list contract, walked on every list of REST and MCP (``core.pagination``).

Each case is one list: how to make a row of it and how to ask for it on each
interface (REST through Django's client, MCP through the official client against
a live web process). The same checks run on all of them: ``limit`` bounds a page,
pages followed by ``next_cursor`` concatenate to the whole list with nothing
repeated or missed while rows are created between pages, a cursor is refused
(``invalid_cursor``) when forged or when another tenant presents it, and a
limit out of range is refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.pagination import MAX_LIMIT
from tenants.principal import system_principal
from tests.conftest import client_for
from tests.factories import AuditEventFactory, ExecFactory, WorkspaceFactory
from tests.isolation import assert_like_missing, mcp_answer, rest_answer
from tests.mcp_live import mcp_call, ok
from tests.processes import DaphneServer
from workspaces.filesystem.reads import MAX_LIST_ENTRIES
from workspaces.filesystem.services import fs_mkdir, fs_write
from workspaces.models import Snapshot, SnapshotStatus, Template, Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_names = itertools.count()
# Every list is readable with these (the audit log needs "admin").
SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Scope:
    """What one tenant's list is about: the tenant, and a workspace for per-workspace lists."""

    tenant: Any
    token: Any
    workspace: Workspace


@dataclass(frozen=True)
class ListCase:
    name: str
    rest: Callable[[Scope], str]  # the URL
    tool: str | None  # None: a list of REST only
    tool_args: Callable[[Scope], dict[str, Any]]
    make: Callable[[Scope], Any]  # creates one item, returns its id as listed
    key: str  # the id field of an item
    max_limit: int = MAX_LIMIT
    rest_params: dict[str, Any] | None = None  # the list's own query parameters
    # Newest-first lists never show rows created after the walk began; a directory
    # listing (path order) shows a new entry when it sorts after the cursor.
    new_items_follow: bool = False


def _workspace(scope: Scope) -> str:
    return WorkspaceFactory(tenant=scope.tenant).public_id


def _exec(scope: Scope) -> str:
    return ExecFactory(workspace=scope.workspace).public_id


def _snapshot(scope: Scope) -> str:
    row = Snapshot.objects.create(
        tenant=scope.tenant, name=f"s{next(_names)}", status=SnapshotStatus.READY
    )
    return row.public_id


def _template(scope: Scope) -> str:
    row = Template.objects.create(
        tenant=scope.tenant, name=f"t{next(_names)}", image="devbench/busybox:latest"
    )
    return row.public_id


def _audit_event(scope: Scope) -> int:
    return int(AuditEventFactory(tenant=scope.tenant, target_id=f"ws_{next(_names)}").pk)


def _file(scope: Scope) -> str:
    path = f"/workspace/pages/f{next(_names):04d}"
    fs_write(
        actor=system_principal(scope.tenant), workspace=scope.workspace, path=path, content=b""
    )
    return path


def _ws_url(suffix: str) -> Callable[[Scope], str]:
    return lambda s: f"/api/v1/workspaces/{s.workspace.public_id}{suffix}"


CASES = [
    ListCase(
        "workspaces",
        lambda s: "/api/v1/workspaces",
        "list_containers",
        lambda s: {},
        _workspace,
        "id",
    ),
    ListCase(
        "execs",
        _ws_url("/execs"),
        "list_execs",
        lambda s: {"container_id": s.workspace.public_id},
        _exec,
        "exec_id",
    ),
    ListCase(
        "snapshots",
        lambda s: "/api/v1/snapshots",
        "snapshot_list",
        lambda s: {},
        _snapshot,
        "id",
    ),
    ListCase(
        "templates",
        lambda s: "/api/v1/templates",
        "template_list",
        lambda s: {},
        _template,
        "id",
    ),
]
AUDIT = ListCase("audit", lambda s: "/api/v1/audit", None, lambda s: {}, _audit_event, "id")
FILES = ListCase(
    "files",
    _ws_url("/files/list"),
    "fs_list",
    lambda s: {"container_id": s.workspace.public_id, "path": "/workspace/pages"},
    _file,
    "path",
    max_limit=MAX_LIST_ENTRIES,
    rest_params={"path": "/workspace/pages"},
    new_items_follow=True,
)


def _params(cases: list[ListCase]) -> list[Any]:
    """(case, interface) for every interface a list has; the engine's marks on files."""
    return [
        pytest.param(
            case,
            interface,
            id=f"{interface}-{case.name}",
            marks=[pytest.mark.docker] if case is FILES else [],
        )
        for case in cases
        for interface in ("rest", "mcp")
        if interface == "rest" or case.tool is not None
    ]


PARAMS = _params([*CASES, AUDIT, FILES])


@pytest.fixture
def case(request: pytest.FixtureRequest) -> ListCase:
    return request.param


@pytest.fixture
def mine(case: ListCase, tenant: Any, make_token: Any, request: pytest.FixtureRequest) -> Scope:
    return _scope(case, tenant, make_token(tenant, scopes=SCOPES), request)


@pytest.fixture
def theirs(
    case: ListCase, other_tenant: Any, make_token: Any, request: pytest.FixtureRequest
) -> Scope:
    return _scope(case, other_tenant, make_token(other_tenant, scopes=SCOPES), request)


def _scope(case: ListCase, tenant: Any, token: Any, request: pytest.FixtureRequest) -> Scope:
    if case is FILES:
        # Lists of files need a live container: made through the real spawn service.
        request.getfixturevalue("live_worker")
        from workspaces.services import workspace_kill, workspace_spawn

        actor = system_principal(tenant)
        workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
        request.addfinalizer(lambda: workspace_kill(actor=actor, workspace=workspace, force=True))
        fs_mkdir(actor=actor, workspace=workspace, path="/workspace/pages")
    else:
        workspace = WorkspaceFactory(tenant=tenant, container_id="c")
    return Scope(tenant, token, workspace)


class Lister:
    """Asks one list on one interface: ``page()`` answers (ok, body)."""

    def __init__(self, interface: str, case: ListCase, scope: Scope, server: DaphneServer) -> None:
        self.interface, self.case, self.scope, self.server = interface, case, scope, server

    def call(self, **params: Any) -> Any:
        """The raw answer: a Django response or an MCP tool result."""
        if self.interface == "rest":
            url = self.case.rest(self.scope)
            return client_for(self.scope.token).get(url, (self.case.rest_params or {}) | params)
        assert self.case.tool is not None
        args = self.case.tool_args(self.scope) | params
        return mcp_call(
            self.server.mcp_url(self.scope.tenant.slug), self.scope.token.raw, self.case.tool, args
        )

    def page(self, **params: Any) -> dict[str, Any]:
        answer = self.call(**params)
        if self.interface == "rest":
            assert answer.status_code == 200, answer.content
            body: dict[str, Any] = answer.json()
            return body
        return ok(answer)

    def error(self, **params: Any) -> tuple[Any, str]:
        answer = self.call(**params)
        if self.interface == "rest":
            assert answer.status_code == 422, answer.content
            return rest_answer(answer), answer.json()["code"]
        result = mcp_answer(answer)
        assert result.status == "error", answer
        return result, str(result.code)

    def ids(self, body: dict[str, Any]) -> list[str]:
        return [item[self.case.key] for item in body["items"]]


def _lister(interface: str, case: ListCase, scope: Scope, server: DaphneServer) -> Lister:
    return Lister(interface, case, scope, server)


@pytest.fixture
def server(live_mcp: DaphneServer) -> DaphneServer:
    return live_mcp


def _walk(lister: Lister, *, limit: int, between: Callable[[], None]) -> Iterator[dict[str, Any]]:
    body = lister.page(limit=limit)
    while True:
        yield body
        if not body["has_more"]:
            return
        between()
        body = lister.page(limit=limit, cursor=body["next_cursor"])


@pytest.mark.parametrize(("case", "interface"), PARAMS, indirect=["case"])
def test_pages_concatenate_to_the_list_while_rows_are_added(
    server: DaphneServer, interface: str, case: ListCase, mine: Scope
) -> None:
    made = [case.make(mine) for _ in range(5)]
    lister = _lister(interface, case, mine, server)
    whole = lister.ids(lister.page())
    assert set(made) <= set(whole) and len(whole) == len(set(whole))
    added: list[str] = []

    pages = list(_walk(lister, limit=2, between=lambda: added.append(case.make(mine))))

    assert all(len(p["items"]) <= 2 for p in pages)
    assert all(p["has_more"] == (p["next_cursor"] is not None) for p in pages)
    assert pages[-1]["has_more"] is False and pages[-1]["next_cursor"] is None
    seen = [i for p in pages for i in lister.ids(p)]
    assert len(seen) == len(set(seen)), "an item came twice"
    assert [i for i in seen if i not in added] == whole, "an item was missed or moved"
    if case.new_items_follow:
        assert set(seen) - set(whole) <= set(added)
    else:
        assert not set(seen) & set(added)
        assert lister.ids(lister.page(limit=len(whole) + len(added)))[: len(added)] == added[::-1]


@pytest.mark.parametrize(("case", "interface"), PARAMS, indirect=["case"])
def test_a_cursor_works_only_in_the_tenants_own_list(
    server: DaphneServer, interface: str, case: ListCase, mine: Scope, theirs: Scope
) -> None:
    for _ in range(3):
        case.make(mine)
        case.make(theirs)
    their_lister = _lister(interface, case, theirs, server)
    their_cursor = their_lister.page(limit=1)["next_cursor"]
    assert their_cursor
    lister = _lister(interface, case, mine, server)
    # Their cursor answers exactly as a forged one: nothing about their list shows.
    with_theirs, code = lister.error(limit=1, cursor=their_cursor)
    forged, _ = lister.error(limit=1, cursor="forged")
    assert_like_missing(
        with_theirs, forged, theirs_id=their_cursor, missing_id="forged", code="invalid_cursor"
    )
    assert code == "invalid_cursor"
    mine_ids = lister.ids(lister.page(limit=case.max_limit))
    theirs_ids = their_lister.ids(their_lister.page(limit=case.max_limit))
    assert mine_ids and theirs_ids and not set(mine_ids) & set(theirs_ids)


@pytest.mark.parametrize(("case", "interface"), _params([*CASES, AUDIT]), indirect=["case"])
def test_bad_cursor_and_limit_are_refused(
    server: DaphneServer, interface: str, case: ListCase, mine: Scope
) -> None:
    made = {case.make(mine) for _ in range(2)}
    lister = _lister(interface, case, mine, server)
    good = lister.page(limit=1)["next_cursor"]
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for cursor in ["forged", tampered, good.split(":")[0], "x" * 2000]:
        _, code = lister.error(cursor=cursor)
        assert code in {"invalid_cursor", "validation_failed"}, cursor
        if len(cursor) < 1000:
            assert code == "invalid_cursor", cursor
    for limit in [0, -1, case.max_limit + 1]:
        _, code = lister.error(limit=limit)
        assert code in {"validation_failed", "invalid_limit"}, limit
    assert made <= set(lister.ids(lister.page(limit=case.max_limit)))  # the bounds are inclusive
