"""The registry's own HTTP API (distribution v2), for what the engine cannot do: delete a
manifest by digest when its snapshot or template is deleted.

Credentials go in the ``Authorization`` header only (Basic, or a Bearer token fetched
from the registry's token service with Basic): never into a URL, a message or a log
line. Like the engine, registries on a loopback address may answer plain HTTP.
"""

from __future__ import annotations

import ipaddress
import logging
import re

import requests

from workspaces.registries.errors import RegistryDeleteFailed
from workspaces.runtime.base import RegistryAuth, RegistryAuthFailed, RegistryUnreachable

logger = logging.getLogger(__name__)

_TIMEOUT_S = 30
_BEARER_RE = re.compile(r'(\w+)="([^"]*)"')


def _is_loopback(host: str) -> bool:
    name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split_ref(ref: str) -> tuple[str, str, str]:
    """``host/repository@sha256:…`` → (host, repository, digest)."""
    name, _, digest = ref.partition("@")
    host, _, repository = name.partition("/")
    if not (host and repository and digest.startswith("sha256:")):
        raise ValueError(f"not a registry reference pinned by digest: {ref!r}")
    return host, repository, digest


def _bearer_token(
    session: requests.Session, challenge: str, auth: RegistryAuth | None, host: str
) -> str:
    fields = dict(_BEARER_RE.findall(challenge))
    realm = fields.pop("realm", "")
    if not realm:
        raise RegistryUnreachable(
            f"The registry {host} asked for a token without naming its token service.",
            extra={"registry": host},
        )
    basic = (auth.username, auth.password) if auth else None
    response = session.get(realm, params=fields, auth=basic, timeout=_TIMEOUT_S)
    if response.status_code in (401, 403):
        raise _auth_failed(host)
    response.raise_for_status()
    body = response.json()
    return str(body.get("token") or body.get("access_token") or "")


def _auth_failed(host: str) -> RegistryAuthFailed:
    return RegistryAuthFailed(
        f"The registry {host} refused the credentials: check the registry's username and password.",
        extra={"registry": host},
    )


def _delete(session: requests.Session, url: str, auth: RegistryAuth | None, host: str) -> int:
    basic = (auth.username, auth.password) if auth else None
    response = session.delete(url, auth=basic, timeout=_TIMEOUT_S)
    challenge = response.headers.get("WWW-Authenticate", "")
    if response.status_code == 401 and challenge.lower().startswith("bearer"):
        token = _bearer_token(session, challenge, auth, host)
        response = session.delete(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=_TIMEOUT_S
        )
    return response.status_code


def manifest_delete(ref: str, *, auth: RegistryAuth | None) -> bool:
    """Delete the manifest ``host/repository@sha256:…`` from its registry. True if it was
    deleted, False if the registry no longer had it; RegistryAuthFailed,
    RegistryUnreachable or RegistryDeleteFailed (the registry refuses deletes) otherwise.
    """
    host, repository, digest = _split_ref(ref)
    schemes = ("https", "http") if _is_loopback(host) else ("https",)
    status = 0
    with requests.Session() as session:
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/{repository}/manifests/{digest}"
            try:
                status = _delete(session, url, auth, host)
                break
            except requests.RequestException as exc:
                if scheme == schemes[-1]:
                    raise RegistryUnreachable(
                        f"The registry {host} could not be reached to delete '{ref}': "
                        f"{type(exc).__name__}.",
                        extra={"registry": host, "image": ref},
                    ) from None
    if status in (200, 202):
        logger.info("deleted %s from the registry %s", ref, host)
        return True
    if status == 404:
        return False
    if status in (401, 403):
        raise _auth_failed(host)
    reason = (
        "the registry does not allow deletes (Debian's docker-registry: set "
        "storage.delete.enabled: true)"
        if status == 405
        else f"the registry answered HTTP {status}"
    )
    raise RegistryDeleteFailed(
        f"Could not delete '{ref}' from the registry {host}: {reason}.",
        extra={"registry": host, "image": ref, "status": status},
    )
