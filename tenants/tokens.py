"""API token format and hashing.

A token reads ``dbt_<prefix>_<secret>``: the 8-character prefix is public
(shown in the admin, used to find the row), the secret is 43 URL-safe
characters of randomness. Tokens are high-entropy, so a salted SHA-256 is
enough and keeps authentication cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

TOKEN_PREFIX = "dbt_"  # noqa: S105 - a public marker, not a secret
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN_RE = re.compile(r"^dbt_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class TokenParts:
    prefix: str
    secret: str


def generate() -> tuple[str, TokenParts]:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{prefix}_{secret}", TokenParts(prefix=prefix, secret=secret)


def parse(raw: str) -> TokenParts | None:
    match = _TOKEN_RE.match(raw)
    if match is None:
        return None
    return TokenParts(prefix=match.group(1), secret=match.group(2))


def looks_like_api_token(raw: str) -> bool:
    return raw.startswith(TOKEN_PREFIX)


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_secret(secret: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def secret_matches(secret: str, salt: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret, salt), expected_hash)
