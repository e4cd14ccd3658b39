"""Image vulnerability scans: a pluggable source of reports, and the spawn-time gate.

A scanner answers "what is known about this image?" with a :class:`ScanReport`
(or ``None``: never scanned). ``DEVBENCH_IMAGE_SCANNER`` names the scanner class
(dotted path); empty means no scanner. The one shipped,
:class:`TrivyReportDirectory`, reads Trivy JSON reports (``trivy image -f json``)
from ``DEVBENCH_IMAGE_SCAN_REPORTS``, matched to images by image id, so reports
made wherever a scanner can run (CI, a host with the vulnerability database)
apply here.

A tenant policy's ``image_scan_block_severity`` (LOW, MEDIUM, HIGH, CRITICAL)
refuses a spawn whose image has a finding of that severity or higher
(``image_vulnerable``), or that has no report at all (``image_not_scanned``):
a gate that is on fails closed. The rule is the same whatever the workspace's
image comes from: a named image, a snapshot's image or a template's (named or
built), each matched by its own image id. A template build whose result has a
blocking report fails (``image_vulnerable``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from tenants.models import TenantPolicy
from workspaces.errors import ImageNotScanned, ImageVulnerable
from workspaces.runtime.base import ImageInfo

logger = logging.getLogger(__name__)

SEVERITY_RANK = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}


@dataclass(frozen=True)
class Finding:
    id: str  # e.g. CVE-2024-1234
    package: str
    severity: str
    installed: str = ""
    fixed: str = ""


@dataclass(frozen=True)
class ScanReport:
    image_id: str
    artifact: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def at_least(self, severity: str) -> list[Finding]:
        floor = SEVERITY_RANK[severity]
        return [f for f in self.findings if SEVERITY_RANK.get(f.severity, 0) >= floor]

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.severity for f in self.findings))


class ImageScanner:
    """The interface: a report for an image, or None when it was never scanned."""

    def report(self, image: ImageInfo) -> ScanReport | None:
        raise NotImplementedError


def parse_trivy_report(document: dict[str, Any]) -> ScanReport:
    """A Trivy JSON report (schema version 2) as a :class:`ScanReport`."""
    if document.get("SchemaVersion") != 2:
        raise ValueError(f"not a Trivy v2 report (SchemaVersion {document.get('SchemaVersion')})")
    metadata = document.get("Metadata") or {}
    findings = []
    for result in document.get("Results") or []:
        for vuln in result.get("Vulnerabilities") or []:
            findings.append(
                Finding(
                    id=str(vuln.get("VulnerabilityID", "")),
                    package=str(vuln.get("PkgName", "")),
                    severity=str(vuln.get("Severity", "UNKNOWN")).upper(),
                    installed=str(vuln.get("InstalledVersion", "")),
                    fixed=str(vuln.get("FixedVersion", "")),
                )
            )
    return ScanReport(
        image_id=str(metadata.get("ImageID", "")),
        artifact=str(document.get("ArtifactName", "")),
        findings=tuple(findings),
    )


class TrivyReportDirectory(ImageScanner):
    """Trivy JSON reports in a directory (any file names), indexed by image id.

    The directory is read again when a file in it changed, so a report dropped
    there applies to the next spawn.
    """

    def __init__(self, directory: str | None = None) -> None:
        self.directory = Path(directory or settings.DEVBENCH_IMAGE_SCAN_REPORTS)
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] = ()
        self._by_image: dict[str, ScanReport] = {}

    def _index(self) -> dict[str, ScanReport]:
        files = sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []
        stamp = tuple((str(p), p.stat().st_mtime) for p in files)
        with self._lock:
            if stamp != self._stamp:
                by_image: dict[str, ScanReport] = {}
                for path in files:
                    try:
                        report = parse_trivy_report(json.loads(path.read_text()))
                    except (OSError, ValueError) as exc:
                        logger.warning("ignoring scan report %s: %s", path, exc)
                        continue
                    if report.image_id:
                        by_image[report.image_id] = report
                self._by_image, self._stamp = by_image, stamp
            return self._by_image

    def report(self, image: ImageInfo) -> ScanReport | None:
        return self._index().get(image.id)


@cache
def get_scanner() -> ImageScanner | None:
    path = settings.DEVBENCH_IMAGE_SCANNER
    return import_string(path)() if path else None


def image_scan_check(*, policy: TenantPolicy, image: ImageInfo, name: str) -> None:
    """Refuse an image the policy's scan gate does not let through: the same rule for a
    named image, a snapshot's image and a template's built image (each by its image id)."""
    floor = policy.image_scan_block_severity
    if not floor:
        return
    report = _report(image)
    if report is None:
        raise ImageNotScanned(
            f"Image '{name}' has no vulnerability scan report, and the tenant policy only "
            f"allows scanned images (blocking {floor} and above).",
            image=name,
            image_id=image.id,
            block_severity=floor,
        )
    _refuse_findings(report, floor=floor, image=image, name=name)


def image_scan_findings_check(*, policy: TenantPolicy, image: ImageInfo, name: str) -> None:
    """Refuse an image whose report has findings the policy blocks; an image without a
    report passes here. For a template build's result: its image id is new, so a report
    can only exist if the scanner scans on request; spawns still need one
    (:func:`image_scan_check`)."""
    floor = policy.image_scan_block_severity
    if not floor:
        return
    report = _report(image)
    if report is not None:
        _refuse_findings(report, floor=floor, image=image, name=name)


def _report(image: ImageInfo) -> ScanReport | None:
    scanner = get_scanner()
    return scanner.report(image) if scanner is not None else None


def _refuse_findings(report: ScanReport, *, floor: str, image: ImageInfo, name: str) -> None:
    blocking = report.at_least(floor)
    if blocking:
        worst = max(blocking, key=lambda f: SEVERITY_RANK.get(f.severity, 0))
        raise ImageVulnerable(
            f"Image '{name}' has {len(blocking)} known vulnerabilities of severity {floor} or "
            f"higher (e.g. {worst.id} in {worst.package}, {worst.severity}).",
            image=name,
            image_id=image.id,
            block_severity=floor,
            counts=report.counts(),
            findings=[f.id for f in blocking[:20]],
        )
