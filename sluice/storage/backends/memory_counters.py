"""Limit counters in this process. Each method runs without awaiting, so on one event loop it is
atomic by construction: no two requests can both pass a check that only one fits.

Memory is bounded as in `RedisCounters`: a bucket with a window is dropped `_GRACE_S` after it
ends, and every bucket forgets the request ids it settled after `SETTLED_RETENTION_S`, checked when
it settles, or that set would grow with every request ever made (without a window) or made in the
window (a monthly budget: one id per request for a month)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sluice.storage.backends.redis_counters import SETTLED_RETENTION_S
from sluice.storage.records import Bucket, BucketState

_GRACE_S = 60.0  # keep a finished window a little, for settlements that arrive late


@dataclass(slots=True)
class _Counter:
    limit: int
    expires_at: float
    used: int = 0
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)  # request -> (amount, lease end)
    settled: set[str] = field(default_factory=set)
    # (when, request) in the order settled: what to forget
    settled_order: deque[tuple[float, str]] = field(default_factory=deque)
    total: int = 0  # sum of the reservations' amounts
    next_lapse: float = float("inf")  # earliest lease end among them

    def reserved(self, now: float) -> int:
        if now >= self.next_lapse:  # only then is a walk over the reservations needed
            for rid in [rid for rid, (_, until) in self.reservations.items() if until <= now]:
                self.total -= self.reservations.pop(rid)[0]
            self.next_lapse = min((until for _, until in self.reservations.values()), default=float("inf"))
        return self.total

    def hold(self, request_id: str, amount: int, until: float) -> None:
        held, _ = self.reservations.get(request_id, (0, 0.0))
        self.reservations[request_id] = (held + amount, until)
        self.total += amount
        if until < self.next_lapse:  # (not min(): this runs for every bucket of every request)
            self.next_lapse = until

    def held(self, request_id: str) -> int:
        return self.reservations.get(request_id, (0, 0.0))[0]

    def release(self, request_id: str) -> None:
        held = self.reservations.pop(request_id, None)
        if held is not None:
            self.total -= held[0]


def _forget(counter: _Counter, before: float) -> None:
    """Drops the ids settled before `before`, oldest first: costs the ids dropped, not those kept."""
    order, settled = counter.settled_order, counter.settled
    while order and order[0][0] < before:
        settled.discard(order.popleft()[1])


class MemoryCounters:
    def __init__(self) -> None:
        self._counters: dict[str, _Counter] = {}
        self._last_sweep = 0.0

    def _get(self, bucket: Bucket) -> _Counter:
        counter = self._counters.get(bucket.key)
        if counter is None:
            counter = self._counters[bucket.key] = _Counter(bucket.limit, bucket.expires_at)
        else:
            counter.limit = bucket.limit  # a changed limit applies at once
        return counter

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < _GRACE_S:
            return
        self._last_sweep = now
        for key in [k for k, c in self._counters.items() if c.expires_at and c.expires_at + _GRACE_S < now]:
            del self._counters[key]

    def reserve_now(
        self, request_id: str, items: Sequence[tuple[Bucket, int]], lease_s: float, now: float
    ) -> tuple[int | None, list[BucketState]]:
        """`reserve`, called without awaiting (`LocalCounters`)."""
        self._sweep(now)
        counters = [self._get(bucket) for bucket, _ in items]
        refused = None
        for index, (counter, (_, amount)) in enumerate(zip(counters, items, strict=True)):
            reserved = counter.reserved(now)  # also lets lapsed leases go, in every bucket checked
            if amount > 0 and counter.used + reserved + amount > counter.limit:
                refused = index
                break
        if refused is None:
            until = now + lease_s
            for counter, (_, amount) in zip(counters, items, strict=True):
                counter.hold(request_id, amount, until)
            return None, [BucketState(c.used, c.total, c.held(request_id)) for c in counters]
        return refused, [BucketState(c.used, c.reserved(now), c.held(request_id)) for c in counters]

    def settle_now(self, request_id: str, items: Sequence[tuple[Bucket, int]], now: float) -> None:
        """`settle`, called without awaiting (`LocalCounters`)."""
        for bucket, amount in items:
            counter = self._get(bucket)
            counter.release(request_id)
            if request_id not in counter.settled:
                counter.settled.add(request_id)
                counter.used += amount
                order = counter.settled_order
                order.append((now, request_id))
                if order[0][0] < now - SETTLED_RETENTION_S:
                    _forget(counter, now - SETTLED_RETENTION_S)

    async def reserve(
        self, request_id: str, items: Sequence[tuple[Bucket, int]], lease_s: float, now: float
    ) -> tuple[int | None, list[BucketState]]:
        return self.reserve_now(request_id, items, lease_s, now)

    async def settle(self, request_id: str, items: Sequence[tuple[Bucket, int]], now: float) -> None:
        self.settle_now(request_id, items, now)

    async def peek(self, buckets: Sequence[Bucket]) -> list[BucketState]:
        out = []
        for bucket in buckets:
            counter = self._counters.get(bucket.key)
            out.append(BucketState(counter.used, counter.total) if counter else BucketState(0, 0))
        return out

    async def seed(self, bucket: Bucket, used: int) -> bool:
        if bucket.key in self._counters:
            return False
        self._counters[bucket.key] = _Counter(bucket.limit, bucket.expires_at, used=used)
        return True

    async def close(self) -> None:
        self._counters.clear()
