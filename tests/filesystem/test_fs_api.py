"""REST: /api/v1/workspaces/{ref}/files and /archive on a real workspace."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tracemalloc
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from tenants.models import TenantPolicy
from tests.conftest import client_for
from tests.isolation import assert_like_missing, rest_answer
from workspaces.models import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.integration]

MiB = 1024 * 1024


@pytest.fixture
def client(env, make_token):
    return client_for(make_token(env.tenant, scopes=("read", "write")))


def files(env, suffix: str = "") -> str:
    return f"/api/v1/workspaces/{env.workspace.public_id}/files{suffix}"


def archive(env) -> str:
    return f"/api/v1/workspaces/{env.workspace.public_id}/archive"


def _put_json(client, url, path, body):
    return client.put(f"{url}?path={path}", body, content_type="application/json")


def test_json_write_and_read_text_and_base64(env, wdir, client):
    url = files(env)
    r = _put_json(client, url, f"{wdir}/hello.txt", {"content": "héllo\n"})
    assert r.status_code == 200, r.content
    body = r.json()
    etag = hashlib.sha256("héllo\n".encode()).hexdigest()
    assert body == {
        "path": f"{wdir}/hello.txt",
        "etag": etag,
        "size": 7,
        "mode": 0o644,
        "created": True,
    }
    assert r["ETag"] == f'"{etag}"'
    r = client.get(url, {"path": f"{wdir}/hello.txt"})
    assert r.status_code == 200
    assert r.json()["content"] == "héllo\n" and r.json()["encoding"] == "utf-8"
    assert r["ETag"] == f'"{etag}"'

    blob = os.urandom(5000) + b"\xff\xfe"
    r = _put_json(
        client,
        url,
        f"{wdir}/blob.bin",
        {"content": base64.b64encode(blob).decode(), "encoding": "base64", "mode": "0600"},
    )
    assert r.json()["mode"] == 0o600
    r = client.get(
        url, {"path": f"{wdir}/blob.bin", "encoding": "base64", "offset": 10, "length": 100}
    )
    got = r.json()
    assert base64.b64decode(got["content"]) == blob[10:110]
    assert (got["offset"], got["length"], got["size"]) == (10, 100, len(blob))
    r = client.get(url, {"path": f"{wdir}/blob.bin"})
    assert r.status_code == 422 and r.json()["code"] == "not_utf8"
    r = client.get(url, {"path": f"{wdir}/blob.bin", "encoding": "text", "length": 5000})
    assert r.status_code == 422 and r.json()["code"] == "not_utf8"


def test_bad_write_bodies(env, wdir, client):
    url = files(env)
    r = _put_json(client, url, f"{wdir}/x", {"content": "!!", "encoding": "base64"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_base64")
    r = _put_json(client, url, f"{wdir}/x", {"content": "x", "mode": "4755"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_mode")
    r = _put_json(client, url, f"{wdir}/x", {"nope": 1})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    assert r.json()["extra"]["errors"][0]["loc"] == ["body", "content"]
    r = client.put(f"{url}?path={wdir}/x", "{not json", content_type="application/json")
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    r = client.put(f"{url}?path={wdir}/x&mode=99", b"raw", content_type="application/octet-stream")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_mode")
    r = client.get(url, {"path": f"{wdir}/x", "offset": -1})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    assert env.must("ls", "-A", wdir) == b""


def test_raw_write_and_streamed_read_with_if_match(env, wdir, client):
    url = files(env)
    data = os.urandom(3 * MiB)
    r = client.put(f"{url}?path={wdir}/raw.bin", data, content_type="application/octet-stream")
    assert r.status_code == 200, r.content
    etag = r.json()["etag"]
    assert etag == hashlib.sha256(data).hexdigest()
    r = client.get(url, {"path": f"{wdir}/raw.bin", "encoding": "raw"})
    assert r.status_code == 200 and r.streaming
    assert b"".join(r.streaming_content) == data
    assert r["ETag"] == f'"{etag}"' and r["Content-Length"] == str(len(data))
    assert r["Content-Type"] == "application/octet-stream"
    r = client.get(url, {"path": f"{wdir}/raw.bin", "encoding": "raw", "offset": MiB, "length": 10})
    assert b"".join(r.streaming_content) == data[MiB : MiB + 10]
    assert r["X-File-Size"] == str(len(data))

    stale = hashlib.sha256(b"old").hexdigest()
    r = client.put(
        f"{url}?path={wdir}/raw.bin",
        b"new",
        content_type="application/octet-stream",
        headers={"If-Match": f'"{stale}"'},
    )
    assert r.status_code == 412
    assert r.json()["code"] == "precondition_failed"
    assert r.json()["extra"]["current_etag"] == etag
    r = client.put(
        f"{url}?path={wdir}/raw.bin",
        b"new",
        content_type="application/octet-stream",
        headers={"If-Match": f'"{etag}"'},
    )
    assert r.status_code == 200
    r = client.delete(f"{url}?path={wdir}/raw.bin", headers={"If-Match": f'"{etag}"'})
    assert r.status_code == 412
    r = client.delete(
        f"{url}?path={wdir}/raw.bin&if_match_etag={hashlib.sha256(b'new').hexdigest()}"
    )
    assert r.status_code == 200
    assert r.json() == {"path": f"{wdir}/raw.bin", "kind": "file", "status": "deleted"}


def test_stat_list_mkdir_move_delete(env, wdir, client):
    url = files(env)
    r = client.post(
        files(env, "/mkdir"),
        {"path": f"{wdir}/a/b", "parents": True},
        content_type="application/json",
    )
    assert r.json() == {"path": f"{wdir}/a/b", "created": True}
    _put_json(client, url, f"{wdir}/a/b/f.json", {"content": "{}"})
    r = client.get(files(env, "/stat"), {"path": f"{wdir}/a/b/f.json"})
    stat = r.json()
    assert (stat["kind"], stat["is_dir"], stat["size"], stat["permissions"]) == (
        "file",
        False,
        2,
        "0644",
    )
    assert stat["mime_type"] == "application/json" and r["ETag"] == f'"{stat["etag"]}"'
    r = client.get(files(env, "/list"), {"path": wdir, "recursive": "true"})
    assert [e["path"].removeprefix(wdir) for e in r.json()["items"]] == [
        "/a",
        "/a/b",
        "/a/b/f.json",
    ]
    assert r.json()["has_more"] is False and r.json()["next_cursor"] is None
    r = client.post(
        files(env, "/move"),
        {"path": f"{wdir}/a/b/f.json", "destination": f"{wdir}/g.json"},
        content_type="application/json",
    )
    assert r.json() == {"path": f"{wdir}/g.json", "source": f"{wdir}/a/b/f.json", "kind": "file"}
    r = client.delete(f"{url}?path={wdir}/a")
    assert (r.status_code, r.json()["code"]) == (409, "directory_not_empty")
    r = client.delete(f"{url}?path={wdir}/a&recursive=true")
    assert r.status_code == 200
    assert env.must("ls", "-A", wdir).split() == [b"g.json"]


def test_names_with_query_characters_are_the_files_they_name(env, wdir, client):
    """Spaces, plus signs, ampersands, percent signs and non-ASCII travel to the engine
    as they are: a plus is not a space, "%20" is not one either."""
    names = ["a b.txt", "a+b.txt", "x&y=z?.txt", "100%20.txt", "ü #1.txt"]
    for i, name in enumerate(names):
        query = urlencode({"path": f"{wdir}/d ir/{name}"})
        r = client.put(
            f"{files(env)}?{query}", {"content": str(i)}, content_type="application/json"
        )
        assert r.status_code == 200, (name, r.json())
    for i, name in enumerate(names):
        r = client.get(files(env, "/stat"), {"path": f"{wdir}/d ir/{name}"})
        assert (r.status_code, r.json()["size"]) == (200, len(str(i))), name
        r = client.get(files(env), {"path": f"{wdir}/d ir/{name}"})
        assert r.json()["content"] == str(i), name
    r = client.get(files(env, "/stat"), {"path": f"{wdir}/d ir/a%2Bb.txt"})
    assert r.status_code == 404  # a name made of the escape, not the plus
    listed = client.get(files(env, "/list"), {"path": f"{wdir}/d ir"}).json()["items"]
    assert sorted(e["name"] for e in listed) == sorted(names)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/etc/passwd", 403, "path_outside_workspace"),
        ("../../etc/shadow", 403, "path_outside_workspace"),
        ("a%00b", 422, "invalid_path"),
        ("/workspace/definitely-missing", 404, "not_found"),
    ],
)
def test_path_errors_map_to_stable_codes(env, client, path, status, code):
    r = client.get(f"{files(env)}?path={path}")
    assert (r.status_code, r.json()["code"]) == (status, code)
    r = client.get(f"{files(env, '/stat')}?path={path}")
    assert (r.status_code, r.json()["code"]) == (status, code)


def test_file_too_large_over_rest(env, wdir, client):
    TenantPolicy.objects.update_or_create(tenant=env.tenant, defaults={"max_file_size_bytes": 1024})
    r = client.put(
        f"{files(env)}?path={wdir}/big", b"x" * 2000, content_type="application/octet-stream"
    )
    assert (r.status_code, r.json()["code"]) == (413, "file_too_large")
    assert r.json()["extra"]["limit_bytes"] == 1024
    r = _put_json(client, files(env), f"{wdir}/big", {"content": "y" * 4000})
    assert (r.status_code, r.json()["code"]) == (413, "file_too_large")
    assert env.must("ls", "-A", wdir) == b""


def test_archive_upload_put_post_and_download(env, wdir, client):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("src/main.py", b"print('hi')\n"), ("README", b"readme")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = client.put(
        f"{archive(env)}?path={wdir}/proj", buf.getvalue(), content_type="application/gzip"
    )
    assert r.status_code == 200, r.content
    assert r.json() == {
        "path": f"{wdir}/proj",
        "files": 2,
        "directories": 0,
        "symlinks": 0,
        "hardlinks": 0,
        "bytes": 18,
    }
    r = client.post(
        f"{archive(env)}?path={wdir}/proj2", buf.getvalue(), content_type="application/gzip"
    )
    assert r.status_code == 200
    assert env.must("cat", f"{wdir}/proj2/src/main.py") == b"print('hi')\n"
    r = client.get(archive(env), {"path": f"{wdir}/proj"})
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"] == "application/x-tar"
    assert r["Content-Disposition"] == 'attachment; filename="proj.tar"'
    with tarfile.open(fileobj=io.BytesIO(b"".join(r.streaming_content))) as tar:
        member = tar.extractfile("proj/src/main.py")
        assert member is not None and member.read() == b"print('hi')\n"
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        tar.addfile(info, io.BytesIO(b""))
    r = client.put(f"{archive(env)}?path={wdir}", bad.getvalue(), content_type="application/x-tar")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_archive")


class _LazyBody(io.RawIOBase):
    """A request body produced as it is read: the test itself holds none of it."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.block = os.urandom(MiB)
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = min(self.remaining, MiB if size is None or size < 0 else min(size, MiB))
        data = self.block[:n]
        self.remaining -= n
        self.digest.update(data)
        return data


