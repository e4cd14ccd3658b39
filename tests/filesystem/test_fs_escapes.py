"""Escape attempts: paths, symlinks made inside the workspace, hostile tar archives.

The links are created from inside the container, as the workspace user, the
way a process in the workspace would.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from core.errors import DevBenchError
from tenants.models import AuditEvent
from workspaces.filesystem.errors import EtagMismatch
from workspaces.filesystem.services import (
    fs_delete,
    fs_download_archive,
    fs_list,
    fs_mkdir,
    fs_move,
    fs_read,
    fs_stat,
    fs_upload_archive,
    fs_write,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration]

PASSWD = b"root:x:0:0"


def _code(call) -> str:
    with pytest.raises(DevBenchError) as exc:
        call()
    return exc.value.code


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../etc/passwd", "/workspace/../etc/passwd", "/workspacex/f", "/", "/.."],
)
def test_paths_outside_the_root_are_refused(env, path):
    assert _code(lambda: fs_read(actor=env.actor, workspace=env.workspace, path=path)) == (
        "path_outside_workspace"
    )
    assert (
        _code(lambda: fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"x"))
        == "path_outside_workspace"
    )
    assert AuditEvent.objects.filter(
        action="fs.write", outcome="denied", error_code="path_outside_workspace"
    ).exists()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a\x00b", "nul_byte"),
        ("", "empty"),
        ("x" * 256, "name_too_long"),
        ("a/" * 2100, "path_too_long"),
    ],
)
def test_invalid_paths_are_refused(env, path, reason):
    with pytest.raises(DevBenchError) as exc:
        fs_stat(actor=env.actor, workspace=env.workspace, path=path)
    assert exc.value.code == "invalid_path"
    assert exc.value.extra["reason"] == reason


@pytest.mark.parametrize("link_target", ["/etc", "/", "../../etc", "/workspace/../etc"])
def test_a_link_out_of_the_workspace_is_never_followed(env, wdir, link_target):
    env.must("ln", "-s", link_target, f"{wdir}/out")
    env.must("touch", f"{wdir}/x")
    via = f"{wdir}/out/etc/passwd" if link_target == "/" else f"{wdir}/out/passwd"
    for call in (
        lambda: fs_read(actor=env.actor, workspace=env.workspace, path=via),
        lambda: fs_stat(actor=env.actor, workspace=env.workspace, path=via),
        lambda: fs_list(actor=env.actor, workspace=env.workspace, path=f"{wdir}/out"),
        lambda: fs_download_archive(actor=env.actor, workspace=env.workspace, path=f"{wdir}/out"),
        lambda: fs_write(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/out/evil", content=b"x"
        ),
        lambda: fs_mkdir(actor=env.actor, workspace=env.workspace, path=f"{wdir}/out/d"),
        lambda: fs_delete(actor=env.actor, workspace=env.workspace, path=via),
        lambda: fs_move(
            actor=env.actor, workspace=env.workspace, path=via, destination=f"{wdir}/stolen"
        ),
        lambda: fs_move(
            actor=env.actor,
            workspace=env.workspace,
            path=f"{wdir}/x",
            destination=f"{wdir}/out/x",
        ),
        lambda: fs_upload_archive(
            actor=env.actor, workspace=env.workspace, path=f"{wdir}/out", archive=_tar(("f", b"x"))
        ),
    ):
        assert _code(call) == "path_outside_workspace"
    # The link itself is an ordinary entry: it can be described and deleted.
    stat = fs_stat(actor=env.actor, workspace=env.workspace, path=f"{wdir}/out")
    assert (stat.kind, stat.link_target) == ("symlink", link_target)
    fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/out")
    assert env.must("ls", "-A", wdir).split() == [b"x"]
    assert env.must("head", "-c", "10", "/etc/passwd") == PASSWD


def test_a_final_link_out_is_not_followed_for_reads_or_writes(env, wdir):
    env.must("ln", "-s", "/etc/passwd", f"{wdir}/pw")
    assert _code(lambda: fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/pw")) == (
        "path_outside_workspace"
    )
    assert (
        _code(
            lambda: fs_write(
                actor=env.actor, workspace=env.workspace, path=f"{wdir}/pw", content=b""
            )
        )
        == "path_outside_workspace"
    )
    # Deleting or moving the link touches only the link.
    fs_move(actor=env.actor, workspace=env.workspace, path=f"{wdir}/pw", destination=f"{wdir}/pw2")
    fs_delete(actor=env.actor, workspace=env.workspace, path=f"{wdir}/pw2")
    assert env.must("head", "-c", "10", "/etc/passwd") == PASSWD


def test_links_inside_the_workspace_are_followed(env, wdir):
    env.must("mkdir", f"{wdir}/real")
    env.must("ln", "-s", "real", f"{wdir}/alias")
    env.must("ln", "-s", f"{wdir}/real/f", f"{wdir}/abs-link")
    fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/alias/f", content=b"via")
    assert env.must("cat", f"{wdir}/real/f") == b"via"
    assert (
        fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/abs-link").content == b"via"
    )
    # Writing through a final link replaces the target's content; the link stays a link.
    env.must("chmod", "750", f"{wdir}/real/f")
    via_link = fs_write(
        actor=env.actor, workspace=env.workspace, path=f"{wdir}/abs-link", content=b"new"
    )
    assert env.must("cat", f"{wdir}/real/f") == b"new"
    assert env.must("readlink", f"{wdir}/abs-link").strip() == f"{wdir}/real/f".encode()
    # What the link leads to is what was checked: its path, its mode, its ETag.
    assert (via_link.path, via_link.mode, via_link.created) == (f"{wdir}/real/f", 0o750, False)
    with pytest.raises(EtagMismatch):
        fs_write(
            actor=env.actor,
            workspace=env.workspace,
            path=f"{wdir}/abs-link",
            content=b"stale",
            if_match_etag="0" * 64,
        )
    fs_write(
        actor=env.actor,
        workspace=env.workspace,
        path=f"{wdir}/alias/f",
        content=b"checked",
        if_match_etag=via_link.etag,
    )
    assert env.must("cat", f"{wdir}/real/f") == b"checked"
    listing = fs_list(actor=env.actor, workspace=env.workspace, path=f"{wdir}/alias")
    assert [e.path for e in listing.items] == [f"{wdir}/real/f"]


def test_a_symlink_loop_is_a_clear_error(env, wdir):
    env.must("ln", "-s", "loop", f"{wdir}/loop")
    assert _code(
        lambda: fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/loop")
    ) == ("symlink_loop")


def _tar(*members: tuple[str, bytes] | tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("/etc/evil", b"x")], "absolute_path"),
        ([("../evil", b"x")], "OutsideDestinationError"),
        ([("a/../../evil", b"x")], "OutsideDestinationError"),
        ([_link("up", "../../etc")], "LinkOutsideDestinationError"),
        ([_link("abs", "/etc/passwd")], "AbsoluteLinkError"),
        ([_link("hard", "/etc/passwd", hard=True)], "AbsoluteLinkError"),
        ([_link("hard", "../../../etc/passwd", hard=True)], "LinkOutsideDestinationError"),
        ([_link("hard", "missing", hard=True)], "hardlink_target"),
        ([_special("null", tarfile.CHRTYPE)], "member_type"),
        ([_special("sda", tarfile.BLKTYPE)], "member_type"),
        ([_special("pipe", tarfile.FIFOTYPE)], "member_type"),
        ([_link("l", "."), ("l/f", b"x")], "below_symlink"),
        ([("f", b"x"), ("f/g", b"y")], "below_file"),
        ([("x" * 300, b"x")], "invalid_path"),
    ],
)
def test_hostile_archives_are_refused_whole(env, wdir, members, reason):
    # A harmless member comes first: a refused archive must leave no trace at all.
    archive = _tar(("first-ok.txt", b"ok"), *members)
    with pytest.raises(DevBenchError) as exc:
        fs_upload_archive(actor=env.actor, workspace=env.workspace, path=wdir, archive=archive)
    assert exc.value.code == "invalid_archive"
    assert exc.value.extra["reason"] == reason
    assert env.must("ls", "-A", wdir) == b""  # nothing at all was extracted


def test_an_archive_cannot_extract_through_an_existing_link_out(env, wdir):
    env.must("ln", "-s", "/tmp", f"{wdir}/tmplink")
    archive = _tar(("tmplink/planted", b"x"))
    assert (
        _code(
            lambda: fs_upload_archive(
                actor=env.actor, workspace=env.workspace, path=wdir, archive=archive
            )
        )
        == "path_outside_workspace"
    )
    assert env.sh("test", "-e", "/tmp/planted")[0] != 0


def test_archive_members_never_keep_foreign_owners_or_special_bits(env, wdir):
    info = tarfile.TarInfo("suid")
    info.size = 2
    info.mode = 0o6777
    info.uid = info.gid = 0
    info.pax_headers = {"SCHILY.xattr.user.evil": "1"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"#!"))
    fs_upload_archive(actor=env.actor, workspace=env.workspace, path=wdir, archive=buf.getvalue())
    assert env.must("stat", "-c", "%u:%g %a", f"{wdir}/suid").split() == [b"1000:1000", b"755"]


def test_a_compressed_archive_cannot_expand_past_the_limits(env, wdir):
    from tenants.models import TenantPolicy

    TenantPolicy.objects.update_or_create(tenant=env.tenant, defaults={"max_file_size_bytes": 3000})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(5):  # each file within the limit, together past 4x of it
            info = tarfile.TarInfo(f"zeros-{i}")
            info.size = 2900
            tar.addfile(info, io.BytesIO(b"\0" * 2900))
    with pytest.raises(DevBenchError) as exc:
        fs_upload_archive(
            actor=env.actor, workspace=env.workspace, path=wdir, archive=buf.getvalue()
        )
    assert exc.value.code == "file_too_large"
    assert exc.value.extra["reason"] == "archive_total"
    single = _tar(("one", b"x" * 3001))
    with pytest.raises(DevBenchError) as exc:
        fs_upload_archive(actor=env.actor, workspace=env.workspace, path=wdir, archive=single)
    assert exc.value.code == "file_too_large"
    assert exc.value.extra["member"] == "one"
    assert env.must("ls", "-A", wdir) == b""


class _CountingDriver:
    """The workspace's driver, recording the engine calls a read makes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        self.chains: list[list[str]] = []  # the paths of each path_stat_chain call

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "path_stat_chain":  # the engine stats each path the answer covers

            def chain(container_id: str, paths: list[str]) -> Any:
                self.chains.append(list(paths))
                stats = attr(container_id, paths)
                self.calls += [("path_stat", path) for path in paths[: len(stats)]]
                return stats

            return chain
        if name not in ("path_stat", "archive_get", "tree_entries"):
            return attr

        def counted(container_id: str, path: str, **kwargs: Any) -> Any:
            self.calls.append((name, path))
            return attr(container_id, path, **kwargs)

        return counted


