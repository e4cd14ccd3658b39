"""A listing page is built without validating each entry again; it must read exactly as
the validated page (every field, every kind)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.fastjson import dumps
from workspaces.filesystem.results import DirEntry, DirListing
from workspaces.filesystem.schemas import FsListOut


def _listing(next_cursor: str | None) -> DirListing:
    when = datetime(2026, 12, 1, 10, 20, 30, 123456, tzinfo=UTC)
    return DirListing(
        path="/workspace/t",
        items=(
            DirEntry("a.txt", "/workspace/t/a.txt", "file", 12, 0o644, when),
            DirEntry("bin", "/workspace/t/bin", "dir", 4096, 0o755, when),
            DirEntry("link", "/workspace/t/link", "symlink", 4, 0o777, None, "a.txt"),
            DirEntry("fifo", "/workspace/t/fifo", "other", 0, 0o4600, when),
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
        assert built["has_more"] is (cursor is not None)
        assert [i["permissions"] for i in built["items"]] == ["0644", "0755", "0777", "4600"]
        assert built["items"][1]["is_dir"] and not built["items"][0]["is_dir"]
