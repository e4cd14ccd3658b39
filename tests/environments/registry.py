"""A real image registry on 127.0.0.1 (Debian's docker-registry) with htpasswd authentication.

Started per test module on a free port with its storage in a temporary
directory; the engine trusts registries on 127.0.0.0/8 without TLS. The
package comes from scripts/host-setup (test purpose).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.processes import ManagedProcess

REGISTRY_BIN = "docker-registry"
CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: {delete}
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
auth:
  htpasswd:
    realm: devbench-test
    path: {root}/htpasswd
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RegistryProcess(ManagedProcess):
    what = "docker-registry"

    def __init__(self, *, username: str, password: str, delete: bool = True) -> None:
        binary = shutil.which(REGISTRY_BIN) or shutil.which(REGISTRY_BIN, path="/usr/bin")
        if binary is None:
            raise RuntimeError(
                "docker-registry is not installed: run scripts/host-setup --services "
                "(it installs Debian's docker-registry and apache2-utils)."
            )
        self.root = Path(tempfile.mkdtemp(prefix="devbench-registry-"))
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.username, self.password = username, password
        hashed = subprocess.run(
            ["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True
        ).stdout
        (self.root / "htpasswd").write_text(hashed)
        config = self.root / "config.yml"
        config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                secret=secrets.token_hex(16),
                # Deleting manifests (snapshot_delete, template_delete) needs it on.
                delete="true" if delete else "false",
            )
        )
        super().__init__([binary, "serve", str(config)], env={}, log_name=f"registry-{self.port}")

    def is_ready(self) -> bool:
        try:
            urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False
        return False

    def manifest_exists(self, ref: str) -> bool:
        """Whether ``host/repository@sha256:…`` is still in the registry."""
        import base64

        name, _, digest = ref.partition("@")
        repository = name.split("/", 1)[1]
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{digest}",
            method="HEAD",
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{self.username}:{self.password}".encode()).decode(),
                "Accept": "application/vnd.docker.distribution.manifest.v2+json",
            },
        )
        try:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - http://127.0.0.1 only
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)
