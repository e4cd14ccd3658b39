"""The Grafana dashboard and the alert rules only use series DevBench exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import core.metrics
import devbench_site.metrics

DOCS = Path(__file__).resolve().parent.parent / "docs"
SERIES = re.compile(r"\b(devbench_[a-z_]+)")


def _exported() -> set[str]:
    sources = (Path(str(m.__file__)).read_text() for m in (core.metrics, devbench_site.metrics))
    return {name for source in sources for name in SERIES.findall(source)}


def _base(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_dashboard_series_exist() -> None:
    dashboard = json.loads((DOCS / "grafana" / "devbench.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {_base(n) for e in exprs for n in SERIES.findall(e)}
    assert used and used <= _exported(), used - _exported()


def test_alert_rules_parse_and_use_existing_series() -> None:
    rules = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"DevBenchEngineDown", "DevBenchQueueBackingUp", "DevBenchHttpErrorRate"} <= names
    used = {_base(n) for e in exprs for n in SERIES.findall(e)}
    assert used <= _exported(), used - _exported()
