"""RedisCounters over the real Redis on 127.0.0.1:6379, case by case against MemoryCounters.

Every behavioural test runs on both backends, so the two are proven equivalent. A backend is
given as a factory: every call returns another handle on the same counters (for Redis, another
client, as another gateway replica would have; in memory, the one instance there is).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis_async

from sluice.storage.backends.memory_counters import MemoryCounters
from sluice.storage.backends.redis_counters import SETTLED_RETENTION_S, RedisCounters
from sluice.storage.ports import LimitCounters
from sluice.storage.records import Bucket, BucketState

# A helper session on a shared machine is given its own database: SLUICE_TEST_REDIS_DB.
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('SLUICE_TEST_REDIS_DB', '15')}"
Factory = Callable[[], LimitCounters]


async def _delete_prefix(client: redis_async.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


async def _open_admin() -> redis_async.Redis:
    client = redis_async.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def prefix() -> str:
    return f"sluice-test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Factory]:
    opened: list[LimitCounters] = []
    if request.param == "memory":
        shared = MemoryCounters()
        opened.append(shared)

        def make() -> LimitCounters:
            return shared

        yield make
        await shared.close()
        return

    admin = await _open_admin()

    def make_redis() -> LimitCounters:
        counters = RedisCounters(REDIS_URL, prefix=prefix)
        opened.append(counters)
        return counters

    try:
        yield make_redis
    finally:
        for counters in opened:
            await counters.close()
        await _delete_prefix(admin, prefix)
        assert not [key async for key in admin.scan_iter(match=f"{prefix}*")]
        await admin.aclose()


@pytest.fixture
def counters(backend: Factory) -> LimitCounters:
    return backend()


def bucket(key: str, limit: int, expires_at: float = 0.0) -> Bucket:
    return Bucket(key, limit, expires_at)


async def state(counters: LimitCounters, b: Bucket, now: float) -> BucketState:
    """Reads a bucket: a reservation of nothing always fits and returns the state."""
    refused, states = await counters.reserve(f"probe-{uuid.uuid4().hex}", [(b, 0)], 1.0, now)
    assert refused is None
    return states[0]


# -- reserve: all or nothing ----------------------------------------------------------------------


async def test_reservation_is_all_or_nothing_across_buckets(counters: LimitCounters) -> None:
    a, b, c = bucket("a", 10), bucket("b", 5), bucket("c", 100)
    refused, states = await counters.reserve("r1", [(a, 3), (b, 6), (c, 1)], 30, 1000)
    assert refused == 1
    assert states == [BucketState(0, 0)] * 3  # nothing was held anywhere
    refused, states = await counters.reserve("r2", [(a, 3), (b, 5), (c, 1)], 30, 1000)
    assert refused is None
    assert states == [BucketState(0, 3, 3), BucketState(0, 5, 5), BucketState(0, 1, 1)]
    # Two buckets refuse: the index is the first one's; the first bucket fitted but holds nothing more.
    # `held` is the request's own share: r3 holds nothing, so what is reserved is other requests'.
    refused, states = await counters.reserve("r3", [(a, 1), (b, 1), (c, 100)], 30, 1000)
    assert refused == 1
    assert states == [BucketState(0, 3), BucketState(0, 5), BucketState(0, 1)]


async def test_reserve_checks_used_plus_reserved_plus_amount(counters: LimitCounters) -> None:
    b = bucket("b", 10)
    await counters.settle("done", [(b, 4)], 1000)
    assert (await counters.reserve("r1", [(b, 3)], 30, 1000))[0] is None
    assert (await counters.reserve("r2", [(b, 4)], 30, 1000))[0] == 0  # 4 + 3 + 4 > 10
    refused, states = await counters.reserve("r3", [(b, 3)], 30, 1000)  # 4 + 3 + 3 == 10 fits
    assert refused is None and states == [BucketState(4, 6, 3)]


async def test_zero_amount_never_refuses_even_when_full(counters: LimitCounters) -> None:
    full, other = bucket("full", 2), bucket("other", 10)
    assert (await counters.reserve("r1", [(full, 2)], 30, 1000))[0] is None
    refused, states = await counters.reserve("r2", [(full, 0), (other, 5)], 30, 1000)
    assert refused is None and states == [BucketState(0, 2), BucketState(0, 5, 5)]


async def test_changed_limit_applies_at_once(counters: LimitCounters) -> None:
    assert (await counters.reserve("r1", [(bucket("b", 10), 8)], 30, 1000))[0] is None
    assert (await counters.reserve("r2", [(bucket("b", 20), 8)], 30, 1000))[0] is None
    assert (await counters.reserve("r3", [(bucket("b", 10), 1)], 30, 1000))[0] == 0
    assert (await counters.reserve("r4", [(bucket("b", 17), 1)], 30, 1000))[0] is None


async def test_same_request_reservation_is_additive_and_renews_its_lease(counters: LimitCounters) -> None:
    b = bucket("b", 10)
    assert (await counters.reserve("r1", [(b, 3)], 10, 1000))[0] is None
    refused, states = await counters.reserve("r1", [(b, 4)], 10, 1008)
    assert refused is None and states == [BucketState(0, 7, 7)]
    # A refused top-up leaves what the request held, and says what that is.
    refused, states = await counters.reserve("r1", [(b, 4)], 10, 1009)
    assert refused == 0 and states == [BucketState(0, 7, 7)]
    # The whole 7 now lapses at 1018, not 1010.
    assert await state(counters, b, 1015) == BucketState(0, 7)
    assert await state(counters, b, 1018) == BucketState(0, 0)


# -- leases ---------------------------------------------------------------------------------------


async def test_reservation_lapses_after_its_lease(counters: LimitCounters) -> None:
    b = bucket("b", 10)
    assert (await counters.reserve("crashed", [(b, 8)], 5, 1000))[0] is None
    assert (await counters.reserve("r2", [(b, 5)], 5, 1004.9))[0] == 0
    refused, states = await counters.reserve("r2", [(b, 5)], 5, 1005)  # lease end <= now: lapsed
    assert refused is None and states == [BucketState(0, 5, 5)]
    # The crashed request settling late still counts what it used, once.
    await counters.settle("crashed", [(b, 2)], 1006)
    assert await state(counters, b, 1006) == BucketState(2, 5)


async def test_in_flight_bucket_leases_lapse(counters: LimitCounters) -> None:
    inflight = bucket("rule:concurrent", 2)  # no window
    assert (await counters.reserve("r1", [(inflight, 1)], 30, 1000))[0] is None
    assert (await counters.reserve("r2", [(inflight, 1)], 30, 1000))[0] is None
    assert (await counters.reserve("r3", [(inflight, 1)], 30, 1010))[0] == 0
    await counters.settle("r1", [(inflight, 0)], 1011)  # finishing a request frees its place
    refused, states = await counters.reserve("r3", [(inflight, 1)], 30, 1012)
    assert refused is None and states == [BucketState(0, 2, 1)]
    refused, states = await counters.reserve("r4", [(inflight, 1)], 30, 1042)  # r2 and r3 lapsed
    assert refused is None and states == [BucketState(0, 1, 1)]


# -- settle ---------------------------------------------------------------------------------------


async def test_settle_replaces_reservation_and_is_idempotent(counters: LimitCounters) -> None:
    a, b = bucket("a", 100), bucket("b", 100)
    assert (await counters.reserve("r1", [(a, 10), (b, 1)], 30, 1000))[0] is None
    await counters.settle("r1", [(a, 7), (b, 1)], 1001)
    assert await state(counters, a, 1001) == BucketState(7, 0)
    await counters.settle("r1", [(a, 7), (b, 1)], 1002)
    assert await state(counters, a, 1002) == BucketState(7, 0)
    assert await state(counters, b, 1002) == BucketState(1, 0)
    # Settled per bucket: a bucket the first settle did not name still takes it.
    c = bucket("c", 100)
    await counters.settle("r1", [(a, 7), (c, 5)], 1003)
    assert await state(counters, a, 1003) == BucketState(7, 0)
    assert await state(counters, c, 1003) == BucketState(5, 0)


async def test_settle_without_reservation_counts_usage(counters: LimitCounters) -> None:
    b = bucket("b", 10)
    await counters.settle("ghost", [(b, 4)], 1000)
    assert await state(counters, b, 1000) == BucketState(4, 0)
    assert not await counters.seed(b, 99)  # settling created the counter


async def test_zero_reservations_settle_cleanly(counters: LimitCounters) -> None:
    b = bucket("b", 10)
    assert (await counters.reserve("r1", [(b, 0)], 30, 1000))[0] is None
    await counters.settle("r1", [(b, 0)], 1000)
    assert (await counters.reserve("r2", [(b, 10)], 30, 1000))[0] is None
    await counters.settle("r2", [(b, 0)], 1000)
    assert await state(counters, b, 1000) == BucketState(0, 0)


# -- seed -----------------------------------------------------------------------------------------


async def test_seed_only_when_absent(counters: LimitCounters) -> None:
    b = bucket("b", 50, time.time() + 3600)
    assert await counters.seed(b, 40)
    assert not await counters.seed(b, 99)
    assert (await counters.reserve("r1", [(b, 11)], 30, 1000))[0] == 0
    refused, states = await counters.reserve("r2", [(b, 10)], 30, 1000)
    assert refused is None and states == [BucketState(40, 10, 10)]
    other = bucket("other", 50, time.time() + 3600)
    assert (await counters.reserve("r3", [(other, 1)], 30, 1000))[0] is None
    assert not await counters.seed(other, 5)  # reserving created the counter


# -- big numbers ----------------------------------------------------------------------------------


async def test_amounts_beyond_double_precision_are_exact(counters: LimitCounters) -> None:
    two53 = 2**53
    b = bucket("cost", two53 + 1)
    assert await counters.seed(b, two53 - 1)
    assert (await counters.reserve("r1", [(b, 1)], 30, 1000))[0] is None
    refused, states = await counters.reserve("r2", [(b, 1)], 30, 1000)
    assert refused is None and states == [BucketState(two53 - 1, 2, 1)]
    refused, states = await counters.reserve("r3", [(b, 1)], 30, 1000)  # 2^53 + 2 > 2^53 + 1
    assert refused == 0 and states == [BucketState(two53 - 1, 2)]
    await counters.settle("r1", [(b, 1)], 1000)
    await counters.settle("r2", [(b, 0)], 1000)
    assert await state(counters, b, 1000) == BucketState(two53, 0)
    # Pico-dollar sized: a $100,000 budget and a $1,000 request, to the pico-dollar.
    big = bucket("big", 10**17)
    assert await counters.seed(big, 10**17 - 10**15 - 1)
    assert (await counters.reserve("r4", [(big, 10**15 + 2)], 30, 1000))[0] == 0
    refused, states = await counters.reserve("r4", [(big, 10**15 + 1)], 30, 1000)
    assert refused is None and states == [BucketState(10**17 - 10**15 - 1, 10**15 + 1, 10**15 + 1)]
    await counters.settle("r4", [(big, 123_456_789_012_345)], 1000)
    assert await state(counters, big, 1000) == BucketState(10**17 - 10**15 - 1 + 123_456_789_012_345, 0)


async def test_a_bucket_without_a_window_forgets_settled_ids_after_a_day(counters: LimitCounters) -> None:
    """Settling stays idempotent for a day (SETTLED_RETENTION_S), then the id is forgotten, as
    Redis forgets it, so the set does not grow with every request ever made. Failed on
    MemoryCounters before: it remembered every id for ever (the second settle below was ignored)."""
    inflight = bucket("rule:concurrent-forget", 10)
    t0 = 1_000_000.0
    await counters.settle("r1", [(inflight, 1)], t0)
    await counters.settle("r1", [(inflight, 1)], t0 + 3600)  # the same day: counted once
    assert (await state(counters, inflight, t0 + 3600)).used == 1
    await counters.settle("r2", [(inflight, 1)], t0 + SETTLED_RETENTION_S + 1)  # forgets r1
    await counters.settle("r1", [(inflight, 1)], t0 + SETTLED_RETENTION_S + 2)
    assert (await state(counters, inflight, t0 + SETTLED_RETENTION_S + 2)).used == 3


async def test_a_bucket_with_a_long_window_forgets_settled_ids_after_a_day(counters: LimitCounters) -> None:
    """A monthly budget remembers a settled id for a day, not for its whole window. Failed on both
    backends before: they kept every id until the window ended (the second r1 below was ignored)."""
    t0 = time.time()
    monthly = bucket("rule:monthly-forget", 10, t0 + 40 * 86_400)
    await counters.settle("r1", [(monthly, 1)], t0)
    await counters.settle("r1", [(monthly, 1)], t0 + 3600)  # the same day: counted once
    assert (await state(counters, monthly, t0 + 3600)).used == 1
    await counters.settle("r2", [(monthly, 1)], t0 + SETTLED_RETENTION_S + 1)  # forgets r1
    await counters.settle("r1", [(monthly, 1)], t0 + SETTLED_RETENTION_S + 2)
    assert (await state(counters, monthly, t0 + SETTLED_RETENTION_S + 2)).used == 3


def test_memory_counters_keep_settled_ids_of_a_day_only() -> None:
    counters = MemoryCounters()
    inflight = bucket("rule:concurrent", 1_000_000)
    for i in range(1000):  # one settlement every 15 minutes for ten days and more
        counters.settle_now(f"r{i}", [(inflight, 0)], 1_000_000.0 + 900 * i)
    remembered = counters._counters[inflight.key].settled
    assert len(remembered) == int(SETTLED_RETENTION_S // 900) + 1


# -- windows --------------------------------------------------------------------------------------


async def test_finished_window_is_forgotten(counters: LimitCounters) -> None:
    now = time.time()
    old = bucket("old-window", 10, now - 100)  # ended more than the grace period ago
    assert (await counters.reserve("r1", [(old, 5)], 30, now))[0] is None
    await counters.settle("r1", [(old, 5)], now)
    await counters.reserve("r2", [(bucket("current", 10, now + 3600), 1)], 30, now + 61)
    assert await counters.seed(old, 0)  # no counter left to keep


async def test_window_keys_expire_after_grace_and_in_flight_keys_do_not(
    backend: Factory, prefix: str, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["backend"] != "redis":
        pytest.skip("TTLs are Redis keys' business")
    admin = await _open_admin()
    try:
        await _check_ttls(backend(), admin, prefix)
    finally:
        await admin.aclose()


async def _check_ttls(counters: LimitCounters, admin: redis_async.Redis, prefix: str) -> None:
    ends = time.time() + 100
    window, inflight = bucket("rule:cost:w1", 10, ends), bucket("rule:concurrent", 10)
    assert (await counters.reserve("r1", [(window, 3), (inflight, 1)], 30, 1000))[0] is None
    await counters.settle("r1", [(window, 2), (inflight, 0)], 1000)
    assert (await counters.reserve("r2", [(window, 3), (inflight, 1)], 30, 1000))[0] is None
    keys = [key.decode() async for key in admin.scan_iter(match=f"{prefix}*")]
    window_keys = [k for k in keys if k.endswith("rule:cost:w1")]
    inflight_keys = [k for k in keys if k.endswith("rule:concurrent")]
    assert len(window_keys) == 4 and len(inflight_keys) == 4, keys
    for key in window_keys:
        expire_ms = await admin.pexpiretime(key)
        assert abs(expire_ms - (ends + 60) * 1000) <= 1, key
    for key in inflight_keys:
        assert await admin.ttl(key) == -1, key
    seeded = bucket("rule:tokens:w1", 10, ends)
    assert await counters.seed(seeded, 3)
    [seeded_key] = [k.decode() async for k in admin.scan_iter(match=f"{prefix}*rule:tokens:w1")]
    assert abs(await admin.pexpiretime(seeded_key) - (ends + 60) * 1000) <= 1


# -- several replicas at once ---------------------------------------------------------------------


async def test_limit_is_exact_under_concurrent_reservations_from_three_replicas(backend: Factory) -> None:
    replicas = [backend(), backend(), backend()]
    cost, tokens = bucket("cost", 1000, time.time() + 3600), bucket("tokens", 500, time.time() + 3600)

    async def one(i: int) -> int | None:
        refused, _ = await replicas[i % 3].reserve(f"req-{i}", [(tokens, 3), (cost, 7)], 30, 1000)
        return refused

    results = await asyncio.gather(*(one(i) for i in range(200)))
    admitted = results.count(None)
    assert admitted == 1000 // 7 == 142
    assert results.count(1) == 200 - admitted  # only the cost bucket ever refuses
    final = await state(replicas[0], cost, 1000)
    assert final == BucketState(0, 142 * 7)
    assert await state(replicas[1], tokens, 1000) == BucketState(0, 142 * 3)

    # Settling concurrently, twice over, from every replica, counts each request once.
    ok = [i for i, refused in enumerate(results) if refused is None]
    await asyncio.gather(
        *(replicas[(i + k) % 3].settle(f"req-{i}", [(tokens, 2), (cost, 5)], 1001) for i in ok for k in range(2))
    )
    assert await state(replicas[2], cost, 1001) == BucketState(142 * 5, 0)
    assert await state(replicas[0], tokens, 1001) == BucketState(142 * 2, 0)
