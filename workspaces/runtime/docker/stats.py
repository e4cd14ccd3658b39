"""Resource readings of a running container (``docker stats``, computed the same way)."""

from __future__ import annotations

from typing import Any

from workspaces.runtime.base import ContainerStats, RuntimeStats
from workspaces.runtime.docker.client import api_client
from workspaces.runtime.docker.errors import translated


def _cpu_percent(raw: dict[str, Any]) -> float:
    """CPU use between the engine's two samples, 100.0 per fully used CPU."""
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ())
    if cpu_delta <= 0 or system_delta <= 0 or not online:
        return 0.0
    return cpu_delta / system_delta * online * 100.0


def _memory_used(memory: dict[str, Any]) -> int:
    """Usage minus reclaimable page cache (v1 ``total_inactive_file``, v2 ``inactive_file``)."""
    usage = int(memory.get("usage") or 0)
    detail = memory.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        inactive = detail.get(key)
        if inactive is not None and inactive < usage:
            return usage - int(inactive)
    return usage


def _block_io(raw: dict[str, Any]) -> tuple[int, int]:
    entries = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = write = 0
    for entry in entries:
        # cgroup v1 says "Read"/"Write", v2 "read"/"write".
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value") or 0)
        elif op == "write":
            write += int(entry.get("value") or 0)
    return read, write


def stats_from_engine(raw: dict[str, Any]) -> ContainerStats:
    """Turn one engine stats document (with its ``precpu_stats``) into a reading."""
    memory = raw.get("memory_stats") or {}
    networks = (raw.get("networks") or {}).values()
    block_read, block_write = _block_io(raw)
    return ContainerStats(
        cpu_percent=round(_cpu_percent(raw), 2),
        memory_used_bytes=_memory_used(memory),
        memory_limit_bytes=int(memory.get("limit") or 0),
        pids=int((raw.get("pids_stats") or {}).get("current") or 0),
        network_rx_bytes=sum(int(n.get("rx_bytes") or 0) for n in networks),
        network_tx_bytes=sum(int(n.get("tx_bytes") or 0) for n in networks),
        block_read_bytes=block_read,
        block_write_bytes=block_write,
        read_at=str(raw.get("read") or ""),
        cpu_total_ns=int(
            ((raw.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
        ),
    )


class DockerStats(RuntimeStats):
    base_url: str
    timeout_s: int

    def stats(self, container_id: str) -> ContainerStats:
        # stream=False without one-shot: the engine takes two samples about a second
        # apart and fills ``precpu_stats``, so the CPU figure is a real rate.
        with translated(engine_url=self.base_url, container_id=container_id):
            raw = api_client(self.base_url, self.timeout_s).stats(container_id, stream=False)
        return stats_from_engine(raw)
