"""The database pool's series: gauges follow the pool, errors counted once each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg_pool
import pytest
from django.db import connection
from prometheus_client import REGISTRY
from psycopg.conninfo import make_conninfo

from core import metrics


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def pool(db: Any) -> Iterator[psycopg_pool.ConnectionPool]:
    """A real pool of one connection to the test database."""
    test_db = connection.settings_dict
    opened = psycopg_pool.ConnectionPool(
        make_conninfo(
            dbname=test_db["NAME"],
            user=test_db["USER"],
            password=test_db["PASSWORD"],
            host=test_db["HOST"],
            port=test_db["PORT"] or 5432,
        ),
        min_size=1,
        max_size=1,
        open=True,
    )
    opened.wait()
    try:
        yield opened
    finally:
        opened.close()


def test_gauges_follow_the_pool_and_errors_count_once(pool: psycopg_pool.ConnectionPool) -> None:
    sampler = metrics._PoolSampler()
    errors_before = _value("devbench_db_pool_errors_total")
    sampler.sample(pool)
    assert _value("devbench_db_pool_connections", state="size") == 1
    assert _value("devbench_db_pool_connections", state="available") == 1
    with pool.connection():
        sampler.sample(pool)
        assert _value("devbench_db_pool_connections", state="available") == 0
        with pytest.raises(psycopg_pool.PoolTimeout):
            pool.getconn(timeout=0.05)  # the one connection is taken: a failed request
    for _ in range(3):  # the pool's running total is 1 at each of these samples
        sampler.sample(pool)
    assert _value("devbench_db_pool_errors_total") == errors_before + 1
    assert _value("devbench_db_pool_connections", state="available") == 1


def test_an_unchanged_pool_writes_nothing(
    pool: psycopg_pool.ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = metrics._PoolSampler()
    sampler.sample(pool)
    writes: list[float] = []
    for state, gauge in sampler._gauges.items():
        monkeypatch.setattr(gauge, "set", lambda value, state=state: writes.append(value))
    sampler.sample(pool)
    assert writes == []
    with pool.connection():
        sampler.sample(pool)
    assert writes == [0]  # only "available" changed