@pytest.mark.slow
def test_100_mib_rest_round_trip_streams_both_ways(env, wdir, client):
    size = 100 * MiB
    body = _LazyBody(size)
    tracemalloc.start()
    try:
        r = client.generic(
            "PUT",
            f"{files(env)}?path={wdir}/big.bin",
            **{
                "wsgi.input": body,
                "CONTENT_LENGTH": str(size),
                "CONTENT_TYPE": "application/octet-stream",
            },
        )
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert r.status_code == 200, r.content
        got = client.get(files(env), {"path": f"{wdir}/big.bin", "encoding": "raw"})
        digest, count = hashlib.sha256(), 0
        for chunk in got.streaming_content:
            digest.update(chunk)
            count += len(chunk)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.json()["etag"] == body.digest.hexdigest() == digest.hexdigest()
    assert count == size and got["Content-Length"] == str(size)
    print(
        f"REST 100 MiB peak allocations: PUT {put_peak / MiB:.1f} MiB, GET {get_peak / MiB:.1f} MiB"
    )
    assert put_peak < 24 * MiB
    assert get_peak < 24 * MiB


def test_another_tenants_workspace_is_404_like_a_missing_one(env, wdir, make_token, other_tenant):
    outsider = client_for(make_token(other_tenant, scopes=("read", "write")))
    env.must("touch", f"{wdir}/secret")
    ws = env.workspace.public_id
    requests = [
        ("get", f"/files?path={wdir}/secret", None),
        ("put", f"/files?path={wdir}/secret", b"x"),
        ("delete", f"/files?path={wdir}/secret", None),
        ("get", f"/files/stat?path={wdir}/secret", None),
        ("get", f"/files/list?path={wdir}", None),
        ("post", "/files/mkdir", {"path": f"{wdir}/d"}),
        ("post", "/files/move", {"path": f"{wdir}/secret", "destination": f"{wdir}/m"}),
        ("get", f"/archive?path={wdir}", None),
        ("put", f"/archive?path={wdir}", b"x"),
    ]
    for method, suffix, body in requests:
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            kwargs = {"data": body, "content_type": "application/octet-stream"}
        elif body is not None:
            kwargs = {"data": body, "content_type": "application/json"}
        theirs = getattr(outsider, method)(f"/api/v1/workspaces/{ws}{suffix}", **kwargs)
        missing = getattr(outsider, method)(
            f"/api/v1/workspaces/ws_doesnotexist0000{suffix}", **kwargs
        )
        assert theirs.status_code == 404, (method, suffix, theirs.content)
        assert_like_missing(
            rest_answer(theirs),
            rest_answer(missing),
            theirs_id=ws,
            missing_id="ws_doesnotexist0000",
            code="workspace_not_found",
        )
    assert env.must("ls", "-A", wdir).split() == [b"secret"]


