"""Headless Chromium (Debian's package, never a downloaded build) against a live server.

The browser is the machine's ``/usr/bin/chromium`` (``DEVBENCH_CHROMIUM`` to point
elsewhere); Playwright drives it and downloads nothing. The server is a real
daphne process on the test database, serving static files itself, beside the
session's Celery worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import DaphneServer

CHROMIUM = os.environ.get("DEVBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    daphne = DaphneServer(db_name, extra_env={"DEVBENCH_SERVE_STATIC": "true"})
    yield daphne
    daphne.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium (scripts/host-setup)")
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test
    # makes between browser steps are plain blocking calls, as in any other test.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    context = chromium.new_context(viewport={"width": 1360, "height": 860})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"script errors in the page: {errors}"


class Screenshots:
    """Saves full-page screenshots when DEVBENCH_SCREENSHOTS names a directory (to look at
    the pages by eye); does nothing otherwise."""

    def __init__(self, page: Any) -> None:
        self.page = page
        folder = os.environ.get("DEVBENCH_SCREENSHOTS")
        self.folder = Path(folder) if folder else None

    def __call__(self, name: str) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)


@pytest.fixture
def screenshot(page: Any) -> Screenshots:
    return Screenshots(page)
