"""Pull progress from the engine's event stream: edge cases of the stream, recorded."""

from __future__ import annotations

from workspaces.runtime.base import PullProgress
from workspaces.runtime.docker.images import _consume

REF = "127.0.0.1:5000/team/tool:1"


def _run(events: list[dict[str, object]]) -> list[PullProgress]:
    seen: list[PullProgress] = []
    _consume(REF, events, host="127.0.0.1:5000", verb="pull", progress=seen.append)
    return seen


def test_layers_and_bytes_add_up_as_the_engine_reports_them():
    seen = _run(
        [
            {"status": "Pulling from team/tool", "id": "1"},  # names the tag: not a layer
            {"status": "Already exists", "id": "aaa"},
            {"status": "Pulling fs layer", "id": "bbb"},
            {"status": "Waiting", "id": "ccc"},
            {"status": "Downloading", "id": "bbb", "progressDetail": {"current": 10, "total": 100}},
            {"status": "Downloading", "id": "ccc", "progressDetail": {"current": 5, "total": 50}},
            {"status": "Download complete", "id": "bbb"},
            {"status": "Extracting", "id": "bbb", "progressDetail": {"current": 1, "total": 100}},
            {"status": "Pull complete", "id": "bbb"},
            {"status": "Verifying Checksum", "id": "ccc"},
            {"status": "Pull complete", "id": "ccc"},
            {"status": "Digest: sha256:" + "0" * 64},
            {"status": "Status: Downloaded newer image for " + REF},
        ]
    )
    assert seen[0] == PullProgress(image=REF, layers_total=1, layers_done=1)
    assert seen[4] == PullProgress(
        image=REF, layers_total=3, layers_done=1, bytes_total=150, bytes_done=15
    )
    # Extraction's own counter does not move the download bytes back.
    assert seen[6].bytes_done == 105
    assert seen[-1] == PullProgress(
        image=REF, layers_total=3, layers_done=3, bytes_total=150, bytes_done=150
    )
    assert seen[-1].finished and not seen[4].finished
    assert len(seen) == 10  # one report per layer event, none for the tag or the digest
