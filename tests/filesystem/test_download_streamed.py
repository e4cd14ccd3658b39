"""A download whose ETag is remembered for the engine's stat of the read goes out as it is
read (no spool), verified against that ETag before its last piece; a file that changed
under its ETag is cut short and read whole the next time (``workspaces.filesystem.verified``).

Against the real engine and the real cache. Files are given an old mtime with ``touch -d``
so that their hash is remembered (etags.SETTLED_S).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import docker
import pytest

from tests.conftest import client_for
from tests.filesystem.conftest import one_file_tar
from workspaces.filesystem import reads
from workspaces.filesystem.services import fs_read_stream, fs_stat
from workspaces.filesystem.verified import ContentChanged

pytestmark = [pytest.mark.docker, pytest.mark.integration]

MiB = 1024 * 1024
OLD = "1700000000"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spools the downloads made (a spy around the real one)."""
    made: list[int] = []
    real = reads.new_spool

    def spy() -> Any:
        made.append(1)
        return real()

    monkeypatch.setattr(reads, "new_spool", spy)
    return made


def settled_file(env: Any, path: str, data: bytes) -> None:
    """``data`` at ``path`` in the workspace, with a long settled mtime."""
    docker.from_env().containers.get(env.workspace.container_id).put_archive(
        os.path.dirname(path), one_file_tar(os.path.basename(path), data)
    )
    env.must("touch", "-d", f"@{OLD}", path)


def download(env: Any, path: str, **kwargs: Any) -> tuple[str, bytes]:
    stream = fs_read_stream(actor=env.actor, workspace=env.workspace, path=path, **kwargs)
    return stream.etag, b"".join(stream.chunks())


def test_a_file_with_a_remembered_etag_streams_without_a_spool(env, wdir, spools):
    path = f"{wdir}/big.bin"
    data = os.urandom(3 * MiB + 5)
    settled_file(env, path, data)
    assert download(env, path) == (sha(data), data)  # not known yet: spooled, remembered
    assert spools == [1]
    assert download(env, path) == (sha(data), data)
    assert download(env, path, offset=MiB - 3, length=MiB + 7) == (
        sha(data),
        data[MiB - 3 : 2 * MiB + 4],
    )
    assert download(env, path, offset=len(data), length=10) == (sha(data), b"")
    assert spools == [1]  # the later ones went out as they were read


def test_content_changed_under_its_etag_cuts_the_download_short_once(env, wdir, spools):
    path = f"{wdir}/swapped.bin"
    first, second = os.urandom(2 * MiB), os.urandom(2 * MiB)
    settled_file(env, path, first)
    assert fs_stat(actor=env.actor, workspace=env.workspace, path=path).etag == sha(first)
    settled_file(env, path, second)  # same size, same mtime: the cache cannot tell
    stream = fs_read_stream(actor=env.actor, workspace=env.workspace, path=path)
    assert stream.etag == sha(first)  # announced before the body
    sent = b""
    with pytest.raises(ContentChanged):
        for piece in stream.chunks():
            sent += piece
    # Never the whole body under the wrong ETag: its last piece is held back.
    assert len(sent) < len(second) and second.startswith(sent)
    assert spools == []
    # Forgotten: the next download reads the file whole and announces the right ETag.
    assert download(env, path) == (sha(second), second)
    assert spools == [1]
    assert download(env, path) == (sha(second), second)
    assert spools == [1]


def test_the_http_answer_streams_and_a_changed_file_is_cut_short(env, wdir, make_token, spools):
    client: Any = client_for(make_token(env.tenant, scopes=("read",)))
    url = f"/api/v1/workspaces/{env.workspace.public_id}/files"
    path = f"{wdir}/http.bin"
    first, second = os.urandom(MiB + 1), os.urandom(MiB + 1)
    settled_file(env, path, first)
    assert client.get(f"{url}/stat", {"path": path}).json()["etag"] == sha(first)
    r = client.get(url, {"path": path, "encoding": "raw"})
    assert r.status_code == 200 and r.streaming
    assert r["ETag"] == f'"{sha(first)}"' and r["Content-Length"] == str(len(first))
    assert b"".join(r.streaming_content) == first
    assert spools == []
    settled_file(env, path, second)
    r = client.get(url, {"path": path, "encoding": "raw"})
    assert r["ETag"] == f'"{sha(first)}"' and r["Content-Length"] == str(len(second))
    with pytest.raises(ContentChanged):
        b"".join(r.streaming_content)
    r = client.get(url, {"path": path, "encoding": "raw"})
    assert r["ETag"] == f'"{sha(second)}"'
    assert b"".join(r.streaming_content) == second
