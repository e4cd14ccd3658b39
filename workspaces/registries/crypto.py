"""Registry passwords encrypted at rest: Fernet keys derived from SECRET_KEY with HKDF.

A rotated SECRET_KEY keeps old passwords readable while the previous key is in
SECRET_KEY_FALLBACKS (MultiFernet decrypts with any, encrypts with the first).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from core.errors import DevBenchError

_INFO = b"devbench registry credentials v1"


class CredentialsUnreadable(DevBenchError):
    code = "registry_credentials_unreadable"
    http_status = 500
    default_message = (
        "The stored registry password cannot be decrypted (SECRET_KEY changed without "
        "SECRET_KEY_FALLBACKS): set the registry's password again."
    )


def _fernet(secret: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(s) for s in secrets])


def encrypt(plain: str) -> str:
    return _keys().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialsUnreadable() from exc