@pytest.fixture
def counted_calls(monkeypatch) -> list[_CountingDriver]:
    """The engine calls of each file operation (one driver per operation)."""
    from workspaces.filesystem import access

    drivers: list[_CountingDriver] = []
    real = access.workspace_driver

    def counting(workspace: Any) -> _CountingDriver:
        drivers.append(_CountingDriver(real(workspace)))
        return drivers[-1]

    monkeypatch.setattr(access, "workspace_driver", counting)
    return drivers


def test_a_listing_opens_the_directory_without_a_stat_of_its_own_and_resolves_as_before(
    env, wdir, counted_calls
):
    """A directory's entries come with its lstat: a listing stats only the parents, and
    a final link, a file or a missing path still gets the walk's answer."""
    env.must(
        "sh",
        "-c",
        f"mkdir {wdir}/d {wdir}/d/sub && printf abc > {wdir}/d/f && touch {wdir}/d/sub/s"
        f" && ln -s sub {wdir}/d/tosub && ln -s /etc {wdir}/d/out"
        f" && mkdir {wdir}-top && touch {wdir}-top/t",
    )

    def listed(path: str) -> tuple[list[str] | str, list[tuple[str, str]]]:
        try:
            items = fs_list(actor=env.actor, workspace=env.workspace, path=path).items
            names: list[str] | str = [e.name for e in items]
        except DevBenchError as exc:
            names = exc.code
        return names, counted_calls[-1].calls

    # Directly under the root, and the root itself: one engine call.
    assert listed(f"{wdir}-top") == (["t"], [("tree_entries", f"{wdir}-top")])
    root, calls = listed("/workspace")
    assert f"{wdir}-top".rsplit("/", 1)[1] in root and calls == [("tree_entries", "/workspace")]
    # Deeper: the parents' stats, then the entries.
    assert listed(f"{wdir}/d/sub") == (
        ["s"],
        [("path_stat", wdir), ("path_stat", f"{wdir}/d"), ("tree_entries", f"{wdir}/d/sub")],
    )
    assert listed(f"{wdir}/d/tosub")[0] == ["s"]  # a final link inside is followed
    assert listed(f"{wdir}/d/out")[0] == "path_outside_workspace"
    assert listed(f"{wdir}/d/f")[0] == "not_a_directory"
    assert listed(f"{wdir}/d/missing")[0] == "not_found"
    assert listed(f"{wdir}/d/f/x")[0] == "not_a_directory"
    # Nothing outside the workspace was ever asked for.
    assert all(path.startswith("/workspace") for d in counted_calls for _, path in d.calls)


