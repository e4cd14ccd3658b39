"""Scrub secrets and personal data from audit details before they are stored or logged.

* Values under secret-looking keys (``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``,
  ``*KEY*``, authorization, cookie, credential…) become ``[redacted]``.
* In strings: ``NAME=value`` pairs with a secret-looking NAME (environment
  entries, command lines), ``Bearer …`` credentials, DevBench API tokens and
  JWTs are redacted; email addresses are masked (``a***@example.com``).

Redaction is deliberately eager: a wrongly hidden value costs a look in the
engine logs, a leaked one costs a rotation.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

_SECRET_NAME = re.compile(
    r"token|secret|passw|pwd|key|authorization|cookie|credential|private|session",
    re.IGNORECASE,
)
# Names that contain a secret word but carry no secret.
_NOT_SECRET = frozenset({"idempotency_key", "kid", "token_kind", "token_prefix", "key_id"})

_ENV_PAIR = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=([^\s'\";&|]*)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_API_TOKEN = re.compile(r"\bdbt_[A-Za-z0-9]+_[A-Za-z0-9_-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")
_SECRET_FLAG = re.compile(r"(?i)(--?(?:password|passwd|token|secret|api-key|apikey)[= ])(\S+)")


def is_secret_name(name: str) -> bool:
    return name.lower() not in _NOT_SECRET and bool(_SECRET_NAME.search(name))


def mask_email(text: str) -> str:
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def redact_text(text: str) -> str:
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _API_TOKEN.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _SECRET_FLAG.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _ENV_PAIR.sub(
        lambda m: f"{m.group(1)}={REDACTED}" if is_secret_name(m.group(1)) else m.group(0), text
    )
    return mask_email(text)


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A redacted copy of a JSON-like value (dicts, lists, strings, scalars)."""
    if _depth > 20:
        return REDACTED
    if isinstance(value, dict):
        return {
            str(k): REDACTED
            if is_secret_name(str(k)) and v not in (None, "")
            else redact(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, _depth=_depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))
