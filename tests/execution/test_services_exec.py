"""Exec services end to end: real worker, Redis, PostgreSQL and engine."""

import base64
import itertools
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import Conflict, ValidationFailed
from execution import services
from execution.coalesce import MAX_CHUNK_BYTES
from execution.models import Exec, ExecChunk, ExecStatus
from execution.selectors import exec_output
from execution.services import (
    exec_cancel,
    exec_poll,
    exec_run,
    exec_start,
    exec_wait,
)
from execution.tasks import SENDERS
from execution.worker import exec_execute
from tenants.models import AuditEvent, TenantPolicy
from tenants.redaction import REDACTED
from tests.execution.helpers import container_run, leftovers, run_in_thread
from tests.factories import ExecFactory, WorkspaceFactory
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def _all_output(actor, exec_id):
    """Page through exec_poll like a client: per-stream bytes and the seqs seen."""
    out, err, seqs, after = bytearray(), bytearray(), [], 0
    while True:
        result = exec_poll(actor=actor, exec_id=exec_id, after_seq=after, wait_s=5)
        for m in result.messages:
            data = base64.b64decode(m.data) if m.encoding == "base64" else m.data.encode()
            (out if m.stream == "stdout" else err).extend(data)
            seqs.append(m.seq)
        after = result.next_seq
        if result.complete:
            return bytes(out), bytes(err), seqs, result


def test_exit_codes_and_streams(running_workspace, actor):
    r = exec_run(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "echo out; echo err >&2; exit 7"],
    )
    assert (r.status, r.exit_code, r.stdout, r.stderr) == ("completed", 7, "out\n", "err\n")
    assert r.usage.stdout_bytes == 4 and r.usage.stderr_bytes == 4
    assert exec_run(actor=actor, workspace=running_workspace, cmd=["true"]).exit_code == 0
    assert exec_run(actor=actor, workspace=running_workspace, cmd=["false"]).exit_code == 1


def test_env_cwd_and_user(running_workspace, actor):
    script = 'echo "$FOO|$(pwd)|$(id -u)"'
    r = exec_run(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", script],
        env={"FOO": "bar baz"},
        cwd="/tmp",
    )
    assert r.stdout == "bar baz|/tmp|1000\n"
    r = exec_run(actor=actor, workspace=running_workspace, cmd=["sh", "-c", script], as_root=True)
    assert r.stdout == "|/workspace|0\n"


def test_ten_megabytes_interleaved_arrive_byte_exact_in_order(running_workspace, actor):
    n = 800_000  # `seq 1 n` is ~5.5 MB; one copy per stream, written concurrently
    exec_ = exec_start(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", f"seq 1 {n} >&2 & seq 1 {n}; wait"],
    )
    out, err, seqs, result = _all_output(actor, exec_.public_id)
    expected = "".join(f"{i}\n" for i in range(1, n + 1)).encode()
    assert result.status == "completed" and result.exit_code == 0
    assert out == expected
    assert err == expected
    assert seqs == list(range(1, len(seqs) + 1))  # from 1, strictly increasing, no gaps
    chunks = ExecChunk.objects.filter(exec__public_id=exec_.public_id).order_by("seq")
    streams = [c.stream for c in chunks.only("stream")]
    switches = sum(1 for a, b in itertools.pairwise(streams) if a != b)
    assert switches > 1  # really interleaved, not one stream after the other
    assert all(len(c.data) <= MAX_CHUNK_BYTES for c in chunks)
    assert not result.truncated


def test_stdout_and_stderr_keep_their_relative_order(running_workspace, actor):
    r = exec_start(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "for i in 1 2 3; do echo o$i; sleep 0.1; echo e$i >&2; sleep 0.1; done"],
    )
    _, _, _, _ = _all_output(actor, r.public_id)
    rows = ExecChunk.objects.filter(exec__public_id=r.public_id).order_by("seq")
    assert [(c.stream, bytes(c.data)) for c in rows] == [
        (1, b"o1\n"),
        (2, b"e1\n"),
        (1, b"o2\n"),
        (2, b"e2\n"),
        (1, b"o3\n"),
        (2, b"e3\n"),
    ]


