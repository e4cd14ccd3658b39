"""The tar header checksum tarfile uses in this project equals the library's own."""

from __future__ import annotations

import io
import os

import pytest

from workspaces.filesystem.tario import new_info
from workspaces.filesystem.tarlib import header_checksums, library_checksums, tarfile


def test_the_checksums_equal_the_libraries_for_any_header_bytes() -> None:
    headers = [os.urandom(512) for _ in range(300)]
    headers += [bytes([b]) * 512 for b in (0, 0x20, 0x7F, 0x80, 0xFF)]
    headers.append(new_info("ü/" + "x" * 200, size=10**10).tobuf(tarfile.PAX_FORMAT)[:512])
    for buf in headers:
        assert header_checksums(buf) == library_checksums(buf)
    assert tarfile.calc_chksums is header_checksums  # type: ignore[attr-defined]


def test_archives_still_read_and_refuse_a_damaged_header() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(3):  # a header and one block of data each
            tar.addfile(new_info(f"f{i}", size=2), io.BytesIO(b"ok"))
    data = bytearray(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r|") as tar:
        assert [m.name for m in tar] == ["f0", "f1", "f2"]
    damaged = bytearray(data)
    damaged[1024 + 1] ^= 0x01  # a byte of the second header's name
    with tarfile.open(fileobj=io.BytesIO(bytes(damaged)), mode="r|") as tar:
        assert [m.name for m in tar] == ["f0"]  # tarfile ends a stream at a bad header
    damaged = bytearray(data)
    damaged[1] ^= 0x01  # the first header's
    with pytest.raises(tarfile.ReadError, match="bad checksum"):
        tarfile.open(fileobj=io.BytesIO(bytes(damaged)), mode="r|")
