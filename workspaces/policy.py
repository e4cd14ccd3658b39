"""What a tenant policy allows a spawn to ask for: limits and time to live.

The policy's values are both the defaults and the ceilings: a caller may ask
for less, never for more (``policy_denied`` names the limit and the ceiling).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import PolicyDenied
from tenants.models import TenantPolicy
from workspaces.errors import InvalidLimits, InvalidTtl, PolicyLimitExceeded, TtlWithPersistent

# Floors below which a workspace cannot even start its keeper process.
MIN_MEMORY_MB = 16
MIN_CPUS = 0.01
MIN_PIDS = 8


@dataclass(frozen=True)
class WorkspaceLimits:
    memory_mb: int
    cpus: float
    pids: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ceilings(policy: TenantPolicy) -> WorkspaceLimits:
    return WorkspaceLimits(
        memory_mb=int(policy.memory_limit_mb),
        cpus=float(policy.cpu_limit),
        pids=int(policy.pids_limit),
    )


def _denied(limit: str, requested: Any, ceiling: Any) -> PolicyDenied:
    return PolicyLimitExceeded(
        f"The tenant policy allows at most {ceiling} for '{limit}' (asked for {requested}).",
        limit=limit,
        requested=requested,
        max=ceiling,
    )


def limits_resolve(*, policy: TenantPolicy, requested: Mapping[str, Any] | None) -> WorkspaceLimits:
    """The limits a workspace gets: what was asked for, within the policy's ceilings."""
    ceilings = _ceilings(policy)
    asked = {k: v for k, v in dict(requested or {}).items() if v is not None}
    unknown = sorted(set(asked) - {"memory_mb", "cpus", "pids"})
    if unknown:
        raise InvalidLimits(
            f"Unknown limit(s): {', '.join(unknown)}; use memory_mb, cpus, pids.", unknown=unknown
        )
    floors = {"memory_mb": MIN_MEMORY_MB, "cpus": MIN_CPUS, "pids": MIN_PIDS}
    values: dict[str, Any] = {}
    for name, ceiling in ceilings.as_dict().items():
        value = asked.get(name, ceiling)
        try:
            value = float(value) if name == "cpus" else int(value)
        except (TypeError, ValueError) as exc:
            raise InvalidLimits(f"Limit '{name}' must be a number.", limit=name) from exc
        if value < floors[name]:
            raise InvalidLimits(
                f"Limit '{name}' must be at least {floors[name]}.", limit=name, min=floors[name]
            )
        if value > ceiling:
            raise _denied(name, value, ceiling)
        values[name] = value
    return WorkspaceLimits(**values)


def ttl_resolve(*, policy: TenantPolicy, persistent: bool, ttl_s: int | None) -> int | None:
    """Seconds until an ephemeral workspace expires; persistent ones never do."""
    if persistent:
        if ttl_s is not None:
            raise TtlWithPersistent("A persistent workspace does not expire: leave ttl_s unset.")
        return None
    if ttl_s is None:
        return min(policy.default_ttl_s, policy.max_ttl_s) or None
    if ttl_s <= 0:
        raise InvalidTtl("ttl_s must be a positive number of seconds.")
    if ttl_s > policy.max_ttl_s:
        raise _denied("ttl_s", ttl_s, policy.max_ttl_s)
    return ttl_s
