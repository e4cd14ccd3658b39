"""Cost of authenticating one request with an OIDC JWT access token.

Runs in the embedded mode (SQLite in a temporary directory) against the real test
OpenID provider, and times, in one run:

* ``authenticate_bearer`` with a provider-issued JWT (keys cached: no network call),
* ``authenticate_bearer`` with a DevBench API token (for comparison),
* bare ``jwt.decode`` of the same JWT with the key already in hand (the floor).

Prints p50/p95 in microseconds and the ratios. Usage: .venv/bin/python bench/oidc_bearer.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(name, None)
os.environ["DEVBENCH_VAR_DIR"] = tempfile.mkdtemp(prefix="devbench-bench-")
os.environ["DJANGO_SETTINGS_MODULE"] = "devbench_site.settings"
os.environ["LOG_LEVEL"] = "WARNING"
os.environ["AUDIT_LOG_LEVEL"] = "WARNING"


def _timings(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(50, n)):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main(n: int) -> None:
    from tests.identity.oidc import API_AUDIENCE, cli_tokens, start_provider

    provider = start_provider()
    try:
        os.environ["DEVBENCH_OIDC_PROVIDERS"] = json.dumps([provider.app_config()])
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        import jwt

        from tenants.auth import authenticate_bearer
        from tenants.models import MembershipRule
        from tenants.principal import operator_principal
        from tenants.services import api_token_create, membership_set, tenant_create

        acme = tenant_create(slug="acme")
        MembershipRule.objects.create(
            provider_id="devbench-test", value="acme-admins", tenant=acme, role="admin"
        )
        access = cli_tokens(provider, login="alice")["access_token"]
        principal = authenticate_bearer(f"Bearer {access}", tenant_slug="acme")
        operator = operator_principal(acme, name="bench")
        membership_set(actor=operator, user=principal.user, role="admin")
        _, api_raw = api_token_create(actor=operator, user=principal.user, name="bench")
        key = jwt.PyJWK(
            provider.key.public_key()
            and json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider.key.public_key()))
        )

        results = {
            "oidc_jwt": _timings(
                lambda: authenticate_bearer(f"Bearer {access}", tenant_slug="acme"), n
            ),
            "api_token": _timings(lambda: authenticate_bearer(f"Bearer {api_raw}"), n),
            "raw_pyjwt": _timings(
                lambda: jwt.decode(
                    access,
                    key=key,
                    algorithms=["RS256"],
                    audience=API_AUDIENCE,
                    issuer=provider.issuer,
                ),
                n,
            ),
        }
    finally:
        provider.stop()
    floor = _p(results["raw_pyjwt"], 50)
    print(f"n={n} (microseconds per call)")
    for name, values in results.items():
        p50, p95 = _p(values, 50), _p(values, 95)
        print(f"{name:10s} p50={p50:8.1f} p95={p95:8.1f} ratio_p50_vs_raw_pyjwt={p50 / floor:5.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
