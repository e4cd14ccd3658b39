"""Killing the whole process tree of an exec, from inside its container.

Every exec runs with ``DEVBENCH_EXEC_ID=<id>`` in its environment, which its
descendants inherit, and the engine starts it as a session leader. A helper
exec, run as the same user (in a workspace with every capability dropped,
even root may only signal its own uid), SIGKILLs every process that carries
the marker or belongs to the session or process group of one that does, and
repeats until a scan finds none: processes forked during a round die in the
next. It needs ``/bin/sh``, ``grep`` and ``/proc`` in the image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.errors import EngineError
from execution.validation import MARKER_ENV
from workspaces.runtime.base import ExecSpec, RuntimeDriver

logger = logging.getLogger(__name__)

# $1 is the marker "NAME=value". Fields after "comm)" in /proc/<pid>/stat:
# state ppid pgrp session. Zombies are skipped: they are dead, only unreaped.
KILL_SCRIPT = r"""
m="$1"; me=$$
round=0
while [ "$round" -lt 100 ]; do
  round=$((round + 1))
  marked=" "; all=""
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$me" ] && continue
    read -r st < "$d/stat" 2>/dev/null || continue
    set -- ${st##*) }
    case "$1" in Z|X) continue;; esac
    all="$all $p:$4:$3"
    if grep -qa "$m" "$d/environ" 2>/dev/null; then marked="$marked$p "; fi
  done
  victims=""
  for e in $all; do
    p=${e%%:*}; r=${e#*:}; s=${r%%:*}; g=${r#*:}
    case "$marked" in *" $p "*|*" $s "*|*" $g "*) victims="$victims $p";; esac
  done
  if [ -z "$victims" ]; then echo "$round"; exit 0; fi
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