def test_a_deep_path_is_resolved_with_one_chain_of_stats(env, wdir, counted_calls):
    """The walk's stats down real directories are asked in one driver call (one agent
    round trip on a node); only what follows a link is asked on its own."""
    env.must("sh", "-c", f"mkdir -p {wdir}/a/b/c && echo hi > {wdir}/a/b/c/f && ln -s a/b {wdir}/l")
    stat = fs_stat(actor=env.actor, workspace=env.workspace, path=f"{wdir}/a/b/c/f")
    assert stat.kind == "file" and stat.size == 3
    driver = counted_calls[-1]
    chain = [wdir, f"{wdir}/a", f"{wdir}/a/b", f"{wdir}/a/b/c", f"{wdir}/a/b/c/f"]
    assert driver.chains == [chain]
    assert [path for name, path in driver.calls if name == "path_stat"] == chain
    # Through a link: the chain ends at it, and the walk goes on from its target.
    stat = fs_stat(actor=env.actor, workspace=env.workspace, path=f"{wdir}/l/c/f")
    assert stat.path == f"{wdir}/a/b/c/f"
    driver = counted_calls[-1]
    assert driver.chains == [[wdir, f"{wdir}/l", f"{wdir}/l/c", f"{wdir}/l/c/f"]]
    assert [path for name, path in driver.calls if name == "path_stat"] == [
        wdir,
        f"{wdir}/l",
        f"{wdir}/a",
        f"{wdir}/a/b",
        f"{wdir}/a/b/c",
        f"{wdir}/a/b/c/f",
    ]


