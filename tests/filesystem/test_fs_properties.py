"""Properties through the real engine: byte-exact round trips, ETag = content."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workspaces.filesystem.services import fs_read, fs_stat, fs_write

pytestmark = [pytest.mark.docker, pytest.mark.integration]

ENGINE = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@ENGINE
@given(data=st.binary(max_size=200_000))
def test_write_then_read_is_byte_exact(env, wdir, data):
    written = fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/blob", content=data)
    read = fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/blob")
    assert read.content == data
    assert read.size == written.size == len(data)
    assert read.etag == written.etag == hashlib.sha256(data).hexdigest()


@ENGINE
@given(a=st.binary(max_size=64), b=st.binary(max_size=64))
def test_etag_changes_iff_content_changes(env, wdir, a, b):
    path = f"{wdir}/versioned"
    first = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=a)
    before = fs_stat(actor=env.actor, workspace=env.workspace, path=path).etag
    second = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b)
    after = fs_stat(actor=env.actor, workspace=env.workspace, path=path).etag
    assert before == first.etag and after == second.etag
    assert (before == after) == (a == b)
