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


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["state", "runner", "worker", "selectors"])
def test_exec_transitions_and_worker_side_import_neither_tasks_nor_caller_actions(
    module: str,
) -> None:
    """Tasks import the worker side and hand it their senders: no import cycle."""
    imported = imported_modules(ROOT / "execution" / f"{module}.py")
    assert not imported & {"execution.tasks", "execution.services"}


def test_reads_come_from_selectors_not_through_services() -> None:
    import execution.selectors

    readers = {name for name in vars(execution.selectors) if name.startswith("exec_")}
    assert readers, "the selectors module has exec_* readers"
    through_services = []
    paths = [path for top in (*APPS, "tests") for path in sorted((ROOT / top).rglob("*.py"))]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "services"
                and node.attr in readers
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "execution.services"
                and any(alias.name in readers for alias in node.names)
            ):
                through_services.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert through_services == []