def test_read_only_token_cannot_change_files(env, wdir, make_token):
    reader = client_for(make_token(env.tenant, scopes=("read",)))
    env.must("touch", f"{wdir}/f")
    r = reader.get(files(env, "/stat"), {"path": f"{wdir}/f"})
    assert r.status_code == 200
    r = reader.put(f"{files(env)}?path={wdir}/f", b"x", content_type="application/octet-stream")
    assert (r.status_code, r.json()["code"]) == (403, "scope_required")
    r = reader.delete(f"{files(env)}?path={wdir}/f")
    assert (r.status_code, r.json()["code"]) == (403, "scope_required")


def test_openapi_lists_the_file_operations(client):
    spec = client.get("/api/v1/openapi.json").json()
    ops = {
        op["operationId"]
        for path, methods in spec["paths"].items()
        if "/files" in path or "/archive" in path
        for op in methods.values()
    }
    assert ops == {
        "fs_read",
        "fs_write",
        "fs_delete",
        "fs_stat",
        "fs_list",
        "fs_mkdir",
        "fs_move",
        "fs_download_archive",
        "fs_upload_archive",
        "fs_upload_archive_post",
    }


def test_stat_is_one_query_once_the_token_is_known(
    env, wdir, client, django_assert_max_num_queries
):
    # An old mtime: the second stat takes the ETag from the cache (Redis), no query either.
    env.must("sh", "-c", f"echo hello > {wdir}/a.txt && touch -d @1700000000 {wdir}/a.txt")
    assert client.get("/api/v1/me").status_code == 200
    for _ in range(2):
        # Activity was just recorded, so the throttled activity UPDATE is not due either.
        Workspace.objects.filter(pk=env.workspace.pk).update(last_active_at=timezone.now())
        with django_assert_max_num_queries(1):  # the workspace row; the rest is the engine
            response = client.get(f"{files(env, '/stat')}?path={wdir}/a.txt")
        assert response.status_code == 200, response.content
        assert response.json()["etag"] == hashlib.sha256(b"hello\n").hexdigest()
