"""Resource readings: the arithmetic on engine samples, and a real busy workspace."""

import time

import docker
import pytest

from workspaces.runtime import get_driver
from workspaces.runtime.docker.stats import stats_from_engine
from workspaces.services import workspace_stats

MIB = 1024 * 1024

CGROUP_V1 = {
    "read": "2026-11-24T13:02:42.700714987Z",
    "pids_stats": {"current": 7},
    "cpu_stats": {
        "cpu_usage": {"total_usage": 2_000_000_000, "percpu_usage": [1, 2]},
        "system_cpu_usage": 1_894_000_000_000,
        "online_cpus": 2,
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 1_500_000_000},
        "system_cpu_usage": 1_892_000_000_000,
    },
    "memory_stats": {
        "usage": 100 * MIB,
        "limit": 512 * MIB,
        "stats": {"total_inactive_file": 20 * MIB, "inactive_file": 1 * MIB},
    },
    "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 4096},
            {"major": 8, "minor": 0, "op": "Write", "value": 8192},
            {"major": 8, "minor": 0, "op": "Sync", "value": 99},
            {"major": 8, "minor": 16, "op": "Read", "value": 1},
        ]
    },
}

CGROUP_V2 = {
    "read": "2026-11-24T13:02:43Z",
    "pids_stats": {"current": 3, "limit": 256},
    "cpu_stats": {
        "cpu_usage": {"total_usage": 300_000_000},
        "system_cpu_usage": 10_000_000_000,
        "online_cpus": 4,
    },
    "precpu_stats": {"cpu_usage": {"total_usage": 100_000_000}, "system_cpu_usage": 6_000_000_000},
    "memory_stats": {"usage": 50 * MIB, "limit": 64 * MIB, "stats": {"inactive_file": 10 * MIB}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 254, "minor": 0, "op": "read", "value": 100},
            {"major": 254, "minor": 0, "op": "write", "value": 200},
        ]
    },
}


def test_cgroup_v1_sample():
    stats = stats_from_engine(CGROUP_V1)
    # 0.5 s of CPU over 2 s of system time on 2 CPUs: half of one CPU.
    assert stats.cpu_percent == 50.0
    assert stats.memory_used_bytes == 80 * MIB  # usage minus total_inactive_file
    assert stats.memory_limit_bytes == 512 * MIB
    assert stats.memory_percent == pytest.approx(15.625)
    assert stats.pids == 7
    assert (stats.network_rx_bytes, stats.network_tx_bytes) == (11, 22)
    assert (stats.block_read_bytes, stats.block_write_bytes) == (4097, 8192)
    assert stats.read_at == CGROUP_V1["read"]


def test_cgroup_v2_sample():
    stats = stats_from_engine(CGROUP_V2)
    assert stats.cpu_percent == 20.0  # 0.2 s / 4 s * 4 CPUs
    assert stats.memory_used_bytes == 40 * MIB
    assert (stats.network_rx_bytes, stats.network_tx_bytes) == (0, 0)  # network none
    assert (stats.block_read_bytes, stats.block_write_bytes) == (100, 200)


def test_first_sample_without_a_previous_one_reads_zero_cpu():
    raw = dict(CGROUP_V2, precpu_stats={})
    raw["cpu_stats"] = {"cpu_usage": {"total_usage": 5}, "online_cpus": 1}
    assert stats_from_engine(raw).cpu_percent == 0.0
    assert stats_from_engine({}).memory_limit_bytes == 0
    assert stats_from_engine({}).memory_percent == 0.0


@pytest.mark.docker
@pytest.mark.integration
def test_stats_of_a_busy_workspace(running_workspace, actor):
    client = docker.from_env()
    container = client.containers.get(running_workspace.container_id)
    container.exec_run(["/bin/sh", "-c", "while :; do :; done"], detach=True)
    deadline = time.monotonic() + 30
    stats = workspace_stats(actor=actor, workspace=running_workspace)
    while stats.cpu_percent < 20 and time.monotonic() < deadline:
        stats = workspace_stats(actor=actor, workspace=running_workspace)
    assert stats.cpu_percent >= 20  # a busy loop, capped at 100 by the 1-CPU limit
    assert stats.cpu_percent <= 100 * 1.1
    assert stats.memory_limit_bytes == 512 * MIB  # the policy's default limit
    assert 0 < stats.memory_used_bytes < stats.memory_limit_bytes
    assert stats.pids >= 3  # keeper shell, its sleep, the busy loop (+ docker-init)
    assert (stats.network_rx_bytes, stats.network_tx_bytes) == (0, 0)  # network none
    raw = get_driver().stats(running_workspace.container_id)
    assert raw.memory_limit_bytes == stats.memory_limit_bytes
