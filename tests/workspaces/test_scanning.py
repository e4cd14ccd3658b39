"""Image scan reports (Trivy JSON, recorded) gate spawns by the policy's severity."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import DevBenchError, ImageNotFound, PolicyDenied
from tenants.models import AuditEvent, TenantPolicy
from workspaces.environment_templates.services import template_build_run, template_create
from workspaces.images import LABEL_TEMPLATE, image_reference_parse, image_resolve
from workspaces.models import TemplateStatus, Workspace
from workspaces.runtime import get_driver
from workspaces.runtime.base import ImageInfo
from workspaces.scanning import (
    ImageScanner,
    ScanReport,
    TrivyReportDirectory,
    get_scanner,
    parse_trivy_report,
)
from workspaces.services import workspace_provision, workspace_spawn
from workspaces.snapshots.services import snapshot_create

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


class EveryImageVulnerable(ImageScanner):
    """A scanner that scans on request, and finds the recorded vulnerabilities everywhere."""

    def report(self, image: ImageInfo) -> ScanReport | None:
        document = json.loads((RECORDED / "vulnerable.json").read_text())
        document["Metadata"]["ImageID"] = image.id
        return parse_trivy_report(document)


class BuiltImagesVulnerable(ImageScanner):
    """Clean base images; the recorded vulnerabilities in every image a template build made."""

    def report(self, image: ImageInfo) -> ScanReport | None:
        recorded = "vulnerable.json" if LABEL_TEMPLATE in image.labels else "clean.json"
        document = json.loads((RECORDED / recorded).read_text())
        document["Metadata"]["ImageID"] = image.id
        return parse_trivy_report(document)


def _gate(tenant: Any, severity: str) -> None:
    TenantPolicy.objects.filter(tenant=tenant).update(image_scan_block_severity=severity)


@pytest.fixture
def images_removed() -> Iterator[list[str]]:
    """Images (snapshots, template builds) the test made, removed whatever happened."""
    made: list[str] = []
    yield made
    for ref in made:
        with contextlib.suppress(DevBenchError):
            get_driver().image_remove(ref)


def test_a_snapshot_spawns_only_with_its_own_clean_report(
    reports: Path, actor: Any, tenant: Any, kill_after: list[Workspace], images_removed: list[str]
) -> None:
    created = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    kill_after.append(created)
    source = workspace_provision(workspace_id=created.pk)
    assert source is not None and source.status == "running"
    snapshot = snapshot_create(actor=actor, workspace=source, name="scanned")
    images_removed.append(snapshot.image_ref)

    # Its base image is clean; what was added in the workspace has never been scanned.
    _report_for(reports, "clean.json", image_resolve(image_reference_parse(BUSYBOX)).id)
    _gate(tenant, "HIGH")
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, snapshot=snapshot.public_id, wait=False)
    assert refused.value.code == "image_not_scanned"
    assert refused.value.extra["image_id"] == snapshot.image_id
    assert refused.value.extra["image"] == snapshot.image_ref

    _report_for(reports, "vulnerable.json", snapshot.image_id)
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, snapshot=snapshot.public_id, wait=False)
    assert refused.value.code == "image_vulnerable"
    event = AuditEvent.objects.filter(action="workspace.spawn").latest("created_at")
    assert (event.outcome, event.error_code) == ("denied", "image_vulnerable")

    (reports / "vulnerable.json").unlink()
    _report_for(reports, "clean.json", snapshot.image_id)
    spawned = workspace_spawn(actor=actor, snapshot=snapshot.public_id, wait=False)
    assert spawned.status == "creating" and spawned.snapshot_id == snapshot.pk


def _built_template(actor: Any, name: str, images_removed: list[str]) -> Any:
    """A Dockerfile template, built here (the test's transaction never queues its task)."""
    template = template_create(
        actor=actor, name=name, dockerfile="FROM devbench/busybox:latest\nRUN echo built\n"
    )
    images_removed.append(f"devbench-templates/{template.tenant.slug}:{name}-{template.version}")
    built = template_build_run(template_id=template.pk)
    assert built is not None
    return built


def test_a_built_template_spawns_only_with_its_own_clean_report(
    reports: Path, actor: Any, tenant: Any, images_removed: list[str]
) -> None:
    template = _built_template(actor, "scanned", images_removed)
    assert template.status == TemplateStatus.READY, template.status_message

    _gate(tenant, "HIGH")
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, template=template.public_id, wait=False)
    assert (refused.value.code, refused.value.extra["image_id"]) == (
        "image_not_scanned",
        template.image_id,
    )
    _report_for(reports, "vulnerable.json", template.image_id)
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, template=template.public_id, wait=False)
    assert refused.value.code == "image_vulnerable"
    (reports / "vulnerable.json").unlink()
    _report_for(reports, "clean.json", template.image_id)
    spawned = workspace_spawn(actor=actor, template=template.public_id, wait=False)
    assert spawned.status == "creating" and spawned.template_id == template.pk


def test_an_image_template_follows_its_images_report(
    reports: Path, actor: Any, tenant: Any
) -> None:
    template = template_create(actor=actor, name="named", image=BUSYBOX)
    _gate(tenant, "HIGH")
    with pytest.raises(PolicyDenied) as refused:
        workspace_spawn(actor=actor, template=template.public_id, wait=False)
    assert refused.value.code == "image_not_scanned"
    _report_for(reports, "clean.json", image_resolve(image_reference_parse(BUSYBOX)).id)
    assert workspace_spawn(actor=actor, template=template.public_id, wait=False).template_id


def test_a_template_build_with_blocking_findings_fails(
    settings: Any, actor: Any, tenant: Any, images_removed: list[str]
) -> None:
    settings.DEVBENCH_IMAGE_SCANNER = f"{__name__}.BuiltImagesVulnerable"
    get_scanner.cache_clear()
    try:
        _gate(tenant, "CRITICAL")
        template = _built_template(actor, "flagged", images_removed)
        assert (template.status, template.error_code) == (TemplateStatus.FAILED, "image_vulnerable")
        assert "CVE-2024-45490" in template.status_message
        assert "The base image" not in template.build_log  # the clean base passed the gate
        with pytest.raises(ImageNotFound):  # the refused image is not kept
            get_driver().image_inspect(images_removed[-1])
        event = AuditEvent.objects.filter(action="template.build").latest("created_at")
        assert (event.outcome, event.error_code) == ("error", "image_vulnerable")

        # With the gate off the same build succeeds.
        _gate(tenant, "")
        assert _built_template(actor, "flagged", images_removed).status == TemplateStatus.READY
    finally:
        get_scanner.cache_clear()


def test_a_template_builds_only_upon_a_base_the_gate_lets_through(
    settings: Any, reports: Path, actor: Any, tenant: Any, images_removed: list[str]
) -> None:
    """The base image meets the spawn's gate before anything is built."""
    _gate(tenant, "HIGH")
    template = _built_template(actor, "unscanned-base", images_removed)
    assert (template.status, template.error_code) == (TemplateStatus.FAILED, "image_not_scanned")
    # The log's only line: the engine never started building.
    assert template.build_log.splitlines() == [
        f"The base image {BUSYBOX} is not available: {template.status_message}"
    ]

    settings.DEVBENCH_IMAGE_SCANNER = f"{__name__}.EveryImageVulnerable"
    get_scanner.cache_clear()
    template = _built_template(actor, "vulnerable-base", images_removed)
    assert (template.status, template.error_code) == (TemplateStatus.FAILED, "image_vulnerable")
    assert template.build_log.startswith(f"The base image {BUSYBOX} is not available")
    assert "Step 1" not in template.build_log
