"""/metrics answers scrapers from allowed networks or with the metrics token, nobody else."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_loopback_by_default_and_nobody_else(settings: Any) -> None:
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert outside.status_code == 403
    assert outside.json()["code"] == "metrics_forbidden"
    assert b"django_http" not in outside.content


def test_token_and_configured_networks(settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.1.0.0/16"]
    settings.METRICS_TOKEN = "scrape-secret-123"
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    scraper = Client(REMOTE_ADDR="198.51.100.7", HTTP_AUTHORIZATION="Bearer scrape-secret-123")
    answer = scraper.get("/metrics")
    assert answer.status_code == 200 and b"python_info" in answer.content
    wrong = Client(REMOTE_ADDR="198.51.100.7", HTTP_AUTHORIZATION="Bearer scrape-secret-12")
    assert wrong.get("/metrics").status_code == 403
