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
    assert breakers.claim("anthropic/a", 12.5)
    assert not breakers.allows("anthropic/a", 12.6)  # ... and only one
    breakers.failed("anthropic/a", 13.0)  # the probe failed: open again
    assert not breakers.allows("anthropic/a", 20.0)
    assert breakers.allows("anthropic/a", 23.5)
    assert breakers.claim("anthropic/a", 23.5)
    breakers.succeeded("anthropic/a")  # the probe succeeded: closed
    assert breakers.allows("anthropic/a", 23.6) and not breakers.is_open("anthropic/a", 23.6)


def test_looking_at_a_half_open_breaker_takes_no_probe_and_an_abandoned_probe_is_given_back() -> None:
    # Fails on main: `allows` took the probe slot of every key it was asked about, for good.
    breakers = CircuitBreakers(CircuitBreakerConfig(failure_threshold=1, open_seconds=10))
    breakers.failed("p/a", 0.0)
    assert breakers.allows("p/a", 11.0) and breakers.allows("p/a", 11.0)  # considered twice: still free
    ticket = breakers.claim("p/a", 11.0)
    assert ticket and not breakers.allows("p/a", 11.1) and not breakers.claim("p/a", 11.1)
    breakers.give_back("p/a", ticket)  # e.g. the budget refused the request before any upstream call
    assert breakers.allows("p/a", 11.2)
    second = breakers.claim("p/a", 11.2)
    assert second
    breakers.give_back("p/a", ticket)  # a stale ticket does not free someone else's probe
    assert not breakers.allows("p/a", 11.3)
    breakers.give_back("p/a", second)
    assert breakers.claim("p/a", 11.4)
    assert breakers.claim("p/b", 11.4) == 0  # a closed breaker has no probe to take
