from __future__ import annotations

import random

from sluice.routing.resilience import CircuitBreakers, backoff_delay
from sluice.settings import CircuitBreakerConfig, RetryConfig


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    retry = RetryConfig(attempts=5, backoff_base_s=0.1, backoff_max_s=2.0)
    rng = random.Random(1)
    delays = [backoff_delay(retry, n, None, rng) for n in (1, 2, 3, 4, 5, 6)]
    assert all(d is not None for d in delays)
    bounds = [(0.05, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.8), (0.8, 1.6), (1.0, 2.0)]
    assert all(lo <= d <= hi for d, (lo, hi) in zip(delays, bounds, strict=True))  # type: ignore[operator]
    assert backoff_delay(retry, 1, 1.5, rng) == 1.5  # the upstream's Retry-After wins when longer
    assert backoff_delay(retry, 1, 30, rng) is None  # too long to hold the caller: fall back instead


def test_circuit_breaker_opens_probes_and_closes() -> None:
    breakers = CircuitBreakers(CircuitBreakerConfig(failure_threshold=3, open_seconds=10))
    for t in (0.0, 1.0):
        breakers.failed("anthropic/a", t)
    assert breakers.allows("anthropic/a", 1.5)  # two failures: still closed
    breakers.failed("anthropic/a", 2.0)
    assert breakers.is_open("anthropic/a", 2.0)
    assert not breakers.allows("anthropic/a", 5.0)  # open: skipped at no cost
    assert breakers.allows("anthropic/b", 5.0)  # other keys are not affected
    assert breakers.allows("anthropic/a", 12.5)  # half-open: one probe goes through ...
    assert not breakers.allows("anthropic/a", 12.6)  # ... and only one
    breakers.failed("anthropic/a", 13.0)  # the probe failed: open again
    assert not breakers.allows("anthropic/a", 20.0)
    assert breakers.allows("anthropic/a", 23.5)
    breakers.succeeded("anthropic/a")  # the probe succeeded: closed
    assert breakers.allows("anthropic/a", 23.6) and not breakers.is_open("anthropic/a", 23.6)
