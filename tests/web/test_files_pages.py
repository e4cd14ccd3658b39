"""The files panel against a real workspace: every action goes through the fs_* services."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tenants.models import TenantPolicy
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.web.conftest import messages_of, signed_in

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.fixture(scope="module")
def live(django_db_setup: Any, django_db_blocker: Any, celery_worker_process: Any) -> Iterator[Any]:
    """One running workspace and a member of its tenant for the module."""
    from tenants.principal import system_principal
    from workspaces.services import workspace_kill, workspace_spawn

    with django_db_blocker.unblock():
        tenant = TenantFactory()
        user = UserFactory()
        MembershipFactory(user=user, tenant=tenant, role="member")
        actor = system_principal(tenant)
        workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
    yield type("Live", (), {"tenant": tenant, "user": user, "workspace": workspace})
    with django_db_blocker.unblock():
        workspace_kill(actor=actor, workspace=workspace, force=True)
        tenant.delete()
        user.delete()


@pytest.fixture
def web(live: Any, db: Any) -> Any:
    return signed_in(live.user)


@pytest.fixture
def base(live: Any) -> str:
    return f"/t/{live.tenant.slug}/workspaces/{live.workspace.public_id}/files/"


@pytest.fixture
def folder(web: Any, base: str) -> str:
    """A fresh folder of this test, made through the page."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    response = web.post(base + "mkdir", {"dir": "/workspace", "name": name}, follow=True)
    assert messages_of(response) == [("", f"Created the folder /workspace/{name}.")]
    return f"/workspace/{name}"


def _in_container(live: Any, *cmd: str) -> tuple[int, bytes]:
    container = docker.from_env().containers.get(live.workspace.container_id)
    result = container.exec_run(list(cmd), user="1000:1000")
    return result.exit_code, result.output


def _file(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def test_upload_list_view_download_replace(web, base, folder, live):
    data = "héllo\nwörld\n".encode()
    response = web.post(
        base + "upload", {"dir": folder, "file": _file("notes.txt", data)}, follow=True
    )
    assert messages_of(response) == [("", f"Uploaded {folder}/notes.txt ({len(data)} bytes).")]
    assert response.request["QUERY_STRING"] == f"path={folder.replace('/', '%2F')}"
    names = [e.name for e in response.context["entries"]]
    assert names == ["notes.txt"]
    assert _in_container(live, "cat", f"{folder}/notes.txt") == (0, data)

    view = web.get(base + "view", {"path": f"{folder}/notes.txt"})
    assert view.status_code == 200 and view.context["text"] == data.decode()
    assert "wörld" in view.content.decode()

    download = web.get(base + "download", {"path": f"{folder}/notes.txt"})
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == data
    assert download["Content-Disposition"] == 'attachment; filename="notes.txt"'

    again = web.post(
        base + "upload", {"dir": folder, "file": _file("notes.txt", b"v2")}, follow=True
    )
    assert messages_of(again)[0][1].startswith("Replaced")
    assert _in_container(live, "cat", f"{folder}/notes.txt") == (0, b"v2")


def test_folders_navigate_and_delete(web, base, folder, live):
    web.post(base + "mkdir", {"dir": folder, "name": "sub"})
    web.post(base + "upload", {"dir": f"{folder}/sub", "file": _file("a.bin", b"\x00\x01")})
    listing = web.get(base, {"path": folder})
    assert [(e.name, e.kind) for e in listing.context["entries"]] == [("sub", "dir")]
    assert [name for name, _ in listing.context["crumbs"]][-1] == folder.rsplit("/", 1)[1]
    inner = web.get(base, {"path": f"{folder}/sub"})
    assert [e.name for e in inner.context["entries"]] == ["a.bin"]
    assert "Binary file" in web.get(base + "view", {"path": f"{folder}/sub/a.bin"}).content.decode()

    archive = web.get(base + "archive", {"path": f"{folder}/sub"})
    with tarfile.open(fileobj=io.BytesIO(b"".join(archive.streaming_content))) as tar:
        member = tar.extractfile("sub/a.bin")
        assert member is not None and member.read() == b"\x00\x01"

    deleted = web.post(base + "delete", {"path": f"{folder}/sub", "recursive": "on"}, follow=True)
    assert messages_of(deleted) == [("", f"Deleted {folder}/sub.")]
    assert deleted.context["entries"] == []
    assert _in_container(live, "test", "-e", f"{folder}/sub")[0] == 1


def test_errors_from_the_file_services_are_messages(web, base, folder, live):
    # (following each redirect shows, and so consumes, its message)
    web.post(base + "mkdir", {"dir": folder, "name": "full"}, follow=True)
    web.post(base + "upload", {"dir": f"{folder}/full", "file": _file("x", b"x")}, follow=True)
    cases = [
        (base + "mkdir", {"dir": folder, "name": "full"}, "already_exists"),
        (base + "delete", {"path": f"{folder}/full"}, "directory_not_empty"),
        (base + "delete", {"path": f"{folder}/missing"}, "not_found"),
        (base + "mkdir", {"dir": folder, "name": "../../../etc/x"}, "path_outside_workspace"),
        (base + "upload", {"dir": folder}, "file_required"),
    ]
    for url, data, code in cases:
        response = web.post(url, data, follow=True)
        assert response.status_code == 200
        assert [c for c, _ in messages_of(response)] == [code], data
    # reads of what is not there are error pages with the code
    missing = web.get(base + "view", {"path": f"{folder}/missing"})
    assert missing.status_code == 404 and "not_found" in missing.content.decode()
    escape = web.get(base, {"path": "/etc"})
    assert escape.status_code in (403, 422) and "path" in escape.content.decode()


def test_uploads_over_the_policy_limit_are_refused_with_a_clear_message(web, base, folder, live):
    TenantPolicy.objects.filter(tenant=live.tenant).update(max_file_size_bytes=1000)
    page = web.get(base, {"path": folder})
    assert 'data-max-bytes="1000"' in page.content.decode()  # the page checks it before sending
    response = web.post(
        base + "upload", {"dir": folder, "file": _file("big.bin", b"x" * 1001)}, follow=True
    )
    [(code, text)] = messages_of(response)
    assert code == "file_too_large" and "1000 bytes" in text
    assert _in_container(live, "test", "-e", f"{folder}/big.bin")[0] == 1
    ok = web.post(
        base + "upload", {"dir": folder, "file": _file("fits.bin", b"x" * 1000)}, follow=True
    )
    assert messages_of(ok)[0][0] == ""


def test_long_text_is_previewed_in_part(web, base, folder, live, monkeypatch):
    from workspaces.filesystem import views

    monkeypatch.setattr(views, "PREVIEW_BYTES", 10)
    web.post(base + "upload", {"dir": folder, "file": _file("long.txt", "aé".encode() * 10)})
    view = web.get(base + "view", {"path": f"{folder}/long.txt"})
    assert view.context["cut"] is True
    assert view.context["text"] == "aéaéaéa"  # cut inside "é": the half character is dropped
    assert "Showing the first" in view.content.decode()
