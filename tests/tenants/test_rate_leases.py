"""A process's leased rate-limit tokens, on a clock the tests move."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tenants.rate_leases import BucketSpec, LeasedTokens, lease_max, lease_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BUSY = BucketSpec("token:busy", limit=6400, window_s=60)  # leases of up to 64, for 1 s


def serve(leases: LeasedTokens, bucket: BucketSpec) -> str:
    """One request: served from the lease, or refilled with what it asked for."""
    reservation = leases.reserve([bucket])
    if reservation.local:
        return "local"
    [(asked_for, size)] = reservation.refill
    leases.settle(asked_for, size, size)
    return f"refill {size}"


def test_lease_bounds_follow_the_limit() -> None:
    assert lease_max(63) == 1  # small limits are counted exactly
    assert lease_max(1200) == 37
    assert lease_max(10**8) == 64
    assert lease_seconds(60) == 1.0
    assert lease_seconds(1) == 1 / 60


def test_a_busy_bucket_is_served_from_its_lease_until_it_runs_out() -> None:
    clock = Clock()
    leases = LeasedTokens(clock)
    assert serve(leases, BUSY) == "refill 1"  # no rate seen yet: one token
    clock.now += 0.002
    assert serve(leases, BUSY) == "refill 64"  # one request in 2 ms: as large as allowed
    for _ in range(63):
        clock.now += 0.001
        assert serve(leases, BUSY) == "local"
    assert leases.held(BUSY.key) == 0
    assert serve(leases, BUSY) == "refill 64"


def test_a_slow_bucket_leases_one_token_at_a_time() -> None:
    clock = Clock()
    leases = LeasedTokens(clock)
    assert [serve(leases, BUSY) for _ in range(1)] == ["refill 1"]
    for _ in range(5):
        clock.now += 1.0  # one request a second: nothing to lease ahead
        assert serve(leases, BUSY) == "refill 1"
    clock.now += 0.25  # four a second: about four
    assert serve(leases, BUSY) == "refill 4"


def test_leased_tokens_expire() -> None:
    clock = Clock()
    leases = LeasedTokens(clock)
    serve(leases, BUSY)
    clock.now += 0.01
    assert serve(leases, BUSY) == "refill 64"
    assert leases.held(BUSY.key) == 63
    clock.now += lease_seconds(BUSY.window_s)
    assert leases.held(BUSY.key) == 0
    assert serve(leases, BUSY).startswith("refill")


def test_small_limits_are_never_leased() -> None:
    clock = Clock()
    leases = LeasedTokens(clock)
    exact = BucketSpec("token:exact", limit=50, window_s=60)
    for _ in range(10):
        clock.now += 0.001
        assert serve(leases, exact) == "refill 1"


def test_a_refused_request_gives_its_tokens_back() -> None:
    clock = Clock()
    leases = LeasedTokens(clock)
    tenant = BucketSpec("tenant:1", limit=50, window_s=60)
    serve(leases, BUSY)
    clock.now += 0.01
    serve(leases, BUSY)
    reservation = leases.reserve([BUSY, tenant])
    assert reservation.local == [BUSY] and [b for b, _ in reservation.refill] == [tenant]
    assert leases.held(BUSY.key) == 62
    leases.give_back(reservation.local)  # the tenant's bucket refused the request
    assert leases.held(BUSY.key) == 63


def test_requests_wait_for_the_lease_on_its_way_and_are_served_from_it() -> None:
    """A burst must not lease the largest size once per request: requests arriving while
    their bucket's lease is being fetched wait for it and take their token from it."""
    clock = Clock()
    leases = LeasedTokens(clock, wait_s=30)
    serve(leases, BUSY)
    clock.now += 0.002
    first = leases.reserve([BUSY])
    assert first.refill == [(BUSY, 64)]
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(leases.reserve, [BUSY]) for _ in range(3)]
        time.sleep(0.1)
        assert not any(w.done() for w in waiting)  # nobody asks Redis meanwhile
        leases.settle(BUSY, 64, 64)
        served = [w.result(timeout=10) for w in waiting]
    assert [(r.local, r.refill) for r in served] == [([BUSY], [])] * 3
    assert leases.held(BUSY.key) == 60


def test_a_lease_too_small_for_the_waiting_requests_is_followed_by_one_more() -> None:
    clock = Clock()
    leases = LeasedTokens(clock, wait_s=30)
    serve(leases, BUSY)
    clock.now += 0.002
    assert leases.reserve([BUSY]).refill == [(BUSY, 64)]
    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(leases.reserve, [BUSY]) for _ in range(3)]
        time.sleep(0.1)
        leases.settle(BUSY, 64, 2)  # the bucket had room for two: one for a waiter
        time.sleep(0.1)
        done = [w for w in waiting if w.done()]
        # One waiter took the token; another leases next; the third waits for that lease.
        assert sorted(len(w.result().local) for w in done) == [0, 1]
        [(_, size)] = next(w.result() for w in done if w.result().refill).refill
        assert size > 1
        leases.settle(BUSY, size, size)
        assert [w.result(timeout=10).local for w in waiting if w not in done] == [[BUSY]]


def test_a_request_waiting_for_one_lease_leases_nothing_meanwhile() -> None:
    """A request whose tenant's lease is on its way waits before it leases its
    credential's: others of that credential are not kept waiting behind its wait."""
    clock = Clock()
    leases = LeasedTokens(clock, wait_s=30)
    credential, tenant = BucketSpec("token:c", 6400, 60), BucketSpec("tenant:t", 6400, 60)
    for bucket in (credential, tenant):
        serve(leases, bucket)
    clock.now += 0.002
    assert leases.reserve([tenant]).refill == [(tenant, 64)]  # on its way
    with ThreadPoolExecutor(1) as pool:
        both = pool.submit(leases.reserve, [credential, tenant])
        time.sleep(0.1)
        assert not both.done()
        alone = leases.reserve([credential])  # not kept waiting by the request above
        assert alone.refill == [(credential, 64)]
        leases.settle(tenant, 64, 64)
        time.sleep(0.1)
        assert not both.done()  # now it waits for the credential's lease, then takes one
        leases.settle(credential, 64, 64)
        assert both.result(timeout=10).local == [credential, tenant]


def test_a_wait_for_a_lease_is_bounded() -> None:
    """A lease that takes too long (Redis slow) is not waited for past ``wait_s``: the
    request asks for its own token, and only one."""
    clock = Clock()
    leases = LeasedTokens(clock, wait_s=0.05)
    serve(leases, BUSY)
    clock.now += 0.002
    assert leases.reserve([BUSY]).refill == [(BUSY, 64)]
    assert leases.reserve([BUSY]).refill == [(BUSY, 1)]


def test_a_lease_that_was_not_granted_lets_the_next_request_lease() -> None:
    clock = Clock()
    leases = LeasedTokens(clock)
    serve(leases, BUSY)
    clock.now += 0.002
    assert leases.reserve([BUSY]).refill == [(BUSY, 64)]
    leases.settle(BUSY, 64, 0)  # refused, or Redis did not answer
    assert leases.held(BUSY.key) == 0
    clock.now += 0.002
    [(_, size)] = leases.reserve([BUSY]).refill
    assert size > 1
