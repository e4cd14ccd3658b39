"""Image scan reports (Trivy JSON, recorded) gate spawns by the policy's severity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import PolicyDenied
from tenants.models import AuditEvent, TenantPolicy
from workspaces.images import image_reference_parse, image_resolve
from workspaces.scanning import TrivyReportDirectory, get_scanner, parse_trivy_report
from workspaces.services import workspace_spawn

pytestmark = [pytest.mark.django_db, pytest.mark.docker]

RECORDED = Path(__file__).parent / "trivy"
BUSYBOX = "devbench/busybox:latest"


def _report_for(directory: Path, recorded: str, image_id: str) -> None:
    """A recorded report, as if it had been made for the local image."""
    document = json.loads((RECORDED / recorded).read_text())
    document["Metadata"]["ImageID"] = image_id
    (directory / recorded).write_text(json.dumps(document))


@pytest.fixture
def reports(tmp_path: Path, settings: Any) -> Any:
    settings.DEVBENCH_IMAGE_SCANNER = "workspaces.scanning.TrivyReportDirectory"
    settings.DEVBENCH_IMAGE_SCAN_REPORTS = str(tmp_path)
    get_scanner.cache_clear()
    yield tmp_path
    get_scanner.cache_clear()


def test_parse_recorded_report() -> None:
    report = parse_trivy_report(json.loads((RECORDED / "vulnerable.json").read_text()))
    assert report.artifact == "devbench/base:latest"
    assert report.counts() == {"CRITICAL": 1, "MEDIUM": 1, "LOW": 1, "HIGH": 1}
    assert [f.id for f in report.at_least("HIGH")] == ["CVE-2024-45490", "CVE-2024-6345"]
    assert len(report.at_least("LOW")) == 4
    with pytest.raises(ValueError):
        parse_trivy_report({"SchemaVersion": 1})


def test_policy_blocks_by_severity(reports: Path, actor: Any, tenant: Any) -> None:
    image_id = image_resolve(image_reference_parse(BUSYBOX)).id
    policy = TenantPolicy.objects.get(tenant=tenant)

    # The gate on, no report: refused (fails closed).
    TenantPolicy.objects.filter(pk=policy.pk).update(image_scan_block_severity="HIGH")
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    assert refused.value.code == "image_not_scanned"

    _report_for(reports, "vulnerable.json", image_id)
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    assert refused.value.code == "image_vulnerable"
    assert refused.value.extra["findings"] == ["CVE-2024-45490", "CVE-2024-6345"]
    assert refused.value.extra["counts"]["CRITICAL"] == 1
    event = AuditEvent.objects.filter(action="workspace.spawn").latest("created_at")
    assert (event.outcome, event.error_code) == ("denied", "image_vulnerable")

    # Only criticals block: still refused; a clean report passes.
    TenantPolicy.objects.filter(pk=policy.pk).update(image_scan_block_severity="CRITICAL")
    with pytest.raises(PolicyDenied):
        workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    (reports / "vulnerable.json").unlink()
    _report_for(reports, "clean.json", image_id)
    assert TrivyReportDirectory(str(reports)).report(image_resolve(image_reference_parse(BUSYBOX)))
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    assert workspace.status == "creating"


def test_gate_off_ignores_reports(reports: Path, actor: Any) -> None:
    image_id = image_resolve(image_reference_parse(BUSYBOX)).id
    _report_for(reports, "vulnerable.json", image_id)
    assert workspace_spawn(actor=actor, image=BUSYBOX, wait=False).status == "creating"
