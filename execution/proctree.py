"""Killing the whole process tree of an exec, from inside its container.

An exec's processes are found three ways, so that neither a cleared
environment nor a new session lets one escape:

- ``DEVBENCH_EXEC_ID=<id>`` in the environment, which descendants inherit
  (``env -i`` drops it);
- the session and process group of a marked process (``setsid`` leaves them);
- descent: every exec runs under its own subreaper (:data:`SUBREAPER`, the
  engine's init, tini, which every workspace container has since it is
  started with ``init``), so a process that leaves its session *and* clears
  its environment is still a descendant of the exec's subreaper, even after
  its own parent exited (an orphan is re-parented to the nearest living
  subreaper, not to PID 1).

A helper exec, run as the same user (with every capability dropped even root
may only signal its own uid), first stops (SIGSTOP) every process found, and
looks again until no new one appears, so nothing can fork past the scan; then
it SIGKILLs them all, and repeats until a scan finds none. It needs
``/bin/sh``, ``grep`` and ``/proc`` in the image.

What survives: only a process the exec made a child of some other process
tree, which it cannot do (no capabilities, no engine socket, no ptrace of
others), or one started after the exec ended normally and its subreaper
exited (then it belongs to no exec: a background daemon left on purpose).
Under gVisor, which has no subreapers, also a process that cleared its
environment, left its session *and* lost its parent (a double fork) before
the kill.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from core.errors import EngineError
from execution.validation import MARKER_ENV
from workspaces.runtime.base import ExecSpec, RuntimeDriver

logger = logging.getLogger(__name__)

# The engine's init (tini), mounted at this path into every container started with
# init; "-s" registers it as a child subreaper of the exec's tree. It exits with
# the command's exit status (128 + n after signal n).
SUBREAPER = ["/sbin/docker-init", "-s", "--"]
# gVisor as packaged in Debian 12 does not implement PR_SET_CHILD_SUBREAPER (the
# subreaper would refuse to start): there execs run without one, and the kill finds
# their processes by marker, session and descent from living ones only.
RUNTIMES_WITHOUT_SUBREAPER = frozenset({"runsc"})


def exec_command(cmd: list[str], *, runtime: str) -> list[str]:
    """``cmd`` as the engine should run it: under the exec's own subreaper where possible."""
    return list(cmd) if runtime in RUNTIMES_WITHOUT_SUBREAPER else [*SUBREAPER, *cmd]


# What it prints (exit 127/126) when the command itself cannot be started.
_SUBREAPER_EXEC_FAILED = re.compile(r"^\[FATAL tini \(\d+\)\] (exec .* failed: .*)$")


def subreaper_start_failure(first_line: str) -> str | None:
    """The reason the command could not be started, if ``first_line`` is the subreaper's."""
    found = _SUBREAPER_EXEC_FAILED.match(first_line)
    return found.group(1) if found else None


# $1 is the marker "NAME=value". Fields after "comm)" in /proc/<pid>/stat:
# state ppid pgrp session. Zombies are skipped: they are dead, only unreaped.
KILL_SCRIPT = r"""
m="$1"; me=$$
scan() {  # prints the exec's living processes: marked, their sessions/groups, descendants
  marked=" "; all=""
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$me" ] && continue
    read -r st < "$d/stat" 2>/dev/null || continue
    set -- ${st##*) }
    case "$1" in Z|X) continue;; esac
    all="$all $p:$2:$3:$4"
    if grep -qa "$m" "$d/environ" 2>/dev/null; then marked="$marked$p "; fi
  done
  found="$marked"; grew=1
  while [ -n "$grew" ]; do
    grew=""
    for e in $all; do
      p=${e%%:*}; r=${e#*:}; pp=${r%%:*}; r=${r#*:}; g=${r%%:*}; s=${r#*:}
      case "$found" in *" $p "*) continue;; esac
      case "$found" in *" $pp "*|*" $s "*|*" $g "*) found="$found$p "; grew=1;; esac
    done
  done
  echo $found
}
round=0
while [ "$round" -lt 50 ]; do
  round=$((round + 1))
  victims=$(scan)
  if [ -z "$victims" ]; then echo "$round"; exit 0; fi
  stopped=""; looks=0
  while [ "$victims" != "$stopped" ] && [ "$looks" -lt 50 ]; do  # freeze until none is new
    kill -STOP $victims 2>/dev/null
    stopped=$victims; looks=$((looks + 1))
    victims=$(scan)
  done
  kill -KILL $victims 2>/dev/null
  sleep 0.02 2>/dev/null || sleep 1
done
echo "$round"; exit 1
"""


@dataclass(frozen=True)
class KillResult:
    cleared: bool  # a final scan found no process of the exec
    rounds: int
    detail: str = ""


def kill_process_tree(
    *, driver: RuntimeDriver, container_id: str, exec_public_id: str, user: str
) -> KillResult:
    marker = f"{MARKER_ENV}={exec_public_id}"
    spec = ExecSpec(
        cmd=["/bin/sh", "-c", KILL_SCRIPT, "devbench-kill", marker], user=user, workdir="/"
    )
    try:
        exit_code, out, err = driver.exec_collect(container_id, spec, timeout_s=30)
    except EngineError as exc:
        logger.warning("killing the processes of %s failed: %s", exec_public_id, exc)
        return KillResult(cleared=False, rounds=0, detail=f"{exc.code}: {exc.message}")
    text = out.decode(errors="replace").strip()
    rounds = int(text) if text.isdigit() else 0
    if exit_code != 0:
        detail = (err or out).decode(errors="replace").strip()[:500]
        logger.warning("processes of %s may be left: exit %s %s", exec_public_id, exit_code, detail)
        return KillResult(cleared=False, rounds=rounds, detail=detail)
    return KillResult(cleared=True, rounds=rounds)
