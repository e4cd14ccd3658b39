"""Tiny timing helpers shared by the benchmarks: samples, p50/p95, ratio lines.

Each benchmark times our operation and raw docker-py doing the same work in
the same run, then prints one line per operation:

    spawn   ours p50 212.4 ms  p95 260.1 ms | docker p50 180.2 ms  p95 220.9 ms | x1.18 / x1.18
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    p50_ms: float
    p95_ms: float


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: honest for small samples)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples_s: list[float]) -> Summary:
    return Summary(
        n=len(samples_s),
        p50_ms=statistics.median(samples_s) * 1000,
        p95_ms=percentile(samples_s, 95) * 1000,
    )


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Timer:
    """Collects samples per name: ``with timer("spawn"): ...``."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def __call__(self, name: str) -> _Span:
        return _Span(self.samples.setdefault(name, []))


class _Span:
    def __init__(self, bucket: list[float]) -> None:
        self.bucket = bucket

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.bucket.append(time.perf_counter() - self.start)


def ratio_line(name: str, ours: list[float], baseline: list[float], label: str = "docker") -> str:
    a, b = summarize(ours), summarize(baseline)
    return (
        f"{name:<14} ours p50 {a.p50_ms:8.1f} ms  p95 {a.p95_ms:8.1f} ms | "
        f"{label} p50 {b.p50_ms:8.1f} ms  p95 {b.p95_ms:8.1f} ms | "
        f"x{a.p50_ms / b.p50_ms:.2f} / x{a.p95_ms / b.p95_ms:.2f}  (n={a.n})"
    )


def print_ratios(rows: list[tuple[str, list[float], list[float]]], label: str = "docker") -> None:
    print(f"{'operation':<14} {'ours':<34} | {label:<34} | ratio p50 / p95")
    for name, ours, baseline in rows:
        print(ratio_line(name, ours, baseline, label))
