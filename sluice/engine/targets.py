"""The retry and fallback loop: the request's targets in order, each tried up to
`routing.retries.attempts` times. Every decision is made on the failure's `ErrorKind` alone
(its `fault`, `retryable` and `fallback` flags), wherever the failure came from: a provider's
error answer (`Provider.parse_error`), a failed connection, a refusal by a limit, a request that
cannot be translated for a target."""

from __future__ import annotations

import asyncio
import random
from enum import Enum
from typing import Protocol

from sluice.core.errors import ErrorKind, SluiceError
from sluice.engine.context import RequestContext
from sluice.engine.shapes import Inbound, Outcome
from sluice.routing.resilience import backoff_delay
from sluice.settings import RetryConfig
from sluice.storage.records import VirtualKey


class Step(Enum):
    RETRY = "retry"  # the same target again, after a pause
    NEXT = "next"  # the next target
    STOP = "stop"  # the failure is the request's answer


def next_step(kind: ErrorKind, *, primary: bool, last_target: bool, retries_left: bool) -> Step:
    """What to do after an attempt failed with `kind`."""
    if primary and kind.fault in ("caller", "policy"):
        return Step.STOP  # the request itself is refused: no fallback may change that
    # A fallback target the request cannot be translated for (CALLER_UNTRANSLATABLE, a fallback
    # kind) or that a policy refuses is passed over for the next one; only the last one refuses.
    if not kind.fallback and kind.fault != "policy":
        return Step.STOP
    if kind.retryable and retries_left:
        return Step.RETRY
    return Step.STOP if last_target else Step.NEXT


class Runner(Protocol):
    """How one attempt runs, how a failed one is abandoned (its reservation released, another
    follows), and how the last failure becomes the answer or is raised (the engine)."""

    async def attempt(
        self, ctx: RequestContext, inbound: Inbound, key: VirtualKey, target: str, tried_keys: set[str]
    ) -> Outcome: ...

    async def abandon(self, ctx: RequestContext, target: str, err: SluiceError) -> None: ...

    async def give_up(self, ctx: RequestContext, err: SluiceError) -> Outcome: ...


class Targets:
    """The loop over targets and retries."""

    def __init__(self, retry: RetryConfig, rng: random.Random | None = None) -> None:
        self.retry = retry
        self._rng = rng or random.Random()

    async def run(
        self, runner: Runner, ctx: RequestContext, inbound: Inbound, key: VirtualKey, targets: list[str]
    ) -> tuple[int, Outcome]:
        """(the index of the target that answered, its outcome); raises the last failure when
        it is not an answer for the caller."""
        attempts = self.retry.attempts
        last = len(targets) - 1
        for index, target in enumerate(targets):
            tried_keys: set[str] = set()
            for n in range(1, attempts + 1):
                try:
                    return index, await runner.attempt(ctx, inbound, key, target, tried_keys)
                except SluiceError as err:
                    step = next_step(err.kind, primary=index == 0, last_target=index == last, retries_left=n < attempts)
                    if step is Step.STOP:
                        return index, await runner.give_up(ctx, err)
                    await runner.abandon(ctx, target, err)
                    if step is Step.RETRY and await self._pause(n, err.retry_after):
                        continue
                    if index == last:  # the provider asks for a longer wait than the gateway holds a caller
                        return index, await runner.give_up(ctx, err)
                    break
        raise AssertionError("the last target always answers or raises")

    async def _pause(self, attempt: int, retry_after: float | None) -> bool:
        delay = backoff_delay(self.retry, attempt, retry_after, self._rng)
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True
