"""Long-lived shells that run the file commands the archive API lacks (rename, remove).

Each such command needs a process in the container, and an exec — create, start,
inspect — costs the engine as much as the archive put of a whole 1 MiB file (~75 ms
on a two-core host, nearly all of it runc starting a process in the container:
bench/README.md). So an engine client keeps, per container and user, a shell that
reads commands on its stdin and runs each one in a subshell: a rename then costs a
millisecond or two.

Safety: the script below is fixed. A command's words arrive as data, one per line,
and become ``"$@"``: they never pass through the shell's parser, so a word cannot
become code. A word with a newline in it (which the line protocol would split), or
an image without a usable ``sh``, takes a one-off exec instead, as before.

Lifetime: a helper idle for ``IDLE_S`` is closed (its stdin ends and the shell
exits), as is one whose container stopped (the engine ends its connection). At
most ``MAX_IDLE_PER_CONTAINER`` wait per container and user; concurrent callers
start more, which end once idle. Each exists only while someone on this engine
client uses the workspace's files, and runs as the user the command would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import docker

from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.exec import raw_socket, shutdown_stream

IDLE_S = 30.0
MAX_IDLE_PER_CONTAINER = 2
# Each idle helper holds a connection to the engine (and a file descriptor): past this
# many in one process, the one idle the longest is closed.
MAX_IDLE = 256
# Containers whose image cannot run a helper: remembered so each operation does not try
# again (bounded: the set is emptied when it reaches this size).
_MAX_REMEMBERED = 10_000

# A command is a fresh random tag, the number of words, then the words, each on a line.
# The answer is the output, then a line "<tag> <exit code>": the tag (never seen by the
# workspace before the output is made) ends the output whatever bytes it holds, and
# whatever a shell counts as a character.
SCRIPT = (
    "while IFS= read -r tag && IFS= read -r n; do set --; "
    'while [ "$n" -gt 0 ]; do IFS= read -r w || exit 0; set -- "$@" "$w"; n=$((n - 1)); done; '
    'out=$("$@" 2>&1); rc=$?; '
    'printf \'%s\\n%s %s\\n\' "$out" "$tag" "$rc"; '
    "done"
)
_FRAME = struct.Struct(">BxxxL")  # the engine's stream header: stream type, length
_STDOUT = 1


class HelperBroken(Exception):
    """The helper ended or answered out of protocol: it cannot be used any more."""


class _Helper:
    def __init__(self, api: docker.APIClient, container_id: str, user: str) -> None:
        created = api.exec_create(
            container_id,
            ["sh", "-c", SCRIPT],
            stdin=True,
            user=user,
            workdir="/",
            environment={"LC_ALL": "C"},
        )
        self._handle: Any = api.exec_start(created["Id"], socket=True)
        raw = raw_socket(self._handle)
        if raw is None:
            shutdown_stream(self._handle)
            raise HelperBroken("no socket under the engine's stream")
        raw.settimeout(api.timeout)
        self._sock = raw
        self._pending = bytearray()  # stdout read past the last answer
        self.used_at = time.monotonic()
        self.answered = False  # has it ever answered (so the shell is there)?

    def idle_and_alive(self) -> bool:
        """Between commands nothing may be readable: data or the end both mean it broke."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        tag = secrets.token_hex(16).encode()
        words = [tag, str(len(argv)).encode()]
        words += [a.encode("utf-8", "surrogateescape") for a in argv]
        try:
            self._sock.sendall(b"\n".join(words) + b"\n")
            output, code = self._read_answer(tag)
        except TimeoutError:
            raise  # the engine's timeout, as for any call
        except OSError as exc:
            raise HelperBroken(str(exc)) from exc
        self.answered = True
        self.used_at = time.monotonic()
        return code, output

    def _read_answer(self, tag: bytes) -> tuple[bytes, int]:
        marker = b"\n" + tag + b" "
        at = end = -1
        searched = 0
        while True:
            if at < 0:
                at = self._pending.find(marker, searched)
            if at >= 0:
                end = self._pending.find(b"\n", at + len(marker))
                if end >= 0:
                    break
            else:  # a marker may yet end in what arrives next: its start is not searched
                searched = max(0, len(self._pending) - len(marker) + 1)
            self._fill()
        output = bytes(self._pending[:at])
        code_text = bytes(self._pending[at + len(marker) : end])
        del self._pending[: end + 1]
        try:
            return output, int(code_text)
        except ValueError:
            raise HelperBroken(f"unexpected exit code {code_text[:20]!r}") from None

    def _fill(self) -> None:
        stream, length = _FRAME.unpack(self._recv_exactly(_FRAME.size))
        payload = self._recv_exactly(length)
        if stream == _STDOUT:  # the shell's own complaints (stderr) are not answers
            self._pending += payload

    def _recv_exactly(self, size: int) -> bytes:
        parts, missing = [], size
        while missing:
            part = self._sock.recv(missing)
            if not part:
                raise HelperBroken("the helper's stream ended")
            parts.append(part)
            missing -= len(part)
        return b"".join(parts)

    def close(self) -> None:
        shutdown_stream(self._handle)  # its stdin ends: the shell leaves its loop and exits


