"""Audit events: JSON log lines, workspace actions by an OIDC user, refusals, retention."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from core.errors import PermissionDenied
from tenants.audit import audit_record, audited
from tenants.auth import authenticate_bearer
from tenants.models import AuditEvent
from tenants.services import audit_event_purge
from tests.factories import ApiTokenFactory, AuditEventFactory
from tests.identity.oidc import cli_tokens


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Iterator[_Lines]:
    handler = _Lines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("devbench.audit")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _parsed(handler: _Lines) -> list[dict[str, Any]]:
    return [json.loads(line) for line in handler.lines]


def test_each_event_is_one_redacted_json_line(db, actor, lines):
    with audited(actor=actor, action="exec.start", target_type="exec") as scope:
        scope.target_id = "ex_1"
        scope.details["env"] = {"SERVICE_API_KEY": "sk-123", "LANG": "C"}
        scope.details["notify"] = "ops@example.com"
    [line] = lines.lines
    assert "\n" not in line
    event = json.loads(line)
    assert event["type"] == "audit" and event["action"] == "exec.start"
    assert event["tenant"] == actor.tenant.slug and event["outcome"] == "success"
    assert event["details"] == {
        "env": {"SERVICE_API_KEY": "[redacted]", "LANG": "C"},
        "notify": ("o***@example.com"),
    }
    stored = AuditEvent.objects.get(pk=event["id"])
    assert stored.details == event["details"]  # the row is redacted too, not only the log
    assert "sk-123" not in line


def test_the_audit_logger_writes_bare_json_lines():
    config: dict[str, Any] = settings.LOGGING
    assert config["loggers"]["devbench.audit"]["handlers"] == ["audit"]
    assert config["handlers"]["audit"]["formatter"] == "audit_json"
    assert config["formatters"]["audit_json"]["format"] == "%(message)s"


class PolicySaysNo(PermissionDenied):
    code = "policy_says_no"


def test_denied_action_is_recorded_with_code(db, actor, lines):
    with pytest.raises(PermissionDenied), audited(actor=actor, action="workspace.kill"):
        raise PolicySaysNo("no")
    [event] = _parsed(lines)
    assert (event["outcome"], event["error_code"]) == ("denied", "policy_says_no")


def test_missing_scope_is_recorded_as_denied(db, make_token, tenant):
    from workspaces.services import workspace_spawn

    token = make_token(tenant, scopes=("read",))
    principal = authenticate_bearer(f"Bearer {token.raw}")
    with pytest.raises(PermissionDenied):
        workspace_spawn(actor=principal, image="devbench/busybox:latest")
    event = AuditEvent.objects.get(action="scope.denied")
    assert event.tenant == tenant and event.actor_id == f"token:{token.prefix}"
    assert event.details == {"required_scope": "write", "granted_scopes": ["read"]}


def test_refused_api_tokens_are_recorded_without_the_secret(db, lines):
    token = ApiTokenFactory()
    forged = token.raw[:-4] + "AAAA"
    client = Client(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert client.get("/api/v1/me").status_code == 401
    assert Client().get("/api/v1/me").status_code == 401  # no credential at all: not an attempt
    [event] = AuditEvent.objects.filter(action="auth.bearer")
    assert event.tenant == token.tenant  # the token named by the prefix
    assert (event.outcome, event.error_code) == ("denied", "token_invalid")
    assert event.actor_id == f"token:{token.prefix}"
    assert forged not in json.dumps(_parsed(lines))


@pytest.mark.docker
def test_spawn_and_kill_by_an_oidc_user_are_audited(live_worker, oidc, acme_beta, lines):
    from workspaces.services import workspace_kill, workspace_spawn

    principal = authenticate_bearer(
        f"Bearer {cli_tokens(oidc, login='alice')['access_token']}", tenant_slug="acme"
    )
    workspace = workspace_spawn(actor=principal, image="devbench/busybox:latest")
    workspace_kill(actor=principal, workspace=workspace, force=True)
    events = list(AuditEvent.objects.filter(target_id=workspace.public_id).order_by("created_at"))
    assert [(e.action, e.outcome) for e in events] == [
        ("workspace.spawn", "success"),
        ("workspace.kill", "success"),
    ]
    for event in events:
        assert event.tenant == acme_beta["acme"]
        assert (event.actor_kind, event.actor_id) == ("oidc", f"user:{principal.user_id}")
    logged = [e for e in _parsed(lines) if e["target_id"] == workspace.public_id]
    assert [e["action"] for e in logged] == ["workspace.spawn", "workspace.kill"]


def test_membership_rule_changes_are_attributed_to_the_rule(db):
    event = audit_record(
        actor=None,
        actor_kind="rule",
        actor_id="provider:corp",
        action="membership.grant",
        outcome="success",
        details={"username": "alice", "email": "alice@corp.test"},
    )
    assert (event.actor_kind, event.actor_id) == ("rule", "provider:corp")
    assert event.details["email"] == "a***@corp.test"


# --- Retention -------------------------------------------------------------------------


def _aged(days: int, **kw: Any) -> AuditEvent:
    event: AuditEvent = AuditEventFactory(**kw)
    AuditEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=days))
    return event


def test_purge_deletes_only_events_past_retention_in_batches(db, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    old = [_aged(31) for _ in range(5)]
    recent = _aged(29)
    assert audit_event_purge(batch_size=2) == 5
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in old]).exists()


def test_zero_retention_keeps_everything(db, settings):
    settings.AUDIT_RETENTION_DAYS = 0
    _aged(5000)
    assert audit_event_purge() == 0
    assert AuditEvent.objects.count() == 1


def test_purge_is_scheduled_periodically():
    entry: dict[str, Any] = settings.CELERY_BEAT_SCHEDULE["tenants.audit_purge"]
    assert entry["task"] == "tenants.audit_purge" and entry["schedule"] > 0


@pytest.mark.integration
def test_purge_task_runs_on_a_real_worker(live_worker):
    from tenants.tasks import audit_purge

    old = _aged(settings.AUDIT_RETENTION_DAYS + 1)
    keep = _aged(1)
    audit_purge.apply_async()
    deadline = time.monotonic() + 60
    while AuditEvent.objects.filter(pk=old.pk).exists():
        assert time.monotonic() < deadline, live_worker.log_path.read_text()[-2000:]
        time.sleep(0.2)
    assert AuditEvent.objects.filter(pk=keep.pk).exists()
