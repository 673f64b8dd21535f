"""The failure throttle (a token bucket per address) and the counted audit records of
authentication failures."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.audit.auth_failures import AuthGuard
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.throttle import FailureThrottle
from sluice.settings import AuthGuardConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    async def append(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        self.records.append((kind, actor, data))


def test_the_bucket_empties_with_failures_and_refills_with_time() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)  # one token a second
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(1.0)
    assert throttle.retry_after("b") is None  # per address
    clock.now += 0.5
    assert throttle.retry_after("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert throttle.retry_after("a") is None
    clock.now += 100
    for _ in range(3):  # refilled to the burst, not beyond
        throttle.failed("a")
    assert throttle.retry_after("a") is not None


def test_the_throttle_stays_bounded_under_a_flood_of_addresses() -> None:
    clock = Clock()
    throttle = FailureThrottle(2, 1, max_addresses=100, clock=clock)
    for n in range(10_000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._buckets) <= 100


async def test_repeats_are_counted_into_one_record_per_interval() -> None:
    clock, audit = Clock(), Audit()
    guard = AuthGuard(AuthGuardConfig(audit_interval_s=60, throttle=False), audit, clock=clock)  # type: ignore[arg-type]
    for _ in range(1000):
        await guard.failed("openai_chat", "10.0.0.1", "invalid_credential")
    await guard.failed("openai_chat", "10.0.0.2", "invalid_credential")
    assert [(r[1], r[2]["count"]) for r in audit.records] == [("address:10.0.0.1", 1), ("address:10.0.0.2", 1)]
    assert await guard.flush() == 0  # the interval is not over
    clock.now += 61
    assert await guard.flush() == 1
    assert audit.records[-1][2] == {
        "surface": "openai_chat",
        "address": "10.0.0.1",
        "reason": "invalid_credential",
        "count": 999,
        "window_ms": 0,
    }
    await guard.failed("openai_chat", "10.0.0.1", "invalid_credential")  # a new interval: written at once
    assert audit.records[-1][2]["count"] == 1


async def test_beyond_the_tracked_addresses_one_overflow_record_carries_the_rest() -> None:
    clock, audit = Clock(), Audit()
    config = AuthGuardConfig(tracked_addresses=10, throttle=False)
    guard = AuthGuard(config, audit, clock=clock)  # type: ignore[arg-type]
    for n in range(500):
        await guard.failed("mcp", f"10.0.0.{n}", "invalid_credential")
    await guard.flush(force=True)
    assert len(audit.records) == 12  # ten addresses, the overflow's first, then its count
    assert audit.records[-1][2]["address"] == "*" and audit.records[-1][2]["count"] == 489
    assert sum(r[2]["count"] for r in audit.records) == 500


async def test_a_throttled_address_is_refused_with_retry_after() -> None:
    clock, audit = Clock(), Audit()
    guard = AuthGuard(AuthGuardConfig(failures_burst=2, failures_per_minute=6), audit, clock=clock)  # type: ignore[arg-type]
    refused = SluiceError(ErrorKind.CALLER_INVALID_KEY, "no")
    for _ in range(2):
        await guard.check("api", "a")
        assert await guard.refused("api", "a", refused)
    with pytest.raises(SluiceError) as raised:
        await guard.check("api", "a")
    assert raised.value.kind is ErrorKind.POLICY_RATE_LIMITED and raised.value.retry_after == pytest.approx(10)
    assert not await guard.refused("api", "a", SluiceError(ErrorKind.POLICY_MODEL_DENIED, "not auth"))
    await guard.flush(force=True)
    assert {r[2]["reason"] for r in audit.records} == {"invalid_credential", "throttled"}