def test_a_read_opens_the_file_without_a_stat_of_its_own_and_resolves_as_before(
    env, wdir, counted_calls
):
    """The archive answer carries the final component's lstat: a read stats only the
    parents, and a final link, directory or missing file still gets the walk's answer."""
    env.must(
        "sh",
        "-c",
        f"mkdir {wdir}/d {wdir}/d/sub && printf abc > {wdir}/d/f && ln -s f {wdir}/d/link"
        f" && ln -s /etc/passwd {wdir}/d/out && ln -s /etc {wdir}/etc"
        f" && printf top > {wdir}-top",
    )
    drivers = counted_calls

    def read(path: str) -> tuple[bytes | str, list[tuple[str, str]]]:
        try:
            content: bytes | str = fs_read(
                actor=env.actor, workspace=env.workspace, path=path
            ).content
        except DevBenchError as exc:
            content = exc.code
        return content, drivers[-1].calls

    # Directly under the root: one engine call.
    assert read(f"{wdir}-top") == (b"top", [("archive_get", f"{wdir}-top")])
    # Deeper: the parents' stats, then the archive.
    assert read(f"{wdir}/d/f") == (
        b"abc",
        [("path_stat", wdir), ("path_stat", f"{wdir}/d"), ("archive_get", f"{wdir}/d/f")],
    )
    assert read(f"{wdir}/d/link")[0] == b"abc"  # a final link inside is followed
    assert read(f"{wdir}/d/out")[0] == "path_outside_workspace"
    assert read(f"{wdir}/etc/passwd")[0] == "path_outside_workspace"
    assert read(f"{wdir}/d/sub")[0] == "is_a_directory"
    assert read(f"{wdir}/d/missing")[0] == "not_found"
    assert read(f"{wdir}/d/f/x")[0] == "not_a_directory"
    # Nothing outside the workspace was ever asked for.
    assert all(path.startswith("/workspace/") for d in drivers for _, path in d.calls)
