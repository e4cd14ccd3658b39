"""Is ``put_archive`` of a file over an existing one atomic for readers? (a probe)

    .venv/bin/python bench/probe_archive_replace.py [--mib 64] [--rounds 3]

A reader inside a container stats the file in a tight loop while the engine
replaces it (8 MiB <-> N MiB) through the archive API, then prints every size
it saw and how often. An atomic replacement shows only the two sizes; the
engine's extraction (remove the old path, create the new file, copy the data
in) also shows ``MISSING`` and partial sizes. This is why ``fs_write`` puts a
temp file and renames it into place (see bench/README.md).
"""

from __future__ import annotations

import argparse
import io
import tarfile
import threading
import time
import uuid

import docker

IMAGE = "devbench/busybox:latest"
MiB = 1024 * 1024


def tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.gid, info.mode = len(data), 1000, 1000, 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    volume = f"probe-{uuid.uuid4().hex[:8]}"
    client.volumes.create(volume)
    client.containers.run(
        IMAGE, ["chown", "1000:1000", "/w"], remove=True, network_mode="none",
        volumes={volume: {"bind": "/w", "mode": "rw"}},
    )  # fmt: skip
    container = client.containers.run(
        IMAGE, ["sleep", "300"], detach=True, network_mode="none", user="1000:1000",
        volumes={volume: {"bind": "/w", "mode": "rw"}},
    )  # fmt: skip
    try:
        small, big = b"a" * (8 * MiB), b"b" * (args.mib * MiB)
        container.put_archive("/w", tar_of("f", small))
        seconds = 2 + args.rounds * 2
        reader = (
            f"end=$(( $(date +%s) + {seconds} )); while [ $(date +%s) -lt $end ]; do "
            "stat -c %s /w/f 2>/dev/null || echo MISSING; done | sort | uniq -c"
        )
        exec_id = client.api.exec_create(container.id, ["sh", "-c", reader], user="1000:1000")
        seen: list[bytes] = []
        thread = threading.Thread(target=lambda: seen.append(client.api.exec_start(exec_id)))
        thread.start()
        time.sleep(0.5)
        for _ in range(args.rounds):
            container.put_archive("/w", tar_of("f", big))
            container.put_archive("/w", tar_of("f", small))
        thread.join()
        counts = [line.split() for line in seen[0].decode().splitlines() if line.strip()]
        expected = {str(len(small)), str(len(big))}
        other = [(n, size) for n, size in counts if size not in expected]
        for n, size in sorted(counts, key=lambda c: -int(c[0]))[:10]:
            print(f"{n:>8}  {size}")
        print(
            f"{len(other)} other states seen ({sum(int(n) for n, _ in other)} reads): "
            + ("NOT atomic" if other else "atomic in this run")
        )
    finally:
        container.remove(force=True)
        client.volumes.get(volume).remove(force=True)


if __name__ == "__main__":
    main()
