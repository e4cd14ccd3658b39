"""The layering rule: apps import the shared kernel (core); core imports no app; no app
imports the site package (devbench_site: settings, URLs, ASGI/WSGI, Celery wiring)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("tenants", "workspaces", "execution", "usage")
SITE = "devbench_site"


def imported_packages(package: str) -> dict[str, set[str]]:
    """For each module of ``package``: the top-level packages it imports (anywhere in it)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_core_imports_no_app_and_not_the_site() -> None:
    offenders = {
        module: sorted(names & {*APPS, SITE})
        for module, names in imported_packages("core").items()
        if names & {*APPS, SITE}
    }
    assert offenders == {}


@pytest.mark.parametrize("app", APPS)
def test_apps_do_not_import_the_site_package(app: str) -> None:
    offenders = [module for module, names in imported_packages(app).items() if SITE in names]
    assert offenders == []