def test_binary_output_is_base64_and_text_stays_text(running_workspace, actor):
    exec_ = exec_start(
        actor=actor, workspace=running_workspace, cmd=["printf", "\\377\\376h\\303\\251"]
    )
    out, _, _, result = _all_output(actor, exec_.public_id)
    assert out == b"\xff\xfeh\xc3\xa9"
    result = exec_poll(actor=actor, exec_id=exec_.public_id)
    assert [m.encoding for m in result.messages] == ["base64"]
    r = exec_run(actor=actor, workspace=running_workspace, cmd=["printf", "h\\303\\251"])
    assert r.stdout == "hé"


@pytest.mark.parametrize(
    ("script", "cap", "from_the_message"),
    [
        # Small output: the runner's end message carries it, and the row's state.
        ("printf 'out\\303\\251'; echo err >&2; exit 3", None, True),
        ("exit 0", None, True),
        # More than the runner keeps: read from the stored chunks.
        ("head -c 70000 /dev/zero | tr '\\0' a; echo tail >&2", None, False),
        # Capped (the oldest dropped): what is stored, read from the chunks.
        ("for i in 1 2 3 4 5 6 7 8; do printf %0300d $i; sleep 0.05; done", 1000, False),
    ],
)
def test_exec_run_answers_exactly_what_is_stored(
    running_workspace, actor, tenant, monkeypatch, script, cap, from_the_message
):
    """exec_run's answer is the stored exec and its stored output, whether it came with
    the runner's end message (no read of the row or the chunks) or was read."""
    if cap is not None:
        TenantPolicy.objects.filter(tenant=tenant).update(exec_output_cap_bytes=cap)
    reads: list[str] = []
    read_output, refresh = exec_output, Exec.refresh_from_db

    def counted_output(**kwargs: Any) -> tuple[bytes, bytes]:
        reads.append("output")
        return read_output(**kwargs)

    def counted_refresh(self: Exec, *args: Any, **kwargs: Any) -> None:
        reads.append("row")
        refresh(self, *args, **kwargs)

    monkeypatch.setattr(services, "exec_output", counted_output)
    monkeypatch.setattr(Exec, "refresh_from_db", counted_refresh)
    # The short sleep: the end comes as a message, not from the waiter's first look.
    r = exec_run(actor=actor, workspace=running_workspace, cmd=["sh", "-c", f"sleep 0.3; {script}"])
    monkeypatch.undo()
    assert reads == ([] if from_the_message else ["output"])
    stored = Exec.objects.get(public_id=r.exec_id)
    stdout, stderr = exec_output(exec_pk=stored.pk)
    assert (r.status, r.exit_code, r.error_code, r.error, r.truncated) == (
        stored.status,
        stored.exit_code,
        stored.error_code,
        stored.error,
        stored.truncated,
    )
    assert r.usage == stored.usage
    assert (r.stdout, r.stderr) == (stdout.decode(), stderr.decode())
    assert stored.is_terminal and r.truncated == (cap is not None)


def test_long_poll_returns_as_soon_as_output_arrives(running_workspace, actor):
    exec_ = exec_start(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo woke; sleep 600"],
    )
    idle = exec_poll(actor=actor, exec_id=exec_.public_id, wait_s=0.5)
    assert idle.messages == [] and not idle.complete
    box: dict[str, Any] = {}

    def poll():
        started = time.monotonic()
        try:
            box["result"] = exec_poll(actor=actor, exec_id=exec_.public_id, wait_s=25)
        finally:
            connection.close()
        box["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)  # let the poll start waiting
    container_run(running_workspace, "touch", "/tmp/go")
    thread.join(timeout=30)
    assert [m.data for m in box["result"].messages] == ["woke\n"]
    assert box["elapsed"] < 25  # it did not sit out its wait
    exec_cancel(actor=actor, exec_id=exec_.public_id)


def test_cancel_kills_the_whole_process_tree(running_workspace, actor):
    cmd = "sleep 1001 & (setsid sleep 1002 &); env -i sleep 1003 & sleep 1004"
    exec_ = exec_start(actor=actor, workspace=running_workspace, cmd=["sh", "-c", cmd])
    wait_for(lambda: len(leftovers(running_workspace, "sleep 100")) >= 4, what="processes")
    cancelled = exec_cancel(actor=actor, exec_id=exec_.public_id)
    assert cancelled.status == ExecStatus.CANCELLED
    assert leftovers(running_workspace, "sleep 100") == []
    assert AuditEvent.objects.filter(
        action="exec.cancel", target_id=exec_.public_id, outcome="success"
    ).exists()
    # cancelling again changes nothing
    assert exec_cancel(actor=actor, exec_id=exec_.public_id).status == ExecStatus.CANCELLED


def test_timeout_kills_the_whole_process_tree(running_workspace, actor):
    r = exec_run(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "echo started; sleep 2001 & (setsid sleep 2002 &); sleep 2003"],
        timeout_s=1,
    )
    assert r.status == "timed_out"
    assert r.stdout == "started\n"  # output before the kill is kept
    assert leftovers(running_workspace, "sleep 200") == []


