"""The memory row of ``bench/run``: a mixed load for some minutes, RSS sampled per process.

The goal (issue 11) is that each web process and the worker stay flat under a long load,
not that they never grow: a process fills its caches, its thread pool and its allocator's
arenas during the first requests. So the first third of the run is the warm-up, and a
process is flat when its RSS in the last third stays within 10 % (and at least 10 MiB)
of its RSS at the end of the warm-up.

The load is what an agent platform sees: control reads (``wrk`` at 16 connections on
``GET /workspaces/{id}``), execs with output (4 clients, ``wait: true``), and file
writes, reads and stats of 1 MiB (one client), all at once for the whole run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SAMPLE_EVERY_S = 15
WRK_CHUNK_S = 30
EXEC_CLIENTS = 4
FLAT_FRACTION = 0.10
FLAT_MIN_MIB = 10.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (gunicorn's workers, a worker's children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_of(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+)", status)
    return int(match.group(1)) / 1024 if match else None


@dataclass
class Series:
    """The RSS samples (MiB) of one process, at the run's sample times."""

    label: str
    samples: list[tuple[float, float]] = field(default_factory=list)

    def at(self, fraction: float, duration_s: float) -> float:
        """The last sample taken before ``fraction`` of the run."""
        before = [rss for t, rss in self.samples if t <= fraction * duration_s]
        return before[-1] if before else self.samples[0][1]

    def verdict(self, duration_s: float) -> tuple[float, float, bool]:
        warm = self.at(1 / 3, duration_s)
        late = max(rss for t, rss in self.samples if t >= 2 / 3 * duration_s)
        return warm, late, late <= warm + max(FLAT_MIN_MIB, FLAT_FRACTION * warm)


class Sampler:
    """RSS of every process under the web server and the worker, every few seconds."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.series: dict[int, Series] = {}
        self.started = time.monotonic()

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for name, root in self.roots.items():
            for number, pid in enumerate(process_tree(root)):
                rss = rss_of(pid)
                if rss is None:
                    continue
                label = name if number == 0 else f"{name} child {pid}"
                self.series.setdefault(pid, Series(label)).samples.append((now, rss))


class Load:
    """Client loops that repeat their call until the deadline; the first failure is kept."""

    def __init__(self, stop_at: float) -> None:
        self.stop_at = stop_at
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, body: Callable[[], object]) -> None:
        def run() -> None:
            try:
                while time.monotonic() < self.stop_at:
                    body()
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)
        if self.errors:
            raise RuntimeError(f"the soak load failed: {self.errors[0]!r}") from self.errors[0]


def soak(
    *,
    minutes: float,
    roots: dict[str, int],
    wrk_read: Callable[[int], object],
    exec_once: Callable[[], object],
    files_once: Callable[[], object],
) -> tuple[float, list[Series]]:
    """Run the mixed load for ``minutes`` and return (duration, each process's RSS series)."""
    duration_s = minutes * 60
    stop_at = time.monotonic() + duration_s

    def reads() -> None:
        left = stop_at - time.monotonic()
        if left >= 2:
            wrk_read(int(min(WRK_CHUNK_S, left)))
        else:
            time.sleep(max(left, 0))

    sampler = Sampler(roots)
    sampler.sample()
    load = Load(stop_at)
    for body in [reads, files_once] + [exec_once] * EXEC_CLIENTS:
        load.start(body)
    while time.monotonic() < stop_at:
        time.sleep(min(SAMPLE_EVERY_S, max(stop_at - time.monotonic(), 0)))
        sampler.sample()
    load.finish()
    return duration_s, [s for s in sampler.series.values() if len(s.samples) >= 3]


def describe(duration_s: float, series: list[Series]) -> tuple[str, bool, dict[str, Any]]:
    """One line for the table, whether every process stayed flat, and the samples."""
    parts, flat, data = [], True, {}
    for s in series:
        warm, late, ok = s.verdict(duration_s)
        flat = flat and ok
        parts.append(f"{s.label} {warm:.0f} → {late:.0f} MiB")
        data[s.label] = {"warm_mib": warm, "late_max_mib": late, "flat": ok, "samples": s.samples}
    return "; ".join(parts), flat, data
