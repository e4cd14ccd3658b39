"""Rate-limit tokens a web process takes from Redis in advance, so a busy credential
does not cost one Redis call per request.

A request needs one token from each bucket of its principal (credential, tenant).
When this process holds none for a bucket, the request asks Redis for a *lease*:
the bucket is charged ``size`` hits at once (falling back to one if the bucket has
no room for ``size``), the request takes one and the rest serve this process's next
requests of that bucket for :data:`LEASE_FRACTION_OF_WINDOW` of the limit's window
(at most :data:`LEASE_MAX_S`).

Why this keeps the limit:

* Nothing is admitted that Redis did not count first, so all processes together
  never admit more than the limit.
* Leased tokens are counted when leased, a little earlier than they are used: a
  sliding window then sees them as older than they are, never younger.
* The price is tokens leased and not used before the lease expires: they stay
  counted. The size follows the rate this process has recently seen for the bucket
  (a credential sending one request a second leases one token at a time), and is at
  most a 32nd of the limit (:data:`LEASE_MAX_SHARE`, capped at :data:`LEASE_MAX`),
  so a client whose rate drops can be refused at most that many requests early per
  web process. Limits under 64 requests a window are never leased: counted exactly.
* A bucket has at most one lease on its way from Redis per process: requests that
  find no token left while one is being fetched wait for it (at most
  :data:`LEASE_WAIT_S`) and take theirs from it; if it has none for them, one of them
  leases next and the others wait again, and one whose wait runs out asks Redis for one
  token. Without this a burst of concurrent requests each leased the largest size, and
  a credential could be refused after a few dozen requests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LEASE_MAX = 64
LEASE_MAX_SHARE = 32  # a lease is at most 1/32 of the bucket's limit
LEASE_MAX_S = 1.0
LEASE_FRACTION_OF_WINDOW = 1 / 60
# How long a request waits for its bucket's lease on its way before asking Redis for its
# own token: about a Redis round trip on a busy machine, far under the storage timeout.
LEASE_WAIT_S = 0.05
# A process forgets buckets it has not used for this long once it holds this many.
_PRUNE_ABOVE = 10_000


def lease_max(limit: int) -> int:
    """The largest lease of a bucket allowing ``limit`` hits per window (1: none)."""
    return max(1, min(LEASE_MAX, limit // LEASE_MAX_SHARE))


def lease_seconds(window_s: float) -> float:
    return min(LEASE_MAX_S, window_s * LEASE_FRACTION_OF_WINDOW)


@dataclass
class _Lease:
    remaining: int = 0
    expires_at: float = 0.0
    # What the next lease's size is estimated from: hits since the last refill.
    refilled_at: float = 0.0
    hits_since_refill: int = 0
    refills: int = 0
    # A request of this process is asking Redis for a lease of this bucket.
    leasing: bool = False

    def holds(self, now: float) -> bool:
        """Whether an unexpired leased token is left."""
        return self.remaining > 0 and now < self.expires_at


@dataclass(frozen=True)
class BucketSpec:
    """One bucket of a request: its identity, limit and lease bounds."""

    key: str  # scope and identifier: unique per bucket
    limit: int
    window_s: float

    @property
    def largest_lease(self) -> int:
        return lease_max(self.limit)


@dataclass
class Reservation:
    """Which of a request's buckets this process served, and which need Redis."""

    local: list[BucketSpec] = field(default_factory=list)
    # (bucket, lease size to ask for), in the request's bucket order
    refill: list[tuple[BucketSpec, int]] = field(default_factory=list)


