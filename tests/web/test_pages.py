"""Web pages through the Django test client: landing, tenant isolation, roles, errors, CSRF.

Rows come from factories (no container needed) except where a test says it
talks to the engine.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from django.conf import settings
from django.test import Client

from execution.models import Exec
from tenants.models import AuditEvent
from tenants.web import SESSION_TENANT_KEY
from tests.factories import (
    ExecFactory,
    MembershipFactory,
    TenantFactory,
    UserFactory,
    WorkspaceFactory,
)
from tests.isolation import assert_like_missing, page_answer
from tests.web.conftest import messages_of, signed_in
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def _ws_url(tenant, workspace=None, suffix=""):
    base = f"/t/{tenant.slug}/workspaces/"
    return base + (f"{workspace.public_id}/{suffix}" if workspace else suffix)


# --- landing and the tenant picker -------------------------------------------------


def test_anonymous_users_are_sent_to_sign_in():
    for url in ("/", "/t/", "/t/acme/workspaces/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(settings.LOGIN_URL)


def test_one_tenant_lands_on_its_workspaces(web, tenant):
    response = web.get("/")
    assert response.status_code == 302
    assert response["Location"] == f"/t/{tenant.slug}/workspaces/"


def test_several_tenants_get_a_picker_and_the_choice_is_remembered(tenant):
    user = UserFactory()
    second = TenantFactory(name="Second Team")
    MembershipFactory(user=user, tenant=tenant)
    MembershipFactory(user=user, tenant=second, role="viewer")
    web = signed_in(user)

    picker = web.get("/")
    assert picker.status_code == 200
    assert {t.slug for t in picker.context["tenants"]} == {tenant.slug, second.slug}
    assert f'href="/t/{second.slug}/workspaces/"' in picker.content.decode()

    assert web.get(f"/t/{second.slug}/workspaces/").status_code == 200
    assert web.session[SESSION_TENANT_KEY] == second.slug
    assert web.get("/")["Location"] == f"/t/{second.slug}/workspaces/"
    # the picker itself stays reachable to switch
    assert web.get("/t/").status_code == 200


def test_a_user_without_tenants_is_told_so():
    response = signed_in(UserFactory()).get("/")
    assert response.status_code == 200
    assert "No tenant yet" in response.content.decode()


# --- pages render for a member -----------------------------------------------------------


def test_workspace_list_shows_rows_and_the_spawn_form(web, tenant):
    WorkspaceFactory(tenant=tenant, alias="alpha", status="running")
    WorkspaceFactory(
        tenant=tenant, status="error", error_code="image_not_found", status_message="No such image"
    )
    WorkspaceFactory(tenant=tenant, alias="gone", status="removed")
    response = web.get(_ws_url(tenant))
    html = response.content.decode()
    assert response.status_code == 200
    assert "alpha" in html and "image_not_found" in html
    assert "gone" not in html  # removed workspaces are not listed
    assert 'id="spawn-form"' in html and "Kill" in html
    # the rows fragment the page polls while something is being created
    rows = web.get(_ws_url(tenant, suffix="rows"))
    assert rows.status_code == 200 and "alpha" in rows.content.decode()
    assert "<html" not in rows.content.decode()


def test_a_workspace_being_pulled_shows_its_progress(web, tenant):
    progress = {
        "phase": "pulling",
        "image": "127.0.0.1:5000/team/tool:1",
        "layers_total": 3,
        "layers_done": 1,
        "bytes_total": 3 * 1024 * 1024,
        "bytes_done": 1024 * 1024,
    }
    workspace = WorkspaceFactory(tenant=tenant, status="creating", progress=progress)
    html = web.get(_ws_url(tenant, workspace)).content.decode()
    assert "Pulling 127.0.0.1:5000/team/tool:1: 1/3 layers, 1.0\xa0MB of 3.0\xa0MB" in html
    assert web.get(_ws_url(tenant, workspace, "status")).json()["progress"] == progress


def test_workspace_page_lists_recent_commands(web, tenant):
    workspace = WorkspaceFactory(tenant=tenant, alias="beta", container_id="c")
    ExecFactory(
        workspace=workspace, cmd=["/bin/sh", "-c", "make test"], status="completed", exit_code=2
    )
    response = web.get(_ws_url(tenant, workspace))
    html = response.content.decode()
    assert response.status_code == 200
    assert "make test" in html and "exit 2" in html
    assert 'id="run-form"' in html
    rows = web.get(_ws_url(tenant, workspace, "execs/rows")).content.decode()
    assert "make test" in rows
    status = web.get(_ws_url(tenant, workspace, "status")).json()
    assert status == {
        "id": workspace.public_id,
        "status": "running",
        "status_message": "",
        "error_code": "",
        "progress": None,
    }
    shell = web.get(_ws_url(tenant, workspace, "shell")).content.decode()
    assert f'data-ws-path="/ws/workspaces/{workspace.public_id}/shell"' in shell
    assert "vendor/xterm/xterm.js" in shell


# --- tenant isolation --------------------------------------------------------------------


def _error_code(response):
    return page_answer(response).code


def test_another_tenants_slug_is_the_same_404_as_a_missing_one(web, other_tenant):
    missing = page_answer(web.get("/t/no-such-tenant/workspaces/"))
    inactive = TenantFactory(active=False)
    for slug in (other_tenant.slug, inactive.slug):
        theirs = page_answer(web.get(f"/t/{slug}/workspaces/"))
        assert theirs.status == 404
        assert_like_missing(
            theirs, missing, theirs_id=slug, missing_id="no-such-tenant", code="tenant_not_found"
        )
    # POSTs too: nothing is done in a tenant the user is not in
    response = web.post(f"/t/{other_tenant.slug}/workspaces/spawn", {"image": ""})
    assert response.status_code == 404
    assert not Workspace.objects.filter(tenant=other_tenant).exists()


def test_another_tenants_workspace_and_exec_are_404_under_my_slug(web, tenant, other_tenant):
    foreign = WorkspaceFactory(tenant=other_tenant, container_id="c")
    foreign_exec = ExecFactory(workspace=foreign, status="running")
    for suffix in ("", "shell", "status", "files/", "files/view?path=a", "execs/rows"):
        response = web.get(_ws_url(tenant, foreign, suffix))
        assert response.status_code == 404, suffix
    assert_like_missing(
        page_answer(web.get(_ws_url(tenant, foreign))),
        page_answer(web.get(f"/t/{tenant.slug}/workspaces/ws_doesnotexist0000/")),
        theirs_id=foreign.public_id,
        missing_id="ws_doesnotexist0000",
        code="workspace_not_found",
    )

    for suffix in (
        "kill",
        "pause",
        "resume",
        "execs/",
        "files/upload",
        "files/mkdir",
        "files/delete",
    ):
        response = web.post(_ws_url(tenant, foreign, suffix), {"command": "id", "path": "a"})
        assert response.status_code == 404, suffix
    cancel = web.post(
        f"/t/{tenant.slug}/execs/{foreign_exec.public_id}/cancel", HTTP_ACCEPT="application/json"
    )
    assert cancel.status_code == 404 and cancel.json()["code"] == "exec_not_found"
    foreign.refresh_from_db()
    foreign_exec.refresh_from_db()
    assert foreign.status == "running" and foreign_exec.status == "running"
    assert not Exec.objects.filter(workspace=foreign).exclude(pk=foreign_exec.pk).exists()


# --- a viewer can look but not change: hidden in the page AND refused by the services -------


def test_viewer_sees_a_read_only_ui(viewer_web, tenant):
    workspace = WorkspaceFactory(tenant=tenant, container_id="c")
    html = viewer_web.get(_ws_url(tenant)).content.decode()
    assert "read-only" in html
    assert 'id="spawn-form"' not in html and ">Kill<" not in html
    page = viewer_web.get(_ws_url(tenant, workspace)).content.decode()
    assert 'id="run-form"' not in page and "Kill workspace" not in page
    assert (
        "The shell needs write access"
        in viewer_web.get(_ws_url(tenant, workspace, "shell")).content.decode()
    )


def test_viewer_actions_are_refused_server_side(viewer_web, tenant):
    workspace = WorkspaceFactory(tenant=tenant, container_id="c")
    running = ExecFactory(workspace=workspace, status="running")
    posts = {
        _ws_url(tenant, suffix="spawn"): {"image": "", "alias": "nope"},
        _ws_url(tenant, workspace, "kill"): {},
        _ws_url(tenant, workspace, "execs/"): {"command": "id"},
        _ws_url(tenant, workspace, "files/mkdir"): {"dir": "/workspace", "name": "d"},
        _ws_url(tenant, workspace, "files/delete"): {"path": "/workspace/x"},
        f"/t/{tenant.slug}/execs/{running.public_id}/cancel": {},
    }
    for url, data in posts.items():
        response = viewer_web.post(url, data, follow=True)
        assert response.status_code == 200, url
        assert [code for code, _ in messages_of(response)] == ["scope_required"], url
    upload = viewer_web.post(
        _ws_url(tenant, workspace, "files/upload"),
        {"dir": "/workspace", "file": _upload("x.txt", b"data")},
        HTTP_ACCEPT="application/json",
    )
    assert upload.status_code == 403 and upload.json()["code"] == "scope_required"

    assert not Workspace.objects.filter(alias="nope").exists()
    workspace.refresh_from_db()
    running.refresh_from_db()
    assert workspace.status == "running" and running.status == "running"
    assert Exec.objects.filter(workspace=workspace).count() == 1
    denied = AuditEvent.objects.filter(tenant=tenant, action="scope.denied")
    assert denied.count() == len(posts) + 1


def _upload(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


# --- CSRF --------------------------------------------------------------------------------


def test_posts_need_the_csrf_token(member, tenant):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member)
    workspace = WorkspaceFactory(tenant=tenant, container_id="c")
    for url in (
        _ws_url(tenant, suffix="spawn"),
        _ws_url(tenant, workspace, "kill"),
        _ws_url(tenant, workspace, "execs/"),
    ):
        assert strict.post(url, {"command": "id"}).status_code == 403, url
    workspace.refresh_from_db()
    assert workspace.status == "running"
    assert not Exec.objects.exists()

    # the token the page hands out makes the same post go through (to the service)
    page = strict.get(_ws_url(tenant))
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.content.decode())
    assert found is not None
    token = found.group(1)
    response = strict.post(
        _ws_url(tenant, workspace, "execs/"),
        {"command": ""},
        HTTP_X_CSRFTOKEN=token,
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_cmd"


# --- service errors become messages (or JSON for the page's scripts), never a 500 ---------


@pytest.mark.docker
def test_spawn_errors_are_messages_with_their_code(web, tenant):
    cases = [
        ({"image": "elsewhere/tool:1"}, "image_not_allowed"),
        ({"alias": "Not An Alias!"}, "invalid_alias"),
        ({"alias": "ws_taken"}, "invalid_alias"),
        ({"ttl_s": "soon"}, "invalid_ttl"),
        ({"ttl_s": str(10**6)}, "policy_denied"),
        ({"ttl_s": str(10**12)}, "invalid_ttl"),
    ]
    for data, code in cases:
        response = web.post(_ws_url(tenant, suffix="spawn"), data, follow=True)
        assert response.status_code == 200
        assert [c for c, _ in messages_of(response)] == [code], data
        assert response.request["PATH_INFO"] == _ws_url(tenant)
    # the page's script posts the same form and reads the refusal as JSON
    refused = web.post(
        _ws_url(tenant, suffix="spawn"),
        {"image": "elsewhere/tool:1"},
        HTTP_ACCEPT="application/json",
    )
    assert refused.status_code == 403 and refused.json()["code"] == "image_not_allowed"
    assert not Workspace.objects.filter(tenant=tenant).exists()


@pytest.mark.docker
def test_spawn_creates_a_workspace_that_the_list_shows_creating(web, tenant):
    response = web.post(
        _ws_url(tenant, suffix="spawn"),
        {"image": "", "alias": "fresh", "ttl_s": "900", "idempotency_key": "k1"},
        follow=True,
    )
    workspace = Workspace.objects.get(tenant=tenant, alias="fresh")
    assert workspace.status == "creating" and workspace.ttl_s == 900
    assert workspace.created_by_id == response.wsgi_request.user.pk
    assert "being created" in messages_of(response)[0][1]
    assert 'data-status="creating"' in response.content.decode()
    # a double submit of the same form makes no second workspace
    web.post(
        _ws_url(tenant, suffix="spawn"),
        {"image": "", "alias": "fresh", "ttl_s": "900", "idempotency_key": "k1"},
    )
    assert Workspace.objects.filter(tenant=tenant).count() == 1


def test_exec_and_kill_errors_are_messages_or_json(web, tenant):
    stopped = WorkspaceFactory(tenant=tenant, status="creating")
    response = web.post(_ws_url(tenant, stopped, "execs/"), {"command": "id"}, follow=True)
    assert [c for c, _ in messages_of(response)] == ["workspace_not_running"]
    as_json = web.post(
        _ws_url(tenant, stopped, "execs/"), {"command": "id"}, HTTP_ACCEPT="application/json"
    )
    assert as_json.status_code == 409
    assert as_json.json()["code"] == "workspace_not_running"
    bad_timeout = web.post(
        _ws_url(tenant, stopped, "execs/"),
        {"command": "id", "timeout_s": "0"},
        HTTP_ACCEPT="application/json",
    )
    assert bad_timeout.status_code == 422 and bad_timeout.json()["code"] == "invalid_timeout"


@pytest.mark.docker
def test_engine_errors_are_error_pages_not_500(web, tenant):
    # The row says running but its container does not exist on the engine.
    ghost = WorkspaceFactory(tenant=tenant, container_id="0" * 64)
    response = web.get(_ws_url(tenant, ghost, "files/"))
    assert 400 <= response.status_code < 600 and response.status_code != 500
    assert _error_code(response) is not None
    stopped = WorkspaceFactory(tenant=tenant, status="stopped")
    page = web.get(_ws_url(tenant, stopped, "files/"))
    assert page.status_code == 409 and _error_code(page) == "workspace_not_running"


# --- the workspace list, a page at a time (core.pagination) ------------------------


def test_the_workspace_list_pages_with_the_list_contract(web, tenant, other_tenant):
    made = [WorkspaceFactory(tenant=tenant).public_id for _ in range(53)]
    first = web.get(_ws_url(tenant))
    shown = list(first.context["workspaces"])
    assert [w.public_id for w in shown] == made[::-1][:50]
    cursor = first.context["page"].next_cursor
    assert cursor and f"?cursor={quote(cursor, safe='/')}" in first.content.decode()
    rest = web.get(_ws_url(tenant), {"cursor": cursor})
    assert [w.public_id for w in rest.context["workspaces"]] == made[::-1][50:]
    assert not rest.context["page"].has_more
    rows = web.get(_ws_url(tenant, suffix="rows"), {"cursor": cursor})  # the page's refresh
    assert rows.status_code == 200
    assert [w.public_id for w in rows.context["workspaces"]] == made[::-1][50:]
    # Another tenant's cursor and a forged one are the same error page, never a 500.
    WorkspaceFactory.create_batch(51, tenant=other_tenant)
    theirs_member = MembershipFactory(tenant=other_tenant).user
    theirs = signed_in(theirs_member).get(_ws_url(other_tenant)).context["page"].next_cursor
    with_theirs = page_answer(web.get(_ws_url(tenant), {"cursor": theirs}))
    forged = page_answer(web.get(_ws_url(tenant), {"cursor": "forged"}))
    assert_like_missing(
        with_theirs, forged, theirs_id=theirs, missing_id="forged", code="invalid_cursor"
    )
    assert with_theirs.status == 422
    assert page_answer(web.get(_ws_url(tenant), {"cursor": "x" * 5000})).code == "invalid_cursor"
