"""A node agent's upload written into a file (``_LengthBody.write_into``): exactly the
bytes asked for, whether what the request's head reader already took in, the kernel's
splice or (over TLS, where nothing can be spliced) reads through Python moves them, and
the rest of the body is left to read after it."""

from __future__ import annotations

import os
import socket
import tempfile
import threading

import pytest

from workspaces.runtime import agent


@pytest.mark.parametrize("spliceable", [True, False])
def test_the_asked_bytes_go_into_the_file_and_the_rest_stays(
    spliceable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not spliceable:  # as over TLS: no splice from an SSL socket
        monkeypatch.setattr(agent._LengthBody, "spliceable", property(lambda self: False))
    body = os.urandom(3 * 1024 * 1024 + 11)
    count = 2 * 1024 * 1024 + 5
    left, right = socket.socketpair()

    def send() -> None:
        with left:
            left.sendall(body)

    sender = threading.Thread(target=send)
    with right, tempfile.TemporaryFile() as file:
        right.settimeout(10)
        rfile = right.makefile("rb")
        sender.start()
        first = rfile.read1(100)  # the head's reader has taken some in already
        upload = agent._LengthBody(rfile, right, len(body) - len(first))
        upload.write_into(file.fileno(), count - len(first))
        rest = b"".join(upload)
        sender.join()
        file.seek(0)
        assert first + file.read() == body[:count]
        assert rest == body[count:]
