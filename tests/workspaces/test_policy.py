"""Limits and time to live within the tenant policy."""

from decimal import Decimal

import pytest

from core.errors import PolicyDenied, ValidationFailed
from tenants.models import TenantPolicy
from workspaces.policy import WorkspaceLimits, limits_resolve, ttl_resolve


def _policy(**kw):
    defaults = {"memory_limit_mb": 512, "cpu_limit": Decimal("1.00"), "pids_limit": 256}
    return TenantPolicy(**{**defaults, **kw})


def test_defaults_are_the_policy_ceilings():
    assert limits_resolve(policy=_policy(), requested=None) == WorkspaceLimits(512, 1.0, 256)


def test_caller_may_ask_for_less():
    got = limits_resolve(policy=_policy(), requested={"memory_mb": 64, "cpus": 0.5, "pids": None})
    assert got == WorkspaceLimits(memory_mb=64, cpus=0.5, pids=256)


@pytest.mark.parametrize(
    ("asked", "limit", "ceiling"),
    [
        ({"memory_mb": 513}, "memory_mb", 512),
        ({"cpus": 1.5}, "cpus", 1.0),
        ({"pids": 1000}, "pids", 256),
    ],
)
def test_more_than_the_policy_is_denied_naming_the_limit(asked, limit, ceiling):
    with pytest.raises(PolicyDenied) as excinfo:
        limits_resolve(policy=_policy(), requested=asked)
    assert excinfo.value.code == "policy_denied"
    assert excinfo.value.extra["limit"] == limit
    assert excinfo.value.extra["max"] == ceiling
    assert limit in excinfo.value.message


@pytest.mark.parametrize(
    "asked", [{"memory_mb": 4}, {"pids": 1}, {"cpus": 0}, {"disk_gb": 1}, {"memory_mb": "lots"}]
)
def test_nonsense_limits_are_validation_errors(asked):
    with pytest.raises(ValidationFailed) as excinfo:
        limits_resolve(policy=_policy(), requested=asked)
    assert excinfo.value.code == "invalid_limits"


def test_ttl_rules():
    policy = _policy(default_ttl_s=3600, max_ttl_s=7200)
    assert ttl_resolve(policy=policy, persistent=False, ttl_s=None) == 3600
    assert ttl_resolve(policy=policy, persistent=False, ttl_s=60) == 60
    assert ttl_resolve(policy=policy, persistent=True, ttl_s=None) is None
    with pytest.raises(PolicyDenied) as denied:
        ttl_resolve(policy=policy, persistent=False, ttl_s=7201)
    assert denied.value.extra == {"limit": "ttl_s", "requested": 7201, "max": 7200}
    with pytest.raises(ValidationFailed) as excinfo:
        ttl_resolve(policy=policy, persistent=True, ttl_s=60)
    assert excinfo.value.code == "ttl_with_persistent"
    with pytest.raises(ValidationFailed) as excinfo:
        ttl_resolve(policy=policy, persistent=False, ttl_s=0)
    assert excinfo.value.code == "invalid_ttl"
