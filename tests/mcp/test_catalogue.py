"""The catalogue of MCP tools: every tool is there, described, hinted and on shared schemas."""

from __future__ import annotations

import re

import pytest

from core.mcp.server import tool_specs
from core.mcp.tools import object_schema

EXPECTED = {
    "system_status",
    "spawn",
    "attach",
    "kill",
    "list_containers",
    "container_stats",
    "pause",
    "resume",
    "reconcile",
    "garbage_collect",
    "exec_run",
    "exec_start",
    "exec_poll",
    "exec_cancel",
    "list_execs",
    "fs_read",
    "fs_write",
    "fs_stat",
    "fs_list",
    "fs_delete",
    "fs_mkdir",
    "fs_move",
    "snapshot_create",
    "snapshot_list",
    "snapshot_delete",
    "fork",
    "template_list",
}
SPECS = {spec.name: spec for spec in tool_specs()}


def test_every_tool_of_the_catalogue_is_served() -> None:
    assert set(SPECS) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tool_is_described_hinted_and_built_on_shared_schemas(name: str) -> None:
    spec = SPECS[name]
    assert len(spec.description) >= 120, "agents need what, when and limits"
    assert re.search(r'[Nn]eeds (the )?"(read|write|admin)"', spec.description)  # its scope
    hints = spec.annotations
    assert None not in (
        hints.read_only_hint,
        hints.destructive_hint,
        hints.idempotent_hint,
        hints.open_world_hint,
    )
    if hints.read_only_hint:
        assert hints.destructive_hint is False
    # Inputs and outputs are the apps' shared (REST) models, not MCP-only copies.
    for model in (spec.input_model, spec.output_model):
        assert model.__module__.endswith(".schemas"), model
    assert object_schema(spec.input_model)["type"] == "object"
    assert object_schema(spec.output_model)["type"] == "object"