def test_timeout_kills_processes_that_left_the_session_and_cleared_the_environment(
    running_workspace, actor
):
    r = exec_run(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "env -i setsid sleep 4242 & sleep 4243"],
        timeout_s=3,
    )
    assert r.status == "timed_out"
    assert leftovers(running_workspace, "sleep 424") == []


def test_cancel_kills_orphans_that_escaped_session_environment_and_parent(running_workspace, actor):
    # The intermediate shells exit at once: the sleeps' parents are gone, they run in
    # sessions of their own without the exec's environment, and keep forking.
    escape = "env -i setsid sh -c 'sleep 4301 & while :; do sleep 4302 & sleep 1; done &' &"
    cmd = f"({escape}); (env -i setsid sleep 4303 &); sleep 4304"
    exec_ = exec_start(actor=actor, workspace=running_workspace, cmd=["sh", "-c", cmd])
    wait_for(lambda: len(leftovers(running_workspace, "sleep 430")) >= 4, what="processes")
    assert exec_cancel(actor=actor, exec_id=exec_.public_id).status == ExecStatus.CANCELLED
    assert leftovers(running_workspace, "sleep 430") == []
    time.sleep(1.5)  # nothing was left to fork again
    assert leftovers(running_workspace, "sleep 430") == []


def test_root_exec_is_killed_too(running_workspace, actor):
    r = exec_run(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", "sleep 3001 & sleep 3002"],
        as_root=True,
        timeout_s=1,
    )
    assert r.status == "timed_out"
    assert leftovers(running_workspace, "sleep 300") == []


def test_output_cap_keeps_the_tail(running_workspace, actor, tenant):
    TenantPolicy.objects.filter(tenant=tenant).update(exec_output_cap_bytes=200_000)
    n = 100_000
    r = exec_run(actor=actor, workspace=running_workspace, cmd=["seq", "1", str(n)])
    expected = "".join(f"{i}\n" for i in range(1, n + 1))
    assert r.status == "completed" and r.truncated
    assert expected.endswith(r.stdout)
    assert 200_000 * 3 // 4 < len(r.stdout) <= 200_000  # chunks of at most a quarter of it
    assert r.usage.stdout_bytes == len(expected)
    result = exec_poll(actor=actor, exec_id=r.exec_id)
    assert result.truncated and result.messages[0].seq == result.first_seq > 1


def test_commands_that_cannot_start_fail(running_workspace, actor):
    r = exec_run(actor=actor, workspace=running_workspace, cmd=["no-such-program"])
    assert (r.status, r.error_code) == ("failed", "exec_start_failed")
    assert "no-such-program" in r.error
    r = exec_run(actor=actor, workspace=running_workspace, cmd=["pwd"], cwd="/no/such/dir")
    assert (r.status, r.error_code) == ("failed", "exec_start_failed")


def test_queued_exec_cancelled_before_it_runs(running_workspace, actor, tenant):
    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=1)
    blocker = exec_start(actor=actor, workspace=running_workspace, cmd=["sleep", "600"])
    waiting = exec_start(
        actor=actor, workspace=running_workspace, cmd=["sh", "-c", "echo ran"], queue=True
    )
    assert waiting.status == ExecStatus.QUEUED
    assert exec_cancel(actor=actor, exec_id=waiting.public_id).status == ExecStatus.CANCELLED
    exec_cancel(actor=actor, exec_id=blocker.public_id)
    waiting.refresh_from_db()
    assert waiting.status == ExecStatus.CANCELLED and waiting.started_at is None
    assert not ExecChunk.objects.filter(exec=waiting).exists()


