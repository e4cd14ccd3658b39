"""Where a node process runs ``runc exec``: on a few threads of its own, at a low CPU weight.

Starting an exec with runc costs ~30 ms of CPU: about half in runc itself, the rest in
runc's init inside the container (counted to the container's cgroup). Twenty clients
running execs back to back had twenty runcs starting at once, each as heavy as a web
process to the scheduler, and the web tier's reads waited behind them (GET workspace at
50 clients: p99 46 ms alone, 256 to 318 ms beside 20 exec writers; bench/README.md). So:

- starts run on a fixed number of threads (``DEVBENCH_RUNC_STARTS``: half the usable
  cores, at least one); more starts wait their turn. More at once would not start more
  per second on a busy machine, only take more of it from everything else;
- on cgroup v1 those threads, and so each runc they start, sit in a child of this
  process's cpu cgroup with a low weight (``cpu.shares`` 64: a sixteenth of a process at
  the default weight): idle CPU is theirs, and when the machine is busy the requests
  come first. The exec's own process does not stay there: runc moves it into the
  container's cgroup, where it runs at the container's weight, as the engine's exec does.

On cgroup v2 one thread cannot sit in another cgroup than the rest of its process (outside
a threaded subtree this process does not own): starts run at the process's own weight
there, and the way to the same effect is a lower CPU weight for node workers than for
the web tier (systemd's ``CPUWeight=``, compose's ``cpu_shares``; README.md).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

logger = logging.getLogger(__name__)

GROUP_NAME: Final = "devbench-runc-starts"
CPU_SHARES: Final = 64  # the default weight is 1024

T = TypeVar("T")


def _v1_cpu_cgroup(proc_cgroup: str, mountinfo: str) -> str | None:
    """The directory of this process's cgroup in a mounted cgroup v1 cpu hierarchy, from
    the text of ``/proc/self/cgroup`` and ``/proc/self/mountinfo``; None without one."""
    own = None
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            own = path
            break
    if own is None:
        return None
    for line in mountinfo.splitlines():
        fields = line.split()
        tail = fields[fields.index("-") + 1 :]
        if tail[0] != "cgroup" or "cpu" not in tail[2].split(","):
            continue
        root, mount_point = fields[3], fields[4].replace("\\040", " ")
        if root == "/":
            return mount_point.rstrip("/") + own if own != "/" else mount_point
        if own == root or own.startswith(root + "/"):
            return mount_point + own[len(root) :]
    return None


@functools.cache
def low_weight_group() -> str | None:
    """The low-weight cgroup (v1) for runc starts, made once; None where there is none."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as cgroups:
            proc_cgroup = cgroups.read()
        with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            mountinfo = mounts.read()
        own = _v1_cpu_cgroup(proc_cgroup, mountinfo)
        if own is None:
            logger.info("runc starts run at this process's CPU weight (no cgroup v1 cpu)")
            return None
        group = os.path.join(own, GROUP_NAME)
        os.makedirs(group, exist_ok=True)
        with open(os.path.join(group, "cpu.shares"), "w", encoding="ascii") as shares:
            shares.write(str(CPU_SHARES))
    except OSError as exc:
        logger.warning("runc starts run at this process's CPU weight: %s", exc)
        return None
    return group


def _join_low_weight_group() -> None:
    """Move the calling thread (only) into the low-weight group."""
    group = low_weight_group()
    if group is None:
        return
    try:
        with open(os.path.join(group, "tasks"), "w", encoding="ascii") as tasks:
            tasks.write(str(threading.get_native_id()))
    except OSError as exc:
        logger.warning("a runc start thread stays at this process's CPU weight: %s", exc)


class RuncStarts:
    """Runs starts on ``threads`` threads of the low-weight group, at most that many at once."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"runc starts need at least one thread, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="runc-start", initializer=_join_low_weight_group
        )

    def run(self, start: Callable[[], T]) -> T:
        """``start()`` on one of the threads, once one is free; its result or exception."""
        return self._pool.submit(start).result()


_default_lock = threading.Lock()
_default: RuncStarts | None = None


def default_starts() -> RuncStarts:
    """This process's starts, sized by ``DEVBENCH_RUNC_STARTS``."""
    global _default
    with _default_lock:
        if _default is None:
            from django.conf import settings

            _default = RuncStarts(int(getattr(settings, "DEVBENCH_RUNC_STARTS", 1)))
        return _default
