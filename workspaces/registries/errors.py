"""The stable errors of registry operations the platform does itself (one class per code).

Pull and push errors come from the engine (``workspaces.runtime.base``:
``registry_auth_failed``, ``registry_unreachable``).
"""

from __future__ import annotations

from core.errors import EngineError


class RegistryDeleteFailed(EngineError):
    code = "registry_delete_failed"
    http_status = 502
    default_message = "The registry did not delete the image."
