"""A listing page is built without validating each entry again; it must read exactly as
the validated page (every field, every kind)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.fastjson import dumps
from workspaces.filesystem.results import DirEntry, DirListing
from workspaces.filesystem.schemas import FsListOut, fs_list_json


def _listing(next_cursor: str | None) -> DirListing:
    when = datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=UTC)
    whole_second = datetime(2026, 12, 1, 10, 20, 31, tzinfo=UTC)
    return DirListing(
        path="/workspace/t",
        items=(
            DirEntry("a.txt", "/workspace/t/a.txt", "file", 12, 0o644, when),
            DirEntry("bin", "/workspace/t/bin", "dir", 4096, 0o755, when),
            DirEntry("link", "/workspace/t/link", "symlink", 4, 0o777, None, "a.txt"),
            DirEntry("fifo", "/workspace/t/fifo", "other", 0, 0o4600, when),
            DirEntry("b.txt", "/workspace/t/b.txt", "file", 0, 0o600, whole_second),
        ),
        next_cursor=next_cursor,
    )


def test_the_built_page_equals_the_validated_one():
    for cursor in (None, "next-page"):
        listing = _listing(cursor)
        built = FsListOut.of(listing).model_dump()
        validated = FsListOut.model_validate(listing).model_dump()
        assert built == validated
        assert dumps(built) == dumps(validated)
        assert fs_list_json(listing) == dumps(validated)  # REST's bytes
        assert built["has_more"] is (cursor is not None)
        permissions = [i["permissions"] for i in built["items"]]
        assert permissions == ["0644", "0755", "0777", "4600", "0600"]
        assert built["items"][1]["is_dir"] and not built["items"][0]["is_dir"]
