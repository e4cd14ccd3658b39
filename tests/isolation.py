"""The shared tenant-isolation case: another tenant's object answers exactly like a missing one.

Every interface's tests use it (REST, MCP, web pages, websockets): ask for the other
tenant's object and for an id that does not exist, the same way; the two answers
must be the same once each id is replaced by a placeholder (status, code,
message and extra alike), and carry the expected not-found code. An answer that
differed in anything would tell a caller that the object exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = "ID"


@dataclass(frozen=True)
class Answer:
    """An interface's answer, reduced to what a caller sees."""

    status: int | str  # HTTP status, or "error"/"ok" for an MCP tool result
    code: str | None  # the error code the answer carries
    body: str  # the rest of it, as text


def _without_request_id(body: dict[str, Any]) -> str:
    # Each answer carries the id of its own request, which differs by design.
    return json.dumps({k: v for k, v in body.items() if k != "request_id"}, sort_keys=True)


def rest_answer(response: Any) -> Answer:
    body = response.json()
    return Answer(response.status_code, body.get("code"), _without_request_id(body))


def mcp_answer(result: Any) -> Answer:
    if result.is_error:
        # An error result carries the REST body as JSON text, and no structured content.
        assert result.structured_content is None, result.structured_content
        body = json.loads(result.content[0].text)
    else:
        body = result.structured_content or {}
    status = "error" if result.is_error else "ok"
    return Answer(status, body.get("code"), _without_request_id(body))


def websocket_answer(messages: list[dict[str, Any]], close_code: int | None) -> Answer:
    """What a websocket sent before it closed, and its close code."""
    errors = [m for m in messages if m.get("type") == "error"]
    code = errors[-1].get("code") if errors else None
    bodies = [{k: v for k, v in m.items() if k != "request_id"} for m in messages]
    return Answer(close_code or 0, code, json.dumps(bodies, sort_keys=True))


def page_answer(response: Any) -> Answer:
    """A web page, without its per-response CSRF tokens."""
    html = response.content.decode()
    html = re.sub(r'name="csrf-token" content="[^"]+"', "", html)
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
    match = re.search(r'<code class="code-chip">([a-z_]+)</code>', html)
    return Answer(response.status_code, match.group(1) if match else None, html)


def assert_like_missing(
    theirs: Answer, missing: Answer, *, theirs_id: str, missing_id: str, code: str
) -> None:
    """``theirs`` (another tenant's ``theirs_id``) answers exactly as ``missing`` does."""
    assert theirs.code == code, theirs
    assert (theirs.status, theirs.code) == (missing.status, missing.code), (theirs, missing)
    assert theirs.body.replace(theirs_id, PLACEHOLDER) == missing.body.replace(
        missing_id, PLACEHOLDER
    )