@dataclass
class HelperPool:
    """The helpers of one process, keyed by (engine, container, user)."""

    _idle: dict[tuple[str, str, str], list[_Helper]] = field(default_factory=dict)
    _unusable: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reaper: threading.Thread | None = None

    def run(
        self, api: docker.APIClient, engine_url: str, container_id: str, argv: list[str], user: str
    ) -> tuple[int, bytes] | None:
        """Run ``argv`` in a helper: (exit code, output), or None when the caller should
        use a one-off exec (a word with a newline, an image without ``sh``, a helper that
        broke mid-command)."""
        if any("\n" in word for word in argv) or (engine_url, container_id) in self._unusable:
            return None
        key = (engine_url, container_id, user)
        helper = self._take(key)
        if helper is None:
            with translated(engine_url=engine_url, container_id=container_id):
                helper = _Helper(api, container_id, user)
        try:
            with translated(engine_url=engine_url, container_id=container_id):
                result = helper.run(argv)
        except HelperBroken:
            helper.close()
            if not helper.answered:
                self._remember_unusable((engine_url, container_id))
            return None
        except BaseException:
            helper.close()
            raise
        self._give_back(key, helper)
        return result

    def _take(self, key: tuple[str, str, str]) -> _Helper | None:
        with self._lock:
            helpers = self._idle.get(key, [])
            while helpers:
                helper = helpers.pop()
                if helper.idle_and_alive():
                    return helper
                helper.close()
        return None

    def _give_back(self, key: tuple[str, str, str], helper: _Helper) -> None:
        with self._lock:
            helpers = self._idle.setdefault(key, [])
            if len(helpers) >= MAX_IDLE_PER_CONTAINER:
                extra: _Helper | None = helper
            else:
                helpers.append(helper)
                extra = self._oldest_past_the_bound()
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reap, name="file-helper-reaper", daemon=True
                    )
                    self._reaper.start()
        if extra is not None:
            extra.close()

    def _oldest_past_the_bound(self) -> _Helper | None:
        """Under the lock: take out the helper idle the longest once there are too many."""
        if sum(len(hs) for hs in self._idle.values()) <= MAX_IDLE:
            return None
        key, oldest = min(
            ((k, h) for k, hs in self._idle.items() for h in hs), key=lambda kh: kh[1].used_at
        )
        self._idle[key].remove(oldest)
        if not self._idle[key]:
            del self._idle[key]
        return oldest

    def _remember_unusable(self, container: tuple[str, str]) -> None:
        with self._lock:
            if len(self._unusable) >= _MAX_REMEMBERED:
                self._unusable.clear()
            self._unusable.add(container)

    def _reap(self) -> None:
        """Close helpers idle past IDLE_S or already ended; stop once none is left."""
        while True:
            time.sleep(IDLE_S / 3)
            stale: list[_Helper] = []
            with self._lock:
                now = time.monotonic()
                for key, helpers in list(self._idle.items()):
                    keep = [h for h in helpers if now - h.used_at < IDLE_S and h.idle_and_alive()]
                    stale += [h for h in helpers if h not in keep]
                    if keep:
                        self._idle[key] = keep
                    else:
                        del self._idle[key]
                done = not self._idle
                if done:
                    self._reaper = None
            for helper in stale:
                with contextlib.suppress(Exception):
                    helper.close()
            if done:
                return

    def close_all(self) -> None:
        with self._lock:
            helpers = [h for hs in self._idle.values() for h in hs]
            self._idle.clear()
        for helper in helpers:
            helper.close()

    def idle_count(self, container_id: str) -> int:
        with self._lock:
            return sum(len(hs) for (_, cid, _), hs in self._idle.items() if cid == container_id)


pool = HelperPool()


def _after_fork() -> None:
    # The parent's helpers stay the parent's: a child that shut their connections down
    # would end them; it only forgets them (and starts its own reaper when it needs one).
    global pool
    pool = HelperPool()


os.register_at_fork(after_in_child=_after_fork)
