"""Engine-wide facts (version, reachability) for status reports."""

from __future__ import annotations

from typing import Any

from workspaces.runtime.base import EngineInfo
from workspaces.runtime.docker.client import api_client
from workspaces.runtime.docker.errors import translated


class DockerSystem:
    base_url: str
    timeout_s: int

    def engine_info(self) -> EngineInfo:
        with translated(engine_url=self.base_url):
            raw: dict[str, Any] = api_client(self.base_url, self.timeout_s).version()
        return EngineInfo(
            name="docker",
            version=str(raw.get("Version", "")),
            api_version=str(raw.get("ApiVersion", "")),
            os=str(raw.get("Os", "")),
            arch=str(raw.get("Arch", "")),
        )