class LeasedTokens:
    """One process's leases (per limiter configuration), safe across threads."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, wait_s: float = LEASE_WAIT_S
    ) -> None:
        self._clock = clock
        self._wait_s = wait_s
        self._lock = threading.Condition()  # notified when a lease settles
        self._leases: dict[str, _Lease] = {}

    def reserve(self, buckets: list[BucketSpec]) -> Reservation:
        """Take one leased token of each bucket that has one (waiting for a lease on its
        way); say what the others' lease should be. Undo with :meth:`give_back` if the
        request is refused."""
        reservation = Reservation()
        with self._lock:
            now = self._clock()
            leases = [self._hit(bucket, now) for bucket in buckets]
            # All waiting comes first, while this request is leasing nothing: a request
            # that leases goes to Redis at once, never keeping its waiters waiting longer.
            now = self._await_leases(leases, now)
            for bucket, lease in zip(buckets, leases, strict=True):
                if lease.holds(now):
                    lease.remaining -= 1
                    reservation.local.append(bucket)
                else:
                    size = 1 if lease.leasing else self._size(bucket, lease, now)
                    lease.leasing = lease.leasing or size > 1
                    reservation.refill.append((bucket, size))
        return reservation

    def _hit(self, bucket: BucketSpec, now: float) -> _Lease:
        """``bucket``'s lease (new if none), with this request's hit counted."""
        lease = self._leases.get(bucket.key)
        if lease is None:
            lease = self._leases[bucket.key] = _Lease(refilled_at=now)
        lease.hits_since_refill += 1
        return lease

    def _await_leases(self, leases: list[_Lease], now: float) -> float:
        """Wait (the lock released meanwhile) until no lease of ``leases`` with no token
        left is on its way, at most ``wait_s``: their tokens may serve this request.
        The time then."""
        give_up_at = time.monotonic() + self._wait_s
        refills = [lease.refills for lease in leases]
        while any(lease.leasing and not lease.holds(now) for lease in leases):
            left = give_up_at - time.monotonic()
            if left <= 0:
                break
            self._lock.wait(left)
            now = self._clock()
        for lease, before in zip(leases, refills, strict=True):
            if lease.refills != before:
                lease.hits_since_refill += 1  # a hit of the new lease's time: it sizes the next
        return now

    def _size(self, bucket: BucketSpec, lease: _Lease, now: float) -> int:
        largest = bucket.largest_lease
        if largest == 1 or lease.expires_at == 0.0:  # no lease, or no rate seen yet
            return 1
        span = lease_seconds(bucket.window_s)
        elapsed = min(max(now - lease.refilled_at, span / 100), span)
        return max(1, min(largest, math.ceil(lease.hits_since_refill * span / elapsed)))

    def settle(self, bucket: BucketSpec, asked: int, charged: int) -> None:
        """The answer to a refill :meth:`reserve` asked ``asked`` hits for: Redis charged
        ``charged`` hits to ``bucket`` (0: refused, or never asked). One is the
        request's, the rest this process's for the lease's time."""
        now = self._clock()
        with self._lock:
            lease = self._leases.setdefault(bucket.key, _Lease())
            if asked > 1:
                lease.leasing = False
                self._lock.notify_all()
            if charged < 1:
                return
            if now >= lease.expires_at:
                lease.remaining = 0
            lease.remaining += charged - 1
            lease.expires_at = now + lease_seconds(bucket.window_s)
            lease.refilled_at = now
            lease.refills += 1
            lease.hits_since_refill = 0
            if len(self._leases) > _PRUNE_ABOVE:
                self._prune(now)

    def give_back(self, buckets: list[BucketSpec]) -> None:
        """Return tokens :meth:`reserve` took for a request that was refused."""
        with self._lock:
            for bucket in buckets:
                lease = self._leases.get(bucket.key)
                if lease is not None:
                    lease.remaining += 1

    def held(self, key: str) -> int:
        """Unexpired tokens this process holds for the bucket ``key``."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is None or self._clock() >= lease.expires_at:
                return 0
            return lease.remaining

    def _prune(self, now: float) -> None:
        stale = [
            key
            for key, lease in self._leases.items()
            if now >= lease.expires_at + 60 and not lease.leasing  # waited for: kept
        ]
        for key in stale:
            del self._leases[key]
