"""Retry pacing and circuit breakers (pure: time comes from the caller's clock)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sluice.settings import CircuitBreakerConfig, RetryConfig

# Upstream answers worth another try, here or at a fallback target.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


def backoff_delay(retry: RetryConfig, attempt: int, retry_after: float | None, rng: random.Random) -> float | None:
    """Seconds to wait before retry number `attempt` (1-based), or None when the upstream asks for
    a longer wait than we are willing to hold the caller (then move on to a fallback instead)."""
    delay: float = min(retry.backoff_max_s, retry.backoff_base_s * 2 ** (attempt - 1)) * (0.5 + rng.random() / 2)
    if retry_after is not None:
        if retry_after > retry.backoff_max_s:
            return None
        delay = max(delay, retry_after)
    return delay


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreakers:
    """One breaker per provider key: `failure_threshold` failures in a row open it for
    `open_seconds`, during which the key is skipped at no cost; then one request probes it
    (half-open), and its outcome closes or re-opens the breaker."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self._config = config
        self._states: dict[str, _State] = {}

    def allows(self, name: str, now: float) -> bool:
        state = self._states.get(name)
        if state is None or state.failures < self._config.failure_threshold:
            return True
        if now < state.open_until or state.probing:
            return False
        state.probing = True  # half-open: let this one request through
        return True

    def succeeded(self, name: str) -> None:
        self._states.pop(name, None)

    def failed(self, name: str, now: float) -> None:
        state = self._states.setdefault(name, _State())
        state.failures += 1
        state.probing = False
        if state.failures >= self._config.failure_threshold:
            state.open_until = now + self._config.open_seconds

    def is_open(self, name: str, now: float) -> bool:
        state = self._states.get(name)
        return state is not None and state.failures >= self._config.failure_threshold and now < state.open_until
