"""Retry pacing and circuit breakers (pure: time comes from the caller's clock)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sluice.settings import CircuitBreakerConfig, RetryConfig


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
    probe: int = 0  # the ticket of the half-open probe in flight; 0 when none


class CircuitBreakers:
    """One breaker per provider key: `failure_threshold` failures in a row open it for
    `open_seconds`, during which the key is skipped at no cost; then one request probes it
    (half-open), and its outcome closes or re-opens the breaker.

    Looking is free: `allows` only says whether a key may be chosen. The request that is really
    sent to a key `claim`s it; in half-open state that request takes the one probe slot, and
    gives it back (`give_back`) if it ends without a verdict (refused by a budget, cancelled,
    answered 429), so a key considered but not used, or a probe abandoned, never locks it out."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self._config = config
        self._states: dict[str, _State] = {}
        self._tickets = 0

    def configure(self, config: CircuitBreakerConfig) -> None:
        """New settings (a live reload) for every breaker; their states carry over."""
        self._config = config

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config

    @property
    def open_seconds(self) -> float:
        return self._config.open_seconds

    def _half_open(self, state: _State | None) -> bool:
        return state is not None and state.failures >= self._config.failure_threshold

    def allows(self, name: str, now: float) -> bool:
        """Whether `name` may be chosen now: closed, or half-open with its probe slot free."""
        state = self._states.get(name)
        if state is None or not self._half_open(state):
            return True
        return now >= state.open_until and not state.probe

    def claim(self, name: str, now: float) -> int:
        """The chosen request uses `name`. Returns its probe ticket when it takes the half-open
        probe slot (then `succeeded`, `failed` or `give_back(name, ticket)` must follow), else 0.
        Call only after `allows(name, now)` said yes, with no await in between."""
        state = self._states.get(name)
        if state is None or not self._half_open(state) or now < state.open_until or state.probe:
            return 0
        self._tickets += 1
        state.probe = self._tickets
        return state.probe

    def give_back(self, name: str, ticket: int) -> None:
        """The probe `ticket` ended without a verdict: the next request may probe."""
        state = self._states.get(name)
        if ticket and state is not None and state.probe == ticket:
            state.probe = 0

    def succeeded(self, name: str) -> None:
        self._states.pop(name, None)

    def failed(self, name: str, now: float) -> None:
        state = self._states.setdefault(name, _State())
        state.failures += 1
        state.probe = 0
        if state.failures >= self._config.failure_threshold:
            state.open_until = now + self._config.open_seconds

    def is_open(self, name: str, now: float) -> bool:
        state = self._states.get(name)
        return state is not None and state.failures >= self._config.failure_threshold and now < state.open_until

    def table(self, now: float) -> list[tuple[str, int, str]]:
        """(name, failures in a row, state) of each breaker that has seen a failure since its
        last success, by name: "open" (skipped), "half_open" (its probe may go) or "closed"
        (failures below the threshold). A breaker not listed is closed."""
        out = []
        for name, state in sorted(self._states.items()):
            if not self._half_open(state):
                label = "closed"
            else:
                label = "open" if now < state.open_until else "half_open"
            out.append((name, state.failures, label))
        return out

    def snapshot(self, now: float) -> dict[str, str]:
        """`table` as name -> state, for metrics and alerts."""
        return {name: label for name, _, label in self.table(now)}
