"""A person in a real browser: sign in, spawn, run a command, use the shell and files, kill."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.execution.helpers import container_run
from tests.factories import MembershipFactory, UserFactory
from workspaces.models import Workspace

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.slow,
]

PASSWORD = "correct horse battery staple"  # UserFactory's


def _output(page, stream):
    """The text of one stream in the output panel, as shown."""
    return "".join(page.locator(f"#output span.{stream}").all_text_contents())


def test_a_member_works_in_a_workspace_from_the_browser(
    page, server, live_worker, tenant, screenshot
):
    user = UserFactory(username="ada")
    MembershipFactory(user=user, tenant=tenant, role="member")
    # The pages work under their Content-Security-Policy: the browser refuses nothing.
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)

    # Sign in with a password: one tenant, so straight to its workspaces.
    page.goto(server.url("/"))
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    screenshot("01-sign-in")
    page.fill("#id_login", "ada")
    page.fill("#id_password", PASSWORD)
    page.click("form.stacked button[type=submit]")
    expect(page).to_have_url(server.url(f"/t/{tenant.slug}/workspaces/"))
    expect(page.locator("h1")).to_have_text("Workspaces")

    # Spawn: the row appears creating and turns running by itself.
    page.fill("#spawn-alias", "browser-ws")
    page.click("#spawn-form button[type=submit]")
    row = page.locator("#workspace-rows tr", has_text="browser-ws")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("running", timeout=60_000)
    screenshot("02-workspaces")
    workspace = Workspace.objects.get(tenant=tenant, alias="browser-ws")

    # Run a command: both streams appear, stderr marked as such, then the exit code.
    row.get_by_role("link", name="Open").click()
    expect(page.locator("h1")).to_contain_text("browser-ws")
    page.fill("#command", "echo hello; echo oops 1>&2; exit 3")
    page.press("#command", "Enter")
    expect(page.locator("#output-exit")).to_have_text("exit code 3")
    expect(page.locator("#output-status")).to_have_text("completed")
    assert _output(page, "stdout") == "hello\n"
    assert _output(page, "stderr") == "oops\n"
    expect(page.locator("#exec-rows .exec-row").first).to_contain_text("exit 3")
    screenshot("03-command")

    # Live, and resumed after the server goes away mid-command: nothing lost or doubled.
    page.fill("#command", "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two")
    page.press("#command", "Enter")
    expect(page.locator("#output span.stdout")).to_have_text("one\n")
    expect(page.locator("#output-status")).to_have_text("running")
    server.restart()
    container_run(workspace, "touch", "/tmp/go")
    expect(page.locator("#output-status")).to_have_text("completed", timeout=60_000)
    assert _output(page, "stdout") == "one\ntwo\n"
    expect(page.locator("#output-exit")).to_have_text("exit code 0")

    # Replay an earlier command from the list.
    page.locator("#exec-rows .exec-row", has_text="echo hello").click()
    expect(page.locator("#output-exit")).to_have_text("exit code 3")
    assert (_output(page, "stdout"), _output(page, "stderr")) == ("hello\n", "oops\n")

    # Cancel a running command.
    page.fill("#command", "sleep 6004")
    page.press("#command", "Enter")
    expect(page.locator("#output-status")).to_have_text("running")
    page.click("#output-cancel")
    expect(page.locator("#output-status")).to_have_text("cancelled")

    # The interactive shell (xterm.js over the shell websocket).
    page.get_by_role("link", name="Shell").click()
    expect(page.locator("#shell-state")).to_have_text("Connected")
    page.locator("#shell").click()
    page.keyboard.type("echo shell-$((6*7))\n")
    expect(page.locator("#shell .xterm-rows")).to_contain_text("shell-42")
    screenshot("04-shell")

    # Files: upload, see it listed, open it.
    page.get_by_role("link", name="Files").click()
    greeting = {"name": "greeting.txt", "mimeType": "text/plain", "buffer": b"hi from a browser\n"}
    page.set_input_files("#upload-file", files=[greeting])
    expect(page.locator("#upload-name")).to_contain_text("greeting.txt")
    page.click("#upload-form button[type=submit]")
    expect(page.locator(".flash-success")).to_contain_text("Uploaded /workspace/greeting.txt")
    entry = page.locator("tr[data-entry='greeting.txt']")
    expect(entry).to_contain_text("18 bytes")
    screenshot("05-files")
    entry.get_by_role("link", name="greeting.txt").click()
    expect(page.locator("#file-content")).to_have_text("hi from a browser\n")
    screenshot("06-file")

    # Kill (confirmed), back on the list without it.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Kill workspace").click()
    expect(page).to_have_url(server.url(f"/t/{tenant.slug}/workspaces/"))
    expect(page.locator(".flash-success")).to_contain_text("browser-ws was killed")
    expect(page.locator("#workspace-rows")).not_to_contain_text("browser-ws")
    workspace.refresh_from_db()
    assert workspace.status == "removed"
    assert refused == []