def test_a_redelivered_runner_task_does_not_run_the_exec_again(running_workspace, actor):
    exec_ = exec_start(
        actor=actor, workspace=running_workspace, cmd=["sh", "-c", "echo once; sleep 4001"]
    )
    wait_for(lambda: leftovers(running_workspace, "sleep 4001"), what="the exec to run")
    exec_execute(exec_pk=exec_.pk, senders=SENDERS)  # as if Celery delivered the task again
    running = [p for p in leftovers(running_workspace, "sleep 4001") if p.startswith("sleep")]
    assert len(running) == 1  # (its subreaper's command line names it too)
    exec_cancel(actor=actor, exec_id=exec_.public_id)
    done = Exec.objects.get(pk=exec_.pk)
    exec_execute(exec_pk=exec_.pk, senders=SENDERS)
    assert Exec.objects.get(pk=exec_.pk).status == done.status == ExecStatus.CANCELLED
    assert ExecChunk.objects.filter(exec=exec_).count() == 1


def test_idempotency_key_returns_the_same_exec(running_workspace, actor):
    first = exec_start(actor=actor, workspace=running_workspace, cmd=["true"], idempotency_key="k1")
    again = exec_start(actor=actor, workspace=running_workspace, cmd=["true"], idempotency_key="k1")
    assert again.pk == first.pk
    with pytest.raises(Conflict) as err:
        exec_start(actor=actor, workspace=running_workspace, cmd=["false"], idempotency_key="k1")
    assert err.value.code == "idempotency_key_reused"
    exec_wait(exec_=first, timeout_s=30)


def test_an_exec_idempotency_key_expires_like_a_spawn_key(running_workspace, actor, settings):
    first = exec_start(actor=actor, workspace=running_workspace, cmd=["true"], idempotency_key="k2")
    exec_wait(exec_=first, timeout_s=30)
    window = timedelta(seconds=settings.DEVBENCH_IDEMPOTENCY_TTL_S)
    Exec.objects.filter(pk=first.pk).update(created_at=timezone.now() - window)
    # Past its window the key starts a new exec, even for another command.
    fresh = exec_start(
        actor=actor, workspace=running_workspace, cmd=["false"], idempotency_key="k2"
    )
    assert fresh.pk != first.pk
    assert Exec.objects.get(pk=first.pk).idempotency_key is None
    exec_wait(exec_=fresh, timeout_s=30)


def test_secrets_in_env_never_reach_the_audit_log(running_workspace, actor):
    r = exec_run(
        actor=actor,
        workspace=running_workspace,
        cmd=["sh", "-c", 'echo "$API_TOKEN"'],
        env={"API_TOKEN": "s3cr3t-value", "COLOR": "blue"},
    )
    assert r.stdout == "s3cr3t-value\n"  # the process got it
    event = AuditEvent.objects.get(action="exec.start", target_id=r.exec_id)
    assert event.details["env"] == {"API_TOKEN": REDACTED, "COLOR": "blue"}
    assert "s3cr3t" not in str(AuditEvent.objects.values_list("details", flat=True))
    assert Exec.objects.get(public_id=r.exec_id).env == {"API_TOKEN": REDACTED, "COLOR": "blue"}


@pytest.mark.django_db
def test_a_workspace_that_is_not_running_refuses_execs(tenant, actor):
    workspace = WorkspaceFactory(tenant=tenant, status="stopped", container_id="abc")
    with pytest.raises(Conflict) as err:
        exec_start(actor=actor, workspace=workspace, cmd=["true"])
    assert err.value.code == "workspace_not_running"
    assert not Exec.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"cmd": []}, "invalid_cmd"),
        ({"cmd": ["a\x00b"]}, "invalid_cmd"),
        ({"cmd": ["true"], "cwd": "relative"}, "invalid_cwd"),
        ({"cmd": ["true"], "env": {"1BAD": "x"}}, "invalid_env"),
        ({"cmd": ["true"], "env": {"DEVBENCH_EXEC_ID": "x"}}, "invalid_env"),
        ({"cmd": ["true"], "timeout_s": 0}, "invalid_timeout"),
    ],
)
def test_bad_input_is_refused_with_a_code(tenant, actor, kwargs, code):
    workspace = WorkspaceFactory(tenant=tenant, container_id="abc")
    with pytest.raises(ValidationFailed) as err:
        exec_start(actor=actor, workspace=workspace, **kwargs)
    assert err.value.code == code


