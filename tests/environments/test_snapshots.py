"""Snapshots on the real engine: capture, spawn from one, fork, consistency, quotas, tenancy."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import ImageNotFound, NotFound, PolicyDenied
from tenants.models import AuditEvent, TenantPolicy
from tenants.principal import system_principal
from tests.environments.conftest import BASE, BUSYBOX, manifest, sh, spawn
from workspaces.models import Snapshot, SnapshotStatus, WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.services import workspace_kill, workspace_spawn
from workspaces.snapshots.errors import (
    SnapshotInUse,
    SnapshotNotFound,
    SnapshotQuotaExceeded,
    SnapshotStorageQuotaExceeded,
)
from workspaces.snapshots.selectors import snapshot_get, snapshot_list
from workspaces.snapshots.services import snapshot_create, snapshot_delete, workspace_fork

pytestmark = [pytest.mark.docker, pytest.mark.integration]

# Files of every kind the workspace user can make, 50 MB of random bytes, and a Python
# package installed into a virtualenv under /workspace (a wheel unpacked into it).
POPULATE = r"""
set -e
cd /workspace
head -c 52428800 /dev/urandom > big.bin
python3 -c "import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)" > binary.dat
mkdir -p empty/nested/deeper emptydir
echo hi > mode741; chmod 741 mode741
echo secret > private; chmod 600 private
: > zero-length
ln -s mode741 link; ln -s /etc/hostname abs-link; ln -s missing dangling
mkdir sgid; chmod 2775 sgid; echo x > sgid/inside
touch -d '2001-02-03 04:05:06' old
python3 -m venv --without-pip venv
python3 - <<'PY'
import io, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as whl:
    whl.writestr("snapdemo/__init__.py", "VALUE = 42\n")
    info = "snapdemo-1.0.dist-info/"
    whl.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: snapdemo\nVersion: 1.0\n")
    whl.writestr(info + "WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    whl.writestr("snapdemo-1.0.dist-info/RECORD", "")
open("snapdemo-1.0-py3-none-any.whl", "wb").write(buf.getvalue())
import glob
site = glob.glob("venv/lib/python3*/site-packages")[0]
zipfile.ZipFile("snapdemo-1.0-py3-none-any.whl").extractall(site)
PY
"""


def test_snapshot_then_spawn_restores_every_file_exactly(live_worker, actor, tenant, kill_after):
    source = spawn(actor, kill_after, image=BASE)
    sh(source, POPULATE)
    before = manifest(source)
    assert "./big.bin|f|644|1000:1000|52428800|" in before
    assert "./link|l|777|1000:1000|7|mode741" in before
    assert "./sgid|d|2775|" in before

    snapshot = snapshot_create(actor=actor, workspace=source, name="populated", description="d")
    assert snapshot.public_id.startswith("sn_")
    assert snapshot.status == SnapshotStatus.READY
    assert snapshot.image_ref == f"devbench-snapshots/{tenant.slug}:{snapshot.public_id}"
    assert 50 * 1024 * 1024 <= snapshot.size_bytes < 80 * 1024 * 1024
    assert snapshot.source_workspace_public_id == source.public_id
    assert snapshot.base_image_ref == BASE
    # The source continues (it was paused only while captured).
    assert get_driver().inspect(source.container_id).status == "running"
    assert sh(source, "echo alive") == "alive\n"

    copy = spawn(actor, kill_after, snapshot=snapshot.public_id)
    assert copy.status == WorkspaceStatus.RUNNING and copy.snapshot_id == snapshot.pk
    assert copy.image_ref == snapshot.image_ref
    assert manifest(copy) == before
    assert sh(copy, "stat -c %Y /workspace/old") == sh(source, "stat -c %Y /workspace/old")
    assert sh(copy, "/workspace/venv/bin/python -c 'import snapdemo; print(snapdemo.VALUE)'") == (
        "42\n"
    )
    assert [s.public_id for s in snapshot_list(actor=actor)] == [snapshot.public_id]
    assert AuditEvent.objects.filter(
        action="snapshot.create", target_id=snapshot.public_id, outcome="success"
    ).exists()


def test_fork_is_independent_of_its_source(live_worker, actor, kill_after):
    source = spawn(actor, kill_after, image=BUSYBOX)
    sh(source, "echo one > /workspace/shared; mkdir /workspace/d")
    fork, snapshot = workspace_fork(actor=actor, workspace=source, alias="the-fork")
    kill_after.append(fork)
    assert fork.alias == "the-fork" and fork.snapshot_id == snapshot.pk
    assert sh(fork, "cat /workspace/shared") == "one\n"

    sh(fork, "echo fork > /workspace/shared; echo new > /workspace/d/only-fork")
    sh(source, "echo source > /workspace/only-source")
    assert sh(source, "cat /workspace/shared; ls /workspace/d | wc -l") == "one\n0\n"
    assert sh(fork, "ls /workspace") == "d\nshared\n"
    # Killing the source (and its volume) leaves the fork whole.
    workspace_kill(actor=actor, workspace=source, force=True, remove_volume=True)
    assert sh(fork, "cat /workspace/shared /workspace/d/only-fork") == "fork\nnew\n"


# A writer that appends line i to a log, then records i in `last` atomically.
WRITER = (
    "cd /workspace; i=0; while :; do echo $i >> log; echo $i > last.tmp; "
    "mv last.tmp last; i=$((i+1)); done"
)


def test_snapshot_while_a_command_writes_is_consistent(live_worker, actor, kill_after):
    source = spawn(actor, kill_after, image=BUSYBOX)
    driver = get_driver()
    from workspaces.runtime.base import ExecSpec

    exec_id = driver.exec_create(source.container_id, ExecSpec(cmd=["/bin/sh", "-c", WRITER]))
    output = driver.exec_stream(exec_id)
    threading.Thread(target=lambda: list(output), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while int(sh(source, "wc -l < /workspace/log 2>/dev/null || echo 0")) < 2000:
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.1)
        snapshot = snapshot_create(actor=actor, workspace=source, name="mid-write")
        lines_after = int(sh(source, "wc -l < /workspace/log"))
        time.sleep(0.3)
        assert int(sh(source, "wc -l < /workspace/log")) > lines_after  # it kept writing
        copy = spawn(actor, kill_after, snapshot=snapshot.public_id)
        # Frozen at one instant: `last` is the log's last line or the one before it.
        lines = sh(copy, "cat /workspace/log").splitlines()
        last = sh(copy, "cat /workspace/last 2>/dev/null || echo -1").strip()
        assert lines == [str(i) for i in range(len(lines))]
        assert int(last) in (len(lines) - 1, len(lines) - 2)
    finally:
        output.close()


def test_quotas_refuse_with_their_codes(live_worker, actor, tenant, kill_after):
    source = spawn(actor, kill_after, image=BUSYBOX)
    sh(source, "head -c 2000000 /dev/zero > /workspace/two-mb")
    TenantPolicy.objects.filter(tenant=tenant).update(max_snapshot_bytes=1_000_000)
    with pytest.raises(SnapshotStorageQuotaExceeded) as too_big:
        snapshot_create(actor=actor, workspace=source, name="too big")
    assert too_big.value.code == "snapshot_storage_quota_exceeded"
    assert too_big.value.http_status == 429
    assert not Snapshot.objects.filter(tenant=tenant).exists()  # neither row nor image left
    assert "devbench-snapshots" not in str(
        [t for i in _images_of(tenant) for t in i.get("RepoTags") or ()]
    )

    TenantPolicy.objects.filter(tenant=tenant).update(max_snapshot_bytes=10**9, max_snapshots=1)
    snapshot_create(actor=actor, workspace=source, name="first")
    with pytest.raises(SnapshotQuotaExceeded) as too_many:
        snapshot_create(actor=actor, workspace=source, name="second")
    assert too_many.value.code == "snapshot_quota_exceeded"
    assert too_many.value.extra["max"] == 1


def _images_of(tenant) -> list[dict]:
    import docker

    return docker.from_env().api.images(filters={"label": f"devbench.tenant={tenant.slug}"})


def test_delete_is_refused_while_in_use_then_removes_the_image(live_worker, actor, kill_after):
    source = spawn(actor, kill_after, image=BUSYBOX)
    snapshot = snapshot_create(actor=actor, workspace=source, name="s")
    copy = spawn(actor, kill_after, snapshot=snapshot.public_id)
    with pytest.raises(SnapshotInUse) as in_use:
        snapshot_delete(actor=actor, snapshot=snapshot)
    assert in_use.value.code == "snapshot_in_use"
    assert in_use.value.extra["workspaces"] == [copy.public_id]
    workspace_kill(actor=actor, workspace=copy, force=True)
    snapshot_delete(actor=actor, snapshot=snapshot)
    assert not Snapshot.objects.filter(pk=snapshot.pk).exists()
    with pytest.raises(ImageNotFound):
        get_driver().image_inspect(snapshot.image_ref)


def test_another_tenant_cannot_see_or_use_a_snapshot(
    live_worker, actor, tenant, other_tenant, kill_after
):
    source = spawn(actor, kill_after, image=BUSYBOX)
    snapshot = snapshot_create(actor=actor, workspace=source, name="mine")
    other = system_principal(other_tenant)
    assert list(snapshot_list(actor=other)) == []
    with pytest.raises(SnapshotNotFound):
        snapshot_get(actor=other, ref=snapshot.public_id)
    with pytest.raises(SnapshotNotFound):
        workspace_spawn(actor=other, snapshot=snapshot.public_id)
    with pytest.raises(NotFound):
        snapshot_delete(actor=other, snapshot=snapshot)
    with pytest.raises(NotFound):
        workspace_fork(actor=other, workspace=source)
    # Not by reference, not by image id, even with a policy allowing every image.
    TenantPolicy.objects.filter(tenant=other_tenant).update(allowed_images=["*"])
    with pytest.raises(PolicyDenied) as by_ref:
        workspace_spawn(actor=other, image=snapshot.image_ref)
    assert by_ref.value.code == "image_not_allowed"
    for ref in (snapshot.image_id, f"busybox@{snapshot.image_id}"):
        with pytest.raises(ImageNotFound):
            workspace_spawn(actor=other, image=ref)
    # Nor by the owner, except through the snapshot id.
    with pytest.raises(PolicyDenied):
        workspace_spawn(actor=actor, image=snapshot.image_ref)
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()
