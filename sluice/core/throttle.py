"""A token bucket per client address, spent by failures only: a caller that keeps failing (wrong
keys, forged tokens) is slowed down, one that succeeds never notices it. Pure and bounded."""

from __future__ import annotations

import time
from collections.abc import Callable


class FailureThrottle:
    def __init__(
        self, burst: int, per_minute: float, *, max_addresses: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(burst)
        self._rate = per_minute / 60.0  # tokens per second
        self._max = max_addresses
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (self._burst, now))
        return min(self._burst, tokens + (now - at) * self._rate)

    def retry_after(self, address: str) -> float | None:
        """Seconds until this address may try again; None when it may now."""
        now = self._clock()
        tokens = self._tokens(address, now)
        return None if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def failed(self, address: str) -> None:
        now = self._clock()
        self._buckets[address] = (max(0.0, self._tokens(address, now) - 1.0), now)
        if len(self._buckets) > self._max:
            self._prune(now)

    def _prune(self, now: float) -> None:
        # Full buckets carry no state; if a flood from many addresses leaves none full, the
        # oldest half goes (memory stays bounded; those addresses start afresh).
        self._buckets = {a: b for a, b in self._buckets.items() if self._tokens(a, now) < self._burst}
        if len(self._buckets) > self._max:
            newest = sorted(self._buckets.items(), key=lambda item: item[1][1])[len(self._buckets) // 2 :]
            self._buckets = dict(newest)
