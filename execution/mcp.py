"""MCP tools for commands in workspaces, and the system status: parse, call one service, format.

exec_run (start, wait, return the output: the tool agents use most),
exec_start + exec_poll for long commands, exec_cancel, list_execs. The two
waiting tools send progress notifications while they wait; a client that
cancels the call stops the waiting, not the command.
"""

from __future__ import annotations

from typing import Any

from core.mcp.tools import READ, REPEATABLE_DESTROY, RUN, ToolCall, ToolSet
from core.pagination import Page, page_map
from core.schemas import NoArguments
from execution import selectors, services
from execution.schemas import (
    ExecCancelIn,
    ExecListIn,
    ExecListOut,
    ExecOut,
    ExecPollIn,
    ExecPollOut,
    ExecRunOut,
    ExecStartIn,
    ExecStartOut,
)
from execution.status import system_status_get
from tenants.principal import Principal
from tenants.schemas import SystemStatusOut
from workspaces.selectors import workspace_get

tools = ToolSet()


# list_execs answers at most this many, newest first.
@tools.tool(
    input=NoArguments,
    output=SystemStatusOut,
    title="System status",
    hints=READ,
)
def system_status(call: ToolCall[Principal], args: NoArguments) -> dict[str, Any]:
    """Report whether DevBench can work right now and what the caller may do.

    Use it first in a session, or when other tools fail with engine errors.
    Returns: whether the container engine is reachable (with its version, or
    the error code), DevBench/Python/Django/MCP versions, the caller's tenant
    and scopes ("read" lists and reads; "write" spawns, runs and writes;
    "admin" reconciles and collects garbage), counts of the tenant's
    workspaces and execs by status, and the tenant policy (allowed images,
    default image, memory/CPU/pids limits, network mode, workspace and
    concurrent-exec quotas, TTLs, file size and exec output caps).
    Takes no arguments; needs the "read" scope.
    """
    return system_status_get(actor=call.principal).as_payload()


@tools.tool(
    input=ExecStartIn,
    output=ExecRunOut,
    title="Run a command",
    hints=RUN,
)
async def exec_run(call: ToolCall[Principal], args: ExecStartIn) -> services.ExecRunResult:
    """Run a command in a workspace, wait for it to end, and return its output.

    The tool to use for anything that ends within minutes (builds, tests,
    scripts, ls/cat/grep...). cmd is the program and its arguments, run
    without a shell: use ["sh", "-c", "a && b | c"] for shell syntax. Runs in
    cwd (default /workspace) as uid 1000 (as_root for root), with env added.
    Returns status (completed, failed, timed_out, cancelled, lost), exit_code,
    stdout, stderr (output beyond the tenant's cap keeps only the newest part:
    truncated=true), usage and an exec_id. timeout_s (default 300 s) kills the
    whole process tree; if the command is still not done after it (e.g. it
    waited for a slot), the current state is returned and the exec carries
    on: follow it with exec_poll. Sends progress notifications while waiting;
    cancelling the call stops waiting, not the command (use exec_cancel).
    A workspace runs at most the policy's number of commands at once
    (concurrency_limit_exceeded; queue=true waits for a slot instead).
    Needs "write".
    """
    workspace = await call.run(workspace_get, actor=call.principal, ref=args.container_id)
    return await call.run_reporting(
        services.exec_run,
        actor=call.principal,
        workspace=workspace,
        **args.model_dump(exclude={"container_id"}),
        total_s=args.timeout_s,
        label="command running",
    )


@tools.tool(
    input=ExecStartIn,
    output=ExecStartOut,
    title="Start a command",
    hints=RUN,
)
def exec_start(call: ToolCall[Principal], args: ExecStartIn) -> ExecStartOut:
    """Start a command in a workspace and return at once with its exec_id.

    For long-running or interactive-progress work (servers, long builds,
    watchers): follow the output with exec_poll, stop it with exec_cancel.
    Same arguments as exec_run: cmd (no shell; use ["sh", "-c", "..."]), cwd,
    env, as_root, timeout_s (no default here: without it the command runs
    until it ends or is cancelled), idempotency_key (a retry with the same key
    returns the same exec), queue (wait for a free slot instead of
    concurrency_limit_exceeded). Needs "write".
    """
    workspace = workspace_get(actor=call.principal, ref=args.container_id)
    exec_ = services.exec_start(
        actor=call.principal, workspace=workspace, **args.model_dump(exclude={"container_id"})
    )
    return ExecStartOut.from_exec(exec_)


@tools.tool(
    input=ExecPollIn,
    output=ExecPollOut,
    title="Read a command's output",
    hints=READ,
)
async def exec_poll(call: ToolCall[Principal], args: ExecPollIn) -> services.ExecPollResult:
    """Get a command's output after a sequence number, and its state.

    Call it repeatedly with after_seq = the previous answer's next_seq: each
    message (seq, stream stdout/stderr, data, encoding utf-8 or base64 for
    binary output) comes exactly once, in order. wait_s (up to 30) waits for
    new output or the end and answers as soon as either is there: a cheap
    long poll. complete=true means the command ended and all its output was
    returned (see status, exit_code, error_code). Only the newest output up
    to the tenant's cap is kept (truncated, first_seq). Sends progress
    notifications while waiting; cancelling the call stops the wait only.
    Needs "read".
    """
    kwargs: dict[str, Any] = {
        "actor": call.principal,
        "exec_id": args.exec_id,
        "after_seq": args.after_seq,
        "wait_s": args.wait_s,
    }
    if args.wait_s > 0:
        return await call.run_reporting(
            services.exec_poll, **kwargs, total_s=args.wait_s, label="waiting for output"
        )
    return await call.run(services.exec_poll, **kwargs)


@tools.tool(
    input=ExecCancelIn,
    output=ExecOut,
    title="Cancel a command",
    hints=REPEATABLE_DESTROY,
)
def exec_cancel(call: ToolCall[Principal], args: ExecCancelIn) -> ExecOut:
    """Cancel a command: a queued one never runs, a running one has its whole process
    tree killed. Answers once it has ended (status cancelled), with its details.

    Cancelling a command that already ended changes nothing. Needs "write".
    """
    return ExecOut.from_exec(services.exec_cancel(actor=call.principal, exec_id=args.exec_id))


@tools.tool(
    input=ExecListIn,
    output=ExecListOut,
    title="List commands",
    hints=READ,
)
def list_execs(call: ToolCall[Principal], args: ExecListIn) -> Page[ExecOut]:
    """List the commands run in a workspace, newest first: exec_id, cmd, status,
    exit_code, timings and output accounting.

    Use it to find an exec_id to poll or cancel, or to see what ran before.
    Values of secret-looking environment variables are redacted. Answers a page:
    "items", and while "has_more" call again with cursor=next_cursor (limit:
    page size, default 50, at most 500). Needs "read".
    """
    workspace = workspace_get(actor=call.principal, ref=args.container_id)
    page = selectors.exec_page(actor=call.principal, workspace=workspace, page=args)
    return page_map(page, ExecOut.from_exec)
