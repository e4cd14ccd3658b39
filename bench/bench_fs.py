"""File operations against raw docker-py archive calls doing the same work, in one run.

    .venv/bin/python bench/bench_fs.py [--runs 10] [--big-runs 5]

Embedded mode (default, no DATABASE_URL/REDIS_URL): SQLite in a temporary
directory, in-process locks. With DATABASE_URL and REDIS_URL set (e.g.
``. scripts/test-env``) the services take PostgreSQL advisory locks, as in
production; the bench starts its own Celery worker for the spawn and
migrates the database (which must exist).

Operations (ours | raw docker-py):

* write 1 MiB / 64 MiB: ``fs_write`` (resolve, lock, put a temp file from the
  caller's buffer while another thread hashes it, rename in place) | build a
  tar in memory + ``put_archive``;
* read 1 MiB: ``fs_read`` (resolve, get, the body read off the stream and
  hashed on the way) | ``get_archive`` + untar;
* read 64 MiB: ``fs_read_stream`` (spooled first, or streamed once its ETag is
  remembered) | the same raw;
* list a 1,000-file tree: ``fs_list(recursive=True)`` | ``get_archive`` of
  the directory + iterate the tar's members.

Prints p50/p95 of both, the ratio, and MB/s at the p50.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import ratio_line, summarize, timed  # noqa: E402
from _workers import setup_django  # noqa: E402

IMAGE = "devbench/busybox:latest"
MiB = 1024 * 1024


def row(name: str, size: int | None, ours: list[float], raw: list[float]) -> str:
    """The shared ratio line, plus throughput at the p50 for transfers."""
    line = ratio_line(name, ours, raw, label="raw")
    if size:
        o, r = summarize(ours).p50_ms / 1000, summarize(raw).p50_ms / 1000
        line += f" | MB/s {size / MiB / o:6.1f} vs {size / MiB / r:6.1f}"
    return line


# --- setup ---------------------------------------------------------------------------


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid = len(data), 1000, 1000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--big-runs", type=int, default=5)
    args = parser.parse_args()
    worker = setup_django("fs", concurrency=4)

    import docker

    from tenants.models import Tenant
    from tenants.principal import system_principal
    from workspaces.filesystem.services import (
        fs_list,
        fs_read,
        fs_read_stream,
        fs_write,
    )
    from workspaces.services import workspace_kill, workspace_spawn

    tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:8]}", name="bench")
    actor = system_principal(tenant)
    workspace = workspace_spawn(actor=actor, image=IMAGE, wait=True)
    workspace.refresh_from_db()
    api = docker.APIClient(version="auto")
    cid = workspace.container_id

    def raw_write(name: str, data: bytes) -> None:
        api.put_archive(cid, "/workspace", tar_of({name: data}))

    def raw_read(path: str) -> bytes:
        stream, _ = api.get_archive(cid, path, chunk_size=MiB)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.next())  # type: ignore[arg-type]
            assert member is not None
            return member.read()

    def raw_read_streamed(path: str) -> int:
        stream, _ = api.get_archive(cid, path, chunk_size=MiB)
        raw = _Chunks(stream)
        count = 0
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            first = tar.next()
            assert first is not None
            member = tar.extractfile(first)
            assert member is not None
            while chunk := member.read(MiB):
                count += len(chunk)
        return count

    def raw_list(path: str) -> int:
        stream, _ = api.get_archive(cid, path, chunk_size=MiB)
        with tarfile.open(fileobj=_Chunks(stream), mode="r|") as tar:
            return sum(1 for _ in tar)

    def ours_read_streamed(path: str) -> int:
        stream = fs_read_stream(actor=actor, workspace=workspace, path=path)
        return sum(len(c) for c in stream.chunks())

    small, big = os.urandom(MiB), os.urandom(64 * MiB)
    tree = {f"tree/d{i // 100:02d}/f{i:04d}.txt": b"x" * 100 for i in range(1000)}
    api.put_archive(cid, "/workspace", tar_of(tree))

    rows = []
    try:
        print(
            f"engine {api.version()['Version']}, {os.cpu_count()} CPUs, database "
            f"{'postgresql' if worker else 'sqlite (embedded)'}; runs {args.runs}/{args.big_runs}"
        )
        for name, size, runs, ours, raw in (
            (
                "write 1 MiB",
                MiB,
                args.runs,
                lambda: fs_write(actor=actor, workspace=workspace, path="small.bin", content=small),
                lambda: raw_write("small-raw.bin", small),
            ),
            (
                "read 1 MiB",
                MiB,
                args.runs,
                lambda: fs_read(actor=actor, workspace=workspace, path="small.bin"),
                lambda: raw_read("/workspace/small-raw.bin"),
            ),
            (
                "write 64 MiB",
                64 * MiB,
                args.big_runs,
                lambda: fs_write(actor=actor, workspace=workspace, path="big.bin", content=big),
                lambda: raw_write("big-raw.bin", big),
            ),
            (
                "read 64 MiB",
                64 * MiB,
                args.big_runs,
                lambda: ours_read_streamed("/workspace/big.bin"),
                lambda: raw_read_streamed("/workspace/big-raw.bin"),
            ),
            (
                "list 1,000 files",
                None,
                args.runs,
                lambda: fs_list(
                    actor=actor, workspace=workspace, path="tree", recursive=True, limit=5000
                ),
                lambda: raw_list("/workspace/tree"),
            ),
        ):
            # Interleave ours and raw per round so both see the same machine load.
            ours_s: list[float] = []
            raw_s: list[float] = []
            ours()
            raw()
            for _ in range(runs):
                ours_s.append(timed(ours))
                raw_s.append(timed(raw))
            rows.append(row(name, size, ours_s, raw_s))
            print(rows[-1], flush=True)
        listed = fs_list(actor=actor, workspace=workspace, path="tree", recursive=True, limit=5000)
        assert len(listed.items) == 1010, len(listed.items)
    finally:
        workspace_kill(actor=actor, workspace=workspace, force=True)
        tenant.delete()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=20)


class _Chunks(io.RawIOBase):
    """A file over docker-py's chunk iterator (what a raw client would write)."""

    def __init__(self, chunks: object) -> None:
        self._it = iter(chunks)  # type: ignore[call-overload]
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


if __name__ == "__main__":
    main()
