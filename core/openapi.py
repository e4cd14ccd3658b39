"""Every operation of the OpenAPI schema lists its error answers, in the shared shape.

django-ninja documents only the success responses an operation declares. The
errors a client must handle come from the layers around it (authentication,
validation, the body parser, services, the engine), so they are declared here,
once: per operation, each error status with the ``Error`` schema and the stable
codes it may carry (in the response's description and as ``x-error-codes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every error answer. Branch on `code`; `extra` holds details per code.",
    "properties": {
        "code": {"type": "string", "description": "Stable error code."},
        "message": {"type": "string"},
        "extra": {"type": "object", "additionalProperties": True},
        "request_id": {
            "type": "string",
            "description": "The request's id (also in `X-Request-ID`): quote it when "
            "reporting; the same id is on the server's log lines and audit events.",
        },
    },
    "required": ["code", "message", "extra"],
}

Codes = Mapping[int, Iterable[str]]

# Every authenticated operation.
COMMON: Codes = {
    400: ["tenant_required"],
    401: [
        "token_missing",
        "token_malformed",
        "token_invalid",
        "token_revoked",
        "token_expired",
        "token_audience",
    ],
    403: ["tenant_inactive", "scope_required"],
    422: ["validation_failed"],
    429: ["rate_limited"],
    500: ["internal_error"],
    503: ["provider_unreachable"],
}
# Operations with a JSON request body.
BODY: Codes = {400: ["invalid_json"], 413: ["payload_too_large"]}
# Uploads the view reads while they arrive (core/streamed_body.py).
UPLOAD: Codes = {400: ["request_body_incomplete"]}
# Operations that reach the container engine.
ENGINE: Codes = {
    409: ["engine_conflict"],
    410: ["container_gone"],
    502: ["engine_error", "node_agent_error", "node_agent_misconfigured"],
    # A node that is down answers for the workspaces placed on it.
    503: ["engine_unavailable", "node_unavailable", "workspace_unavailable"],
    504: ["engine_timeout"],
}
WORKSPACE: Codes = {404: ["workspace_not_found"]}
# An operation on a workspace resumes it first when it is paused (workspace_ready).
RUNNING: Codes = {
    404: ["workspace_not_found"],
    409: ["workspace_not_running"],
    503: ["workspace_resume_failed"],
}
# Spawning (an image, a snapshot or a template) and forking: placement, images, quotas.
# Every list of the list contract (core.pagination).
LIST: Codes = {422: ["invalid_cursor", "invalid_limit"]}
PLACEMENT: Codes = {
    403: [
        "image_not_allowed",
        "digest_required",
        "policy_denied",
        "image_not_scanned",
        "image_vulnerable",
    ],
    422: [
        "invalid_alias",
        "invalid_ttl",
        "ttl_with_persistent",
        "invalid_limits",
        "node_labels_conflict",
        "node_labels_unmatched",
    ],
    409: ["alias_in_use"],
    429: ["workspace_quota_exceeded"],
    502: ["registry_auth_failed", "registry_unreachable"],
    503: ["capacity_exhausted"],
    504: ["spawn_timeout"],
}
SNAPSHOT: Codes = {404: ["snapshot_not_found"]}
TENANT_ADMIN: Codes = {404: ["tenant_not_found"]}
AUDIT_FILTERS: Codes = {422: ["invalid_time", "invalid_outcome"]}
SNAPSHOT_QUOTAS: Codes = {
    422: ["invalid_snapshot"],
    429: ["snapshot_quota_exceeded", "snapshot_storage_quota_exceeded"],
}
TEMPLATE: Codes = {404: ["template_not_found"]}
EXEC: Codes = {404: ["exec_not_found"]}
FILES: Codes = {
    403: ["path_outside_workspace"],
    404: ["workspace_not_found", "not_found"],
    503: ["workspace_resume_failed"],
    409: [
        "workspace_not_running",
        "is_a_directory",
        "not_a_directory",
        "already_exists",
        "directory_not_empty",
        "path_locked",
        "workspace_tool_missing",
    ],
    412: ["precondition_failed"],
    413: ["file_too_large"],
    422: [
        "invalid_path",
        "symlink_loop",
        "invalid_range",
        "not_utf8",
        "invalid_content",
        "invalid_base64",
        "invalid_mode",
        "invalid_archive",
        "file_required",
    ],
}

OPERATION_ERRORS: dict[str, list[Codes]] = {
    "me": [],
    "system_status": [],
    "tenant_get": [{404: ["tenant_not_found"]}],
    "workspace_spawn": [
        BODY,
        ENGINE,
        PLACEMENT,
        {
            404: ["snapshot_not_found", "template_not_found"],
            409: ["idempotency_key_reused", "snapshot_not_ready", "template_not_ready"],
            422: [
                "invalid_idempotency_key",
                "invalid_image_reference",
                "image_not_found",
                "image_and_snapshot",
                "image_and_template",
            ],
        },
    ],
    "workspace_list": [LIST, {422: ["invalid_alias"]}],
    "workspace_get": [WORKSPACE],
    "workspace_kill": [WORKSPACE, ENGINE],
    "workspace_attach": [BODY, RUNNING],
    "workspace_stop": [RUNNING, ENGINE, {409: ["workspace_not_stopped"]}],
    "workspace_start": [WORKSPACE, ENGINE, {409: ["workspace_not_stopped"]}],
    "workspace_pause": [RUNNING, ENGINE],
    "workspace_resume": [RUNNING, ENGINE, {409: ["workspace_not_paused"]}],
    "workspace_stats": [RUNNING, ENGINE],
    "reconcile": [ENGINE],
    "garbage_collect": [ENGINE],
    "exec_start": [
        BODY,
        RUNNING,
        ENGINE,
        {
            409: ["idempotency_key_reused"],
            422: [
                "invalid_cmd",
                "invalid_cwd",
                "invalid_env",
                "invalid_timeout",
                "invalid_idempotency_key",
            ],
            429: ["concurrency_limit_exceeded"],
        },
    ],
    "exec_list": [LIST, WORKSPACE],
    "exec_poll": [EXEC, {422: ["invalid_wait", "invalid_seq"]}],
    "exec_get": [EXEC],
    "exec_cancel": [EXEC, ENGINE],
    "fs_read": [FILES, ENGINE],
    "fs_write": [FILES, ENGINE, BODY, UPLOAD],
    "fs_delete": [FILES, ENGINE],
    "fs_stat": [FILES, ENGINE],
    "fs_list": [LIST, FILES, ENGINE],
    "fs_mkdir": [FILES, ENGINE, BODY],
    "fs_move": [FILES, ENGINE, BODY],
    "fs_download_archive": [FILES, ENGINE],
    "fs_upload_archive": [FILES, ENGINE, UPLOAD],
    "fs_upload_archive_post": [FILES, ENGINE, UPLOAD],
    "snapshot_create": [BODY, RUNNING, ENGINE, SNAPSHOT_QUOTAS],
    "snapshot_list": [LIST, {422: ["invalid_alias"]}],
    "snapshot_get": [SNAPSHOT],
    "snapshot_delete": [SNAPSHOT, ENGINE, {409: ["snapshot_in_use"]}],
    "workspace_fork": [BODY, RUNNING, ENGINE, PLACEMENT, SNAPSHOT_QUOTAS],
    "template_create": [
        BODY,
        ENGINE,
        {
            403: ["image_not_allowed", "digest_required", "policy_denied"],
            422: [
                "invalid_template",
                "invalid_template_name",
                "invalid_image_reference",
                "image_not_found",
            ],
            413: ["template_context_too_large"],
            502: ["registry_auth_failed", "registry_unreachable"],
            503: ["capacity_exhausted"],
        },
    ],
    "template_list": [LIST],
    "template_get": [TEMPLATE],
    "template_log": [TEMPLATE, {422: ["invalid_wait"]}],
    "template_build": [
        TEMPLATE,
        ENGINE,
        {409: ["template_not_ready"], 422: ["invalid_template"], 503: ["capacity_exhausted"]},
    ],
    "template_delete": [TEMPLATE, ENGINE, {409: ["template_in_use"]}],
    # Tenant administration (admin scope); another tenant's slug answers tenant_not_found.
    "member_list": [LIST, TENANT_ADMIN],
    "member_invite": [TENANT_ADMIN, BODY],
    "member_update": [TENANT_ADMIN, BODY, {404: ["member_not_found"], 409: ["last_owner"]}],
    "member_remove": [TENANT_ADMIN, {404: ["member_not_found"], 409: ["last_owner"]}],
    "api_token_list": [LIST, TENANT_ADMIN],
    "api_token_create": [
        TENANT_ADMIN,
        BODY,
        {
            403: ["scope_escalation"],
            404: ["member_not_found"],
            422: ["invalid_scopes", "not_a_member"],
        },
    ],
    "api_token_revoke": [TENANT_ADMIN, {404: ["token_not_found"]}],
    "tenant_policy_get": [TENANT_ADMIN],
    "tenant_policy_update": [TENANT_ADMIN, BODY, {422: ["unknown_policy_field"]}],
    "audit_event_list": [LIST, AUDIT_FILTERS],
    "audit_event_export": [AUDIT_FILTERS],
    "usage_list": [{422: ["invalid_range"]}],
}

_REASONS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found (another tenant's object answers the same)",
    409: "Conflict with the current state",
    410: "Gone",
    412: "Precondition failed",
    413: "Too large",
    422: "Invalid input",
    429: "Quota or limit reached",
    500: "Internal error",
    502: "Container engine error",
    503: "Unavailable",
    504: "Timed out",
}


def operation_errors(operation_id: str) -> dict[int, list[str]]:
    """Status → codes of one operation (the common ones included)."""
    merged: dict[int, list[str]] = {}
    # An operation not declared yet still documents the errors every operation has
    # (a test insists that each one is declared).
    for group in [COMMON, *OPERATION_ERRORS.get(operation_id, [])]:
        for status, codes in group.items():
            known = merged.setdefault(status, [])
            known.extend(c for c in codes if c not in known)
    return dict(sorted(merged.items()))


def add_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the ``Error`` component and each operation's error responses to ``schema``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            for status, codes in operation_errors(operation["operationId"]).items():
                responses.setdefault(
                    str(status),
                    {
                        "description": f"{_REASONS[status]}: " + ", ".join(f"`{c}`" for c in codes),
                        "content": {"application/json": {"schema": ref}},
                        "x-error-codes": codes,
                    },
                )
    return schema