@pytest.mark.django_db
def test_poll_refuses_a_wait_over_30_seconds(tenant, actor):
    with pytest.raises(ValidationFailed) as err:
        exec_poll(actor=actor, exec_id="ex_x", wait_s=31)
    assert err.value.code == "invalid_wait"


def test_a_runner_that_breaks_stops_its_processes_and_fails_the_exec(
    running_workspace, actor, monkeypatch
):
    from execution import persist, runner

    # A row only (no task sent): this test runs the runner itself.
    exec_ = ExecFactory(
        workspace=running_workspace,
        cmd=["sh", "-c", "echo x; sleep 9001"],
        status=ExecStatus.STARTING,
    )

    def broken_insert(rows):
        raise RuntimeError("database went away")

    monkeypatch.setattr(persist, "insert_chunks", broken_insert)
    with pytest.raises(RuntimeError):
        runner.run_exec(
            Exec.objects.select_related("workspace", "tenant").get(pk=exec_.pk), senders=SENDERS
        )
    exec_.refresh_from_db()
    assert (exec_.status, exec_.error_code) == (ExecStatus.FAILED, "internal_error")
    assert leftovers(running_workspace, "sleep 9001") == []


def test_a_cancel_the_runner_did_not_notice_still_ends_the_exec_cancelled(
    running_workspace, actor, settings, monkeypatch
):
    """The kill task stops the processes before the runner's first heartbeat reads the
    request: the output just ends, and the runner's end must say cancelled, not
    completed with the kill's exit code."""
    from execution import runner, state
    from execution.worker import exec_kill_processes

    # No heartbeat during the test: only the runner's end can see the request.
    monkeypatch.setattr(runner, "FIRST_BEAT_S", 600.0)
    settings.DEVBENCH_EXEC_HEARTBEAT_S = 600
    exec_ = ExecFactory(
        workspace=running_workspace, cmd=["sleep", "9002"], status=ExecStatus.STARTING
    )
    run = run_in_thread(exec_)
    try:
        wait_for(lambda: leftovers(running_workspace, "sleep 9002"), timeout_s=30)
        assert state.request_cancel(exec_)
        exec_kill_processes(exec_pk=exec_.pk)  # what the kill task does
    finally:
        run.join(timeout=60)
    exec_.refresh_from_db()
    assert exec_.status == ExecStatus.CANCELLED
    assert exec_.exit_code is not None and exec_.exit_code != 0  # the engine's, kept
    assert exec_.finished_at is not None
    assert leftovers(running_workspace, "sleep 9002") == []


def test_a_runner_that_loses_the_claim_never_starts_the_command(running_workspace, actor):
    """The engine creates the exec while the runner claims it: a runner whose claim fails
    (the exec was cancelled, or another runner took it) leaves the command unstarted."""
    from execution import runner

    exec_ = ExecFactory(
        workspace=running_workspace,
        cmd=["sh", "-c", "touch /tmp/claim-lost; sleep 9003"],
        status=ExecStatus.STARTING,
    )
    loaded = Exec.objects.select_related("workspace", "tenant").get(pk=exec_.pk)
    Exec.objects.filter(pk=exec_.pk).update(status=ExecStatus.CANCELLED)  # after the load
    runner.run_exec(loaded, senders=SENDERS)
    time.sleep(0.5)  # a command started anyway would have made its file by now
    assert leftovers(running_workspace, "sleep 9003") == []
    assert "claim-lost" not in container_run(running_workspace, "ls", "-a", "/tmp")
    exec_.refresh_from_db()
    assert exec_.status == ExecStatus.CANCELLED and exec_.started_at is None
