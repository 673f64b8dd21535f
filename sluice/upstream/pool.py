"""Per-provider connection slots: how many upstream exchanges may be open at once, and how long a
request waits for one.

A slot is held from the moment a request is sent until its response is released (for a stream:
until the last chunk is read or the stream is closed), i.e. for as long as it holds a connection.
Waiting for a slot is the gateway's own queue, so it is timed separately from the provider's
first byte: a request that finds no slot in time is answered GATEWAY_SATURATED, which no circuit
breaker counts, instead of a PROVIDER_TIMEOUT that would blame a healthy provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sluice.core.errors import ErrorKind, SluiceError

# Said to a caller that found the gateway full: a slot usually frees within a second.
SATURATED_RETRY_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class PoolLimits:
    max_connections: int | None = None  # None: no cap of the gateway's own (file descriptors bound it)
    wait: float = 30.0  # how long a request may wait for a free slot when the cap is reached


class SlotGate:
    """The slots of one provider. Counts in use, waiting and refused, for /metrics."""

    def __init__(self, limits: PoolLimits) -> None:
        self.limits = limits
        self._free = asyncio.Semaphore(limits.max_connections) if limits.max_connections else None
        self.in_use = 0
        self.waiting = 0

    async def acquire(self, provider: str) -> Callable[[], None]:
        """Takes a slot (waiting at most `limits.wait`) and returns the function that gives it
        back; calling that function more than once gives it back once."""
        free = self._free
        if free is not None and free.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(self.limits.wait):
                    await free.acquire()
            except TimeoutError:
                raise saturated(provider, f"all {self.limits.max_connections} connections are busy") from None
            finally:
                self.waiting -= 1
        elif free is not None:
            await free.acquire()  # a free slot: taken at once, without yielding
        self.in_use += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.in_use -= 1
            if free is not None:
                free.release()

        return release


def saturated(provider: str, why: str) -> SluiceError:
    return SluiceError(
        ErrorKind.GATEWAY_SATURATED,
        f"The gateway is at capacity for provider {provider} ({why}). Try again shortly.",
        retry_after=SATURATED_RETRY_AFTER_S,
    )
