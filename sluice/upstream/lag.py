"""How late the event loop runs: the gateway's own saturation, told apart from a slow provider.

A timeout is measured on the event loop. When the loop is stalled (CPU saturated by thousands of
streams, a blocking call, a long garbage collection), an answer that arrived in time is read
late, and the timer fires first: the provider gets the blame for the gateway's lag. A small task
wakes every `INTERVAL` seconds and records how late it woke; a timeout whose window the loop
spent largely stalled is the gateway's (`GATEWAY_SATURATED`), not the provider's.
"""

from __future__ import annotations

import asyncio
from collections import deque

INTERVAL = 0.05
# Lateness below this is ordinary scheduling noise and not recorded.
_NOISE = 0.005
# A timeout is the gateway's when the loop was stalled for at least this share of its window.
STALLED_SHARE = 0.25


class LoopLag:
    def __init__(self) -> None:
        # (when the loop woke, how late): each entry is a stall over [when - late, when]. Bounded:
        # at one entry per INTERVAL this covers minutes of continuous stalls.
        self._stalls: deque[tuple[float, float]] = deque(maxlen=8192)
        self.stalled_total = 0.0  # seconds, since start (for /metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0  # when the monitor should wake next

    async def run(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        while True:
            due = self._due = loop.time() + INTERVAL
            await asyncio.sleep(INTERVAL)
            now = loop.time()
            late = now - due
            if late > _NOISE:
                self._stalls.append((now, late))
                self.stalled_total += late

    def stalled(self, start: float, end: float) -> float:
        """Seconds of the window [start, end] (loop clock) the loop spent stalled, counting a stall
        the monitor has not woken from yet (the loop is running a timeout's handler first)."""
        total = 0.0
        if self._loop is not None:
            now = self._loop.time()
            if now - self._due > _NOISE:  # the monitor is overdue: the loop is only now catching up
                total += max(0.0, min(now, end) - max(self._due, start))
        for when, late in reversed(self._stalls):
            if when < start:
                break
            total += max(0.0, min(when, end) - max(when - late, start))
        return total

    def overloaded(self, start: float, end: float) -> bool:
        """Whether a timeout over [start, end] is the gateway's fault rather than the provider's."""
        window = end - start
        return window > 0 and self.stalled(start, end) >= STALLED_SHARE * window
