"""Every filesystem operation and its errors, against a real workspace on the engine."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Callable

import pytest

from core.errors import DevBenchError
from tenants.models import AuditEvent, Scope, TenantPolicy
from tenants.principal import Principal
from tests.processes import wait_for
from workspaces.filesystem import services
from workspaces.filesystem.services import (
    fs_delete,
    fs_download_archive,
    fs_list,
    fs_mkdir,
    fs_move,
    fs_read,
    fs_read_stream,
    fs_stat,
    fs_upload_archive,
    fs_write,
)
from workspaces.models import WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.runtime.base import LARGE_FILE_BYTES

pytestmark = [pytest.mark.docker, pytest.mark.integration]

MiB = 1024 * 1024


def _code(exc_info: pytest.ExceptionInfo[DevBenchError]) -> str:
    return exc_info.value.code


def test_write_read_round_trip_is_byte_exact_with_sha256_etag(env, wdir):
    data = bytes(range(256)) * 1000 + b"\x00\r\n\xff"
    written = fs_write(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/bin.dat", content=data
    )
    assert written.path == f"{wdir}/bin.dat"
    assert written.size == len(data)
    assert written.etag == hashlib.sha256(data).hexdigest()
    assert written.created is True

    read = fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/bin.dat")
    assert read.content == data
    assert read.etag == written.etag
    assert read.size == len(data)
    # The file really is there, owned by the workspace user, as the container sees it.
    out = env.must("stat", "-c", "%u %g %a %s", f"{wdir}/bin.dat").decode().split()
    assert out == ["1000", "1000", "644", str(len(data))]


def test_relative_paths_are_taken_from_the_workspace_root(env, wdir):
    name = os.path.basename(wdir)
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{name}/rel.txt", content=b"r")
    assert fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/rel.txt").content == b"r"


def test_read_range_and_etag_of_whole_file(env, wdir):
    data = b"0123456789" * 10
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/r.txt", content=data)
    part = fs_read(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/r.txt", offset=5, length=7
    )
    assert part.content == data[5:12]
    assert part.offset == 5 and part.length == 7
    assert part.size == len(data)
    assert part.etag == hashlib.sha256(data).hexdigest()
    tail = fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/r.txt", offset=95)
    assert tail.content == data[95:]
    beyond = fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/r.txt", offset=500)
    assert beyond.content == b""
    with pytest.raises(DevBenchError) as exc:
        fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/r.txt", offset=-1)
    assert _code(exc) == "invalid_range"


def test_overwrite_keeps_mode_changes_etag_and_is_audited(env, wdir):
    path = f"{wdir}/script.sh"
    first = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"a", mode=0o750)
    assert env.must("stat", "-c", "%a", path).strip() == b"750"
    second = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"b")
    assert second.created is False
    assert second.mode == 0o750
    assert env.must("stat", "-c", "%a", path).strip() == b"750"
    assert second.etag != first.etag
    same = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"b")
    assert same.etag == second.etag
    events = AuditEvent.objects.filter(action="fs.write", target_id=env.workspace.public_id)
    assert events.filter(outcome="success", details__path=path).count() == 3
    assert events.filter(details__etag=second.etag).exists()


def test_write_creates_missing_parents_unless_told_not_to(env, wdir):
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/a/b/c.txt", content=b"deep")
    assert env.must("cat", f"{wdir}/a/b/c.txt") == b"deep"
    assert env.must("stat", "-c", "%u %a", f"{wdir}/a/b").split() == [b"1000", b"755"]
    with pytest.raises(DevBenchError) as exc:
        fs_write(
            actor=env.actor,
            workspace=env.workspace,
            path=f"{wdir}/x/y.txt",
            content=b"",
            create_parents=False,
        )
    assert _code(exc) == "not_found"


def test_write_leaves_no_temp_files_behind(env, wdir):
    for i in range(3):
        fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/f", content=bytes([i]))
    assert env.must("ls", "-A", wdir).split() == [b"f"]


def test_a_write_replacing_or_replaced_by_a_large_file_says_so_to_the_driver(
    env, wdir, monkeypatch
):
    driver_class = type(get_driver())
    rename = driver_class.path_rename
    hints: list[bool] = []

    def spied(self, *args, **kwargs):
        hints.append(kwargs.get("large_file", False))
        return rename(self, *args, **kwargs)

    monkeypatch.setattr(driver_class, "path_rename", spied)
    large, small = os.urandom(LARGE_FILE_BYTES), b"small"
    path = f"{wdir}/f"
    for content in (large, large, small, small, large):
        fs_write(actor=env.actor, workspace=env.workspace, path=path, content=content)
        assert fs_read(actor=env.actor, workspace=env.workspace, path=path).content == content
    # New; large over large; small over large; small over small; large over small.
    assert hints == [False, True, True, False, True]
    wait_for(lambda: env.must("ls", "-A", wdir).split() == [b"f"], what="only the file left")


def test_a_write_whose_upload_breaks_off_leaves_no_part_behind(env, wdir, monkeypatch):
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/f", content=b"old")

    class Broken(services.SizedTar):
        """The connection to the engine breaks after part of the temp file was sent."""

        def __iter__(self):
            sent = 0
            for piece in super().__iter__():
                yield piece
                sent += len(piece)
                if sent > 2 * MiB:
                    raise OSError("connection reset")

    monkeypatch.setattr(services, "SizedTar", Broken)
    with pytest.raises((DevBenchError, OSError)):
        fs_write(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/f", content=os.urandom(4 * MiB)
        )
    monkeypatch.undo()
    assert env.must("ls", "-A", wdir).split() == [b"f"]
    assert fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/f").content == b"old"


def test_if_match_etag_on_write_and_delete(env, wdir):
    path = f"{wdir}/cond.txt"
    v1 = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"v1")
    v2 = fs_write(
        actor=env.actor, workspace=env.workspace, path=path, content=b"v2", if_match_etag=v1.etag
    )
    with pytest.raises(DevBenchError) as exc:
        fs_write(
            actor=env.actor,
            workspace=env.workspace,
            path=path,
            content=b"v3",
            if_match_etag=v1.etag,
        )
    assert _code(exc) == "precondition_failed"
    assert exc.value.http_status == 412
    assert exc.value.extra["current_etag"] == v2.etag
    assert env.must("cat", path) == b"v2"
    # Quoted (HTTP-style) ETags are accepted too.
    fs_write(
        actor=env.actor,
        workspace=env.workspace,
        path=path,
        content=b"v3",
        if_match_etag=f'"{v2.etag}"',
    )
    with pytest.raises(DevBenchError) as exc:
        fs_delete(actor=env.actor, workspace=env.workspace, path=path, if_match_etag=v2.etag)
    assert _code(exc) == "precondition_failed"
    assert env.must("cat", path) == b"v3"
    v3 = hashlib.sha256(b"v3").hexdigest()
    fs_delete(actor=env.actor, workspace=env.workspace, path=path, if_match_etag=v3)
    assert env.sh("test", "-e", path)[0] != 0
    with pytest.raises(DevBenchError) as exc:
        fs_write(
            actor=env.actor, workspace=env.workspace, path=path, content=b"x", if_match_etag=v3
        )
    assert _code(exc) == "precondition_failed"


def test_stat_file_dir_symlink_and_missing(env, wdir):
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/s.py", content=b"print(1)\n")
    env.must("ln", "-s", "s.py", f"{wdir}/link")
    st = fs_stat(actor=env.actor, workspace=env.workspace, path=f"{wdir}/s.py")
    assert (st.kind, st.size, st.permissions, st.is_dir) == ("file", 9, "0644", False)
    assert st.etag == hashlib.sha256(b"print(1)\n").hexdigest()
    assert st.mime_type == "text/x-python"
    assert st.mtime is not None
    d = fs_stat(actor=env.actor, workspace=env.workspace, path=wdir)
    assert (d.kind, d.is_dir, d.etag) == ("dir", True, None)
    link = fs_stat(actor=env.actor, workspace=env.workspace, path=f"{wdir}/link")
    assert (link.kind, link.link_target, link.etag) == ("symlink", "s.py", None)
    root = fs_stat(actor=env.actor, workspace=env.workspace, path="/workspace")
    assert (root.path, root.kind) == ("/workspace", "dir")
    with pytest.raises(DevBenchError) as exc:
        fs_stat(actor=env.actor, workspace=env.workspace, path=f"{wdir}/nope")
    assert _code(exc) == "not_found" and exc.value.http_status == 404


def test_list_directory_flat_recursive_and_truncated(env, wdir):
    env.must("mkdir", "-p", f"{wdir}/sub/deeper")
    for name in ("b.txt", "a.txt", "sub/c.txt", "sub/deeper/d.txt"):
        fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/{name}", content=b"12345")
    env.must("ln", "-s", "a.txt", f"{wdir}/z-link")
    flat = fs_list(actor=env.actor, workspace=env.workspace, path=wdir)
    assert [(e.name, e.kind) for e in flat.items] == [
        ("a.txt", "file"),
        ("b.txt", "file"),
        ("sub", "dir"),
        ("z-link", "symlink"),
    ]
    assert flat.items[0].size == 5 and flat.items[0].path == f"{wdir}/a.txt"
    assert flat.items[3].link_target == "a.txt"
    assert flat.has_more is False and flat.next_cursor is None
    deep = fs_list(actor=env.actor, workspace=env.workspace, path=wdir, recursive=True)
    assert [e.path.removeprefix(wdir + "/") for e in deep.items] == [
        "a.txt",
        "b.txt",
        "sub",
        "sub/c.txt",
        "sub/deeper",
        "sub/deeper/d.txt",
        "z-link",
    ]
    cut = fs_list(actor=env.actor, workspace=env.workspace, path=wdir, recursive=True, limit=3)
    assert len(cut.items) == 3 and cut.has_more is True
    rest = fs_list(
        actor=env.actor, workspace=env.workspace, path=wdir, recursive=True, cursor=cut.next_cursor
    )
    assert [e.path for e in cut.items + rest.items] == [e.path for e in deep.items]
    assert rest.has_more is False
    with pytest.raises(DevBenchError) as exc:
        fs_list(actor=env.actor, workspace=env.workspace, path=f"{wdir}/a.txt")
    assert _code(exc) == "not_a_directory"
    with pytest.raises(DevBenchError) as exc:
        fs_list(actor=env.actor, workspace=env.workspace, path=wdir, limit=0)
    assert _code(exc) == "invalid_limit"


def test_list_of_the_root_works(env, wdir):
    listing = fs_list(actor=env.actor, workspace=env.workspace, path="/workspace")
    assert listing.path == "/workspace"
    assert wdir in [e.path for e in listing.items]


def test_is_a_directory_and_not_a_directory_errors(env, wdir):
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/file", content=b"x")
    call: Callable[[], object]
    for call in (
        lambda: fs_read(actor=env.actor, workspace=env.workspace, path=wdir),
        lambda: fs_write(actor=env.actor, workspace=env.workspace, path=wdir, content=b""),
        lambda: fs_write(actor=env.actor, workspace=env.workspace, path="/workspace", content=b""),
    ):
        with pytest.raises(DevBenchError) as exc:
            call()
        assert _code(exc) == "is_a_directory"
    for call in (
        lambda: fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/file/x"),
        lambda: fs_write(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/file/x", content=b""
        ),
        lambda: fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/file/d"),
    ):
        with pytest.raises(DevBenchError) as exc:
            call()
        assert _code(exc) == "not_a_directory"
    with pytest.raises(DevBenchError) as exc:
        fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/missing")
    assert _code(exc) == "not_found"


def test_mkdir(env, wdir):
    made = fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/new")
    assert made.created is True
    assert env.must("stat", "-c", "%F %u", f"{wdir}/new").strip() == b"directory 1000"
    with pytest.raises(DevBenchError) as exc:
        fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/new")
    assert _code(exc) == "already_exists"
    again = fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/new", parents=True)
    assert again.created is False
    with pytest.raises(DevBenchError) as exc:
        fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/p/q/r")
    assert _code(exc) == "not_found"
    fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/p/q/r", parents=True)
    assert env.sh("test", "-d", f"{wdir}/p/q/r")[0] == 0
    assert AuditEvent.objects.filter(action="fs.mkdir", outcome="success").count() == 3


def test_delete_file_symlink_and_directories(env, wdir):
    env.must("mkdir", "-p", f"{wdir}/full/inner")
    env.must("touch", f"{wdir}/full/inner/f", f"{wdir}/target")
    env.must("mkdir", f"{wdir}/empty")
    env.must("ln", "-s", "target", f"{wdir}/link")
    gone = fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/link")
    assert gone.kind == "symlink" and gone.status == "deleted"
    assert env.sh("test", "-e", f"{wdir}/target")[0] == 0  # the link's target stays
    fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/target")
    assert env.sh("test", "-e", f"{wdir}/target")[0] != 0
    fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/empty")
    with pytest.raises(DevBenchError) as exc:
        fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/full")
    assert _code(exc) == "directory_not_empty"
    assert env.sh("test", "-e", f"{wdir}/full/inner/f")[0] == 0
    fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/full", recursive=True)
    assert env.must("ls", "-A", wdir) == b""
    with pytest.raises(DevBenchError) as exc:
        fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/full")
    assert _code(exc) == "not_found"
    with pytest.raises(DevBenchError) as exc:
        fs_delete(actor=env.actor, workspace=env.workspace, path="/workspace", recursive=True)
    assert _code(exc) == "invalid_path"
    outcomes = set(
        AuditEvent.objects.filter(action="fs.delete").values_list("outcome", "error_code")
    )
    assert ("error", "directory_not_empty") in outcomes and ("success", "") in outcomes


def test_move_rename_overwrite_and_errors(env, wdir):
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/a", content=b"A")
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/b", content=b"B")
    env.must("mkdir", f"{wdir}/d")
    moved = fs_move(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/a", destination=f"{wdir}/d/a2"
    )
    assert (moved.path, moved.source, moved.kind) == (f"{wdir}/d/a2", f"{wdir}/a", "file")
    assert env.must("cat", f"{wdir}/d/a2") == b"A"
    with pytest.raises(DevBenchError) as exc:
        fs_move(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/b", destination=f"{wdir}/d/a2"
        )
    assert _code(exc) == "already_exists"
    fs_move(
        actor=env.actor,
        workspace=env.workspace,
        path=f"{wdir}/b",
        destination=f"{wdir}/d/a2",
        overwrite=True,
    )
    assert env.must("cat", f"{wdir}/d/a2") == b"B"
    # A directory moves as a whole and is never moved into an existing directory.
    fs_move(actor=env.actor, workspace=env.workspace, path=f"{wdir}/d", destination=f"{wdir}/e")
    assert env.must("cat", f"{wdir}/e/a2") == b"B"
    env.must("mkdir", f"{wdir}/other")
    with pytest.raises(DevBenchError) as exc:
        fs_move(
            actor=env.actor,
            workspace=env.workspace,
            path=f"{wdir}/e",
            destination=f"{wdir}/other",
            overwrite=True,
        )
    assert _code(exc) == "is_a_directory"
    with pytest.raises(DevBenchError) as exc:
        fs_move(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/e", destination=f"{wdir}/e/in"
        )
    assert _code(exc) == "invalid_path"
    with pytest.raises(DevBenchError) as exc:
        fs_move(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/zz", destination=f"{wdir}/y"
        )
    assert _code(exc) == "not_found"
    with pytest.raises(DevBenchError) as exc:
        fs_move(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/e", destination=f"{wdir}/n/o/p"
        )
    assert _code(exc) == "not_found"
    assert AuditEvent.objects.filter(action="fs.move", outcome="success").count() == 3


def test_file_too_large_reports_the_limit(env, wdir):
    TenantPolicy.objects.update_or_create(tenant=env.tenant, defaults={"max_file_size_bytes": 1000})
    with pytest.raises(DevBenchError) as exc:
        fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/big", content=b"x" * 1001)
    assert _code(exc) == "file_too_large"
    assert exc.value.http_status == 413
    assert exc.value.extra["limit_bytes"] == 1000
    assert env.must("ls", "-A", wdir) == b""  # nothing reached the workspace
    streamed = io.BytesIO(b"y" * 5000)
    with pytest.raises(DevBenchError) as exc:
        fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/big", content=streamed)
    assert _code(exc) == "file_too_large"
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/ok", content=b"x" * 1000)
    env.must("dd", "if=/dev/zero", f"of={wdir}/made-inside", "bs=2000", "count=1")
    with pytest.raises(DevBenchError) as exc:
        fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/made-inside")
    assert _code(exc) == "file_too_large"
    part = fs_read(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/made-inside", offset=1500
    )
    assert part.content == b"\0" * 500
    # Streaming reads are not bound by the in-memory limit.
    stream = fs_read_stream(actor=env.actor, workspace=env.workspace, path=f"{wdir}/made-inside")
    assert b"".join(stream.chunks()) == b"\0" * 2000


def test_scopes_read_and_write(env, wdir):
    reader = Principal(
        user=None, tenant=env.tenant, scopes=frozenset({Scope.READ}), kind="token", actor_id="r"
    )
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/f", content=b"x")
    assert fs_read(actor=reader, workspace=env.workspace, path=f"{wdir}/f").content == b"x"
    fs_list(actor=reader, workspace=env.workspace, path=wdir)
    for call in (
        lambda: fs_write(actor=reader, workspace=env.workspace, path=f"{wdir}/f", content=b"y"),
        lambda: fs_delete(actor=reader, workspace=env.workspace, path=f"{wdir}/f"),
        lambda: fs_mkdir(actor=reader, workspace=env.workspace, path=f"{wdir}/d"),
        lambda: fs_move(
            actor=reader, workspace=env.workspace, path=f"{wdir}/f", destination=f"{wdir}/g"
        ),
        lambda: fs_upload_archive(actor=reader, workspace=env.workspace, path=wdir, archive=b""),
    ):
        with pytest.raises(DevBenchError) as exc:
            call()
        assert _code(exc) == "scope_required"
    assert env.must("cat", f"{wdir}/f") == b"x"
    denied = AuditEvent.objects.filter(
        action__startswith="fs.", outcome="denied", error_code="scope_required"
    )
    assert sorted(denied.values_list("action", flat=True)) == [
        "fs.delete",
        "fs.mkdir",
        "fs.move",
        "fs.upload_archive",
        "fs.write",
    ]


def test_workspace_not_running_and_other_tenant(env, wdir, other_tenant):
    from tenants.principal import system_principal

    env.workspace.status = WorkspaceStatus.STOPPED
    with pytest.raises(DevBenchError) as exc:
        fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/x")
    assert _code(exc) == "workspace_not_running" and exc.value.http_status == 409
    with pytest.raises(DevBenchError) as exc:
        fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/x", content=b"")
    assert _code(exc) == "workspace_not_running"
    env.workspace.status = WorkspaceStatus.RUNNING
    stranger = system_principal(other_tenant)
    with pytest.raises(DevBenchError) as exc:
        fs_read(actor=stranger, workspace=env.workspace, path=f"{wdir}/x")
    assert _code(exc) == "workspace_not_found"


def test_upload_and_download_archive_round_trip(env, wdir):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("top.txt", b"top"),
            ("pkg/mod.py", b"x = 1\n"),
            ("pkg/bin", os.urandom(3000)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o4777  # setuid and world-writable never survive
            info.uid = 0
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pkg/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "mod.py"
        tar.addfile(link)
        hard = tarfile.TarInfo("hard")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "top.txt"
        tar.addfile(hard)
    result = fs_upload_archive(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/dest/new", archive=buf.getvalue()
    )
    assert (result.files, result.symlinks, result.hardlinks) == (3, 1, 1)
    assert result.path == f"{wdir}/dest/new"
    assert env.must("cat", f"{wdir}/dest/new/pkg/link") == b"x = 1\n"
    assert env.must("cat", f"{wdir}/dest/new/hard") == b"top"
    assert env.must("stat", "-c", "%u %a", f"{wdir}/dest/new/top.txt").split() == [b"1000", b"755"]
    assert AuditEvent.objects.filter(action="fs.upload_archive", outcome="success").exists()

    download = fs_download_archive(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/dest/new"
    )
    assert download.filename == "new.tar"
    with tarfile.open(fileobj=io.BytesIO(b"".join(download.chunks()))) as tar:
        names = sorted(tar.getnames())
        assert "new/pkg/mod.py" in names
        member = tar.extractfile("new/pkg/mod.py")
        assert member is not None and member.read() == b"x = 1\n"
    single = fs_download_archive(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/dest/new/top.txt"
    )
    with tarfile.open(fileobj=io.BytesIO(b"".join(single.chunks()))) as tar:
        assert tar.getnames() == ["top.txt"]


def test_upload_into_a_file_or_garbage_is_refused(env, wdir):
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/f", content=b"x")
    with pytest.raises(DevBenchError) as exc:
        fs_upload_archive(actor=env.actor, workspace=env.workspace, path=f"{wdir}/f", archive=b"")
    assert _code(exc) == "not_a_directory"
    with pytest.raises(DevBenchError) as exc:
        fs_upload_archive(
            actor=env.actor, workspace=env.workspace, path=wdir, archive=b"not a tar at all" * 50
        )
    assert _code(exc) == "invalid_archive"
    assert env.must("ls", "-A", wdir).split() == [b"f"]
