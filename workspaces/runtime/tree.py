"""A directory's entries, read from its archive: ``tree_entries`` of a local engine.

The engine has no listing call. Its archive of a directory is the way to the names,
and it carries every file's contents too. Read where the engine is (by the node's
agent for every caller elsewhere), only the names and stats travel on.
"""

from __future__ import annotations

from core.errors import EngineError
from workspaces.filesystem.tario import open_stream
from workspaces.filesystem.tarlib import tarfile
from workspaces.runtime.base import ArchiveReader, PathKind, TreeEntries, TreeEntry


class ArchiveUnreadable(EngineError):
    code = "engine_error"
    default_message = "The engine's archive of the directory could not be read as tar."


def member_kind(member: tarfile.TarInfo) -> PathKind:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    return "file" if member.isreg() else "other"


class TarEntries(TreeEntries):
    """The entries of a directory's tar stream (``reader``), read as they are needed."""

    def __init__(self, reader: ArchiveReader, *, nested: bool) -> None:
        self._reader = reader
        self._nested = nested
        self.stat = reader.stat
        try:
            self._members = iter(open_stream(reader))
        except tarfile.TarError as exc:
            reader.close()
            raise ArchiveUnreadable() from exc
        except BaseException:
            reader.close()
            raise

    def __next__(self) -> TreeEntry:
        while True:
            try:
                member = next(self._members)
            except tarfile.TarError as exc:
                raise ArchiveUnreadable() from exc
            # Names are "<dir name>/<relative path>"; the first member is the directory.
            _, _, relative = member.name.partition("/")
            if not relative or (not self._nested and "/" in relative):
                continue
            return TreeEntry(
                relative=relative,
                kind=member_kind(member),
                size=member.size if member.isreg() else 0,
                mode=member.mode & 0o7777,
                mtime=member.mtime,
                link=member.linkname if member.issym() else "",
            )

    def close(self) -> None:
        self._reader.close()
