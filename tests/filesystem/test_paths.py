"""Path rules: normalisation and confined symlink resolution (no engine needed)."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import DevBenchError
from workspaces.filesystem.access import clean_etag
from workspaces.filesystem.paths import NAME_MAX, PATH_MAX, normalise, resolve
from workspaces.runtime.base import PathStat


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("/workspace", "/workspace"),
        ("/workspace/", "/workspace"),
        (".", "/workspace"),
        ("a/b", "/workspace/a/b"),
        ("./a//b/./c/", "/workspace/a/b/c"),
        ("/workspace/a/../b", "/workspace/b"),
        ("a/b/../../c", "/workspace/c"),
        ("/workspace/../workspace/x", "/workspace/x"),
        ("dir with spaces/ünïcode ✓", "/workspace/dir with spaces/ünïcode ✓"),
        ("back\\slash", "/workspace/back\\slash"),
        ("x" * NAME_MAX, "/workspace/" + "x" * NAME_MAX),
    ],
)
def test_normalise(raw, clean):
    assert normalise(raw) == clean


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("/etc/passwd", "path_outside_workspace"),
        ("..", "path_outside_workspace"),
        ("../workspace2/x", "path_outside_workspace"),
        ("/workspace/../../etc", "path_outside_workspace"),
        ("/workspacefoo", "path_outside_workspace"),
        ("/", "path_outside_workspace"),
        ("", "invalid_path"),
        ("a\x00b", "invalid_path"),
        ("x" * (NAME_MAX + 1), "invalid_path"),
        ("é" * 128, "invalid_path"),  # 256 bytes in UTF-8
        ("a/" * (PATH_MAX // 2 + 1), "invalid_path"),
        ("\ud800", "invalid_path"),
    ],
)
def test_normalise_refuses(raw, code):
    with pytest.raises(DevBenchError) as exc:
        normalise(raw)
    assert exc.value.code == code


def _is_clean_inside(path: str) -> bool:
    parts = path.split("/")
    return (
        (path == "/workspace" or path.startswith("/workspace/"))
        and "" not in parts[1:]
        and "." not in parts
        and ".." not in parts
        and "\x00" not in path
        and posixpath.normpath(path) == path
        and len(path.encode()) <= PATH_MAX
        and all(len(p.encode()) <= NAME_MAX for p in parts)
    )


path_alphabet = st.sampled_from(["/", ".", "..", "a", "workspace", "\x00", "é", "\\", " ", "~"])


@settings(max_examples=2000)
@given(st.one_of(st.text(), st.lists(path_alphabet, max_size=30).map("".join)))
def test_normalise_never_yields_a_path_outside_the_root(raw):
    try:
        clean = normalise(raw)
    except DevBenchError as exc:
        assert exc.code in ("invalid_path", "path_outside_workspace")
        return
    assert _is_clean_inside(clean), clean
    assert normalise(clean) == clean  # idempotent


def _fs(entries: dict[str, str]) -> dict[str, PathStat]:
    """A fake tree: path -> 'dir', 'file' or '->target' (a link; target as the engine says)."""
    tree = {"/workspace": PathStat(name="workspace", kind="dir", size=0, mode=0o755, mtime="")}
    for path, what in entries.items():
        if what.startswith("->"):
            tree[path] = PathStat(
                name=posixpath.basename(path),
                kind="symlink",
                size=0,
                mode=0o777,
                mtime="",
                link_target=what[2:],
            )
        else:
            tree[path] = PathStat(
                name=posixpath.basename(path),
                kind="dir" if what == "dir" else "file",
                size=0,
                mode=0o644,
                mtime="",
            )
    return tree


FAKE = _fs(
    {
        "/workspace/d": "dir",
        "/workspace/d/f": "file",
        "/workspace/etc": "->/etc",
        "/workspace/root": "->/",
        "/workspace/up": "->../../etc",
        "/workspace/alias": "->d",
        "/workspace/abs": "->/workspace/d/f",
        "/workspace/d/back": "->..",
        "/workspace/loop": "->loop",
    }
)


@pytest.mark.parametrize(
    ("path", "follow", "resolved", "kind"),
    [
        ("/workspace/d/f", True, "/workspace/d/f", "file"),
        ("/workspace/alias/f", False, "/workspace/d/f", "file"),
        ("/workspace/abs", True, "/workspace/d/f", "file"),
        ("/workspace/abs", False, "/workspace/abs", "symlink"),
        ("/workspace/d/back/d/f", True, "/workspace/d/f", "file"),
        ("/workspace/d/back", True, "/workspace", "dir"),
        ("/workspace/alias/new/x", True, "/workspace/d/new/x", None),
    ],
)
def test_resolve_follows_links_inside(path, follow, resolved, kind):
    result = resolve(path, FAKE.get, follow_final=follow)
    assert result.path == resolved
    assert result.kind == kind


def test_resolve_reports_what_is_missing():
    result = resolve("/workspace/alias/n1/n2/f", FAKE.get, follow_final=True)
    assert (result.existing, result.missing) == ("/workspace/d", ("n1", "n2", "f"))


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/workspace/etc/passwd", "path_outside_workspace"),
        ("/workspace/root/etc/passwd", "path_outside_workspace"),
        ("/workspace/up/x", "path_outside_workspace"),
        ("/workspace/d/f/x", "not_a_directory"),
        ("/workspace/loop", "invalid_path"),
    ],
)
def test_resolve_refuses(path, code):
    with pytest.raises(DevBenchError) as exc:
        resolve(path, FAKE.get, follow_final=True)
    assert exc.value.code == code


names = st.sampled_from(["a", "b", "c"])
targets = st.one_of(
    st.lists(st.sampled_from(["a", "b", "c", "..", ".", ""]), min_size=1, max_size=4).map("/".join),
    st.sampled_from(["/", "/etc", "/workspace", "/workspace/a", "/workspace/../etc"]),
)


@settings(max_examples=500)
@given(
    st.dictionaries(
        st.lists(names, min_size=1, max_size=3).map(lambda p: "/workspace/" + "/".join(p)),
        st.one_of(st.sampled_from(["dir", "file"]), targets.map(lambda t: "->" + t)),
        max_size=8,
    ),
    st.lists(names, min_size=1, max_size=5).map(lambda p: "/workspace/" + "/".join(p)),
    st.booleans(),
)
def test_resolve_never_leaves_the_root(entries, path, follow):
    """Whatever links a workspace holds, a resolution ends inside the root or fails."""
    tree = _fs(entries)
    try:
        result = resolve(path, tree.get, follow_final=follow)
    except DevBenchError as exc:
        assert exc.code in (
            "path_outside_workspace",
            "invalid_path",
            "not_a_directory",
            "not_found",
        )
        return
    assert _is_clean_inside(result.path)
    assert _is_clean_inside(result.existing)


def test_clean_etag_accepts_http_forms():
    assert clean_etag("abc") == clean_etag('"abc"') == clean_etag(' W/"abc" ') == "abc"
