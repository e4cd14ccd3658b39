"""Schemathesis against /api/v1/openapi.json of a live production-mode server.

Daphne serves the test database (PostgreSQL) with Redis and a real Celery
worker beside it; schemathesis reads the published schema and sends, for every
operation, data the schema admits (positive) and data it refuses (negative).
Zero tolerance: no server error, every status, content type, header and body
as the schema documents, and everything the schema refuses is refused (4xx).

Bounded for CI: a fixed number of examples per operation and mode, no
shrinking, derandomized. The tenant's quota is 0, so no case starts a container.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tenants.models import TenantPolicy
from tests.factories import ApiTokenFactory, TenantFactory
from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EXAMPLES_PER_OPERATION = 20
UNTHROTTLED = {
    "DEVBENCH_RATE_LIMIT_PER_TOKEN": "100000/minute",
    "DEVBENCH_RATE_LIMIT_PER_TENANT": "100000/minute",
}
# Archive uploads are bytes, like application/octet-stream.
schemathesis.serializer.alias(["application/x-tar", "application/gzip"], "application/octet-stream")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    # Every operation's examples come from one token within a minute or two: more than
    # the production per-token limit, which tests/test_rate_limits.py covers.
    daphne = DaphneServer(db_name, extra_env=UNTHROTTLED)
    yield daphne
    daphne.stop()


@pytest.fixture
def bearer(live_worker: Any) -> dict[str, str]:
    tenant = TenantFactory()
    TenantPolicy.objects.update_or_create(tenant=tenant, defaults={"max_workspaces": 0})
    token = ApiTokenFactory(tenant=tenant, scopes=["read", "write"])
    return {"Authorization": f"Bearer {token.raw}"}


def test_api_matches_its_schema(server: DaphneServer, bearer: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(server.url("/api/v1/openapi.json"))
    base_url = server.url("").rstrip("/")  # the schema's paths start with /api/v1
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):  # every operation's schema is readable
            pytest.fail(f"unreadable operation: {result.err()}")
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(base_url=base_url, headers=bearer, checks=CHECKS, timeout=60)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
