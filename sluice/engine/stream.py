"""One stream loop: the provider's chunks in, the caller's bytes out.

Every per-chunk stage is a synchronous feed, chained here in one place, in this order:
observe (usage, generated text, the stream's end, in the provider's format) -> meter (extend the
reservation block by block, or cut the stream) -> settle (the last event waits until its cost is
durable) -> translate (into the caller's format) -> capture (the observer keeps the text for
audit). One timeout policy: the first piece within the provider's first-byte timeout
(`start`), the whole stream within its total timeout (checked per chunk); the idle time between
two chunks is the upstream client's read timeout. A stop (`halt`) ends the stream at once, even
while the provider is silent: the read waiting on the next chunk is woken by it. One close (`aclose`), which closes the
provider's stream and makes sure whatever was streamed is billed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Usage
from sluice.engine.charge import Charge
from sluice.engine.context import RequestContext
from sluice.engine.cost import Costs
from sluice.guardrails.answer import StreamGuard
from sluice.metering import CHARS_PER_TOKEN, StreamObserver
from sluice.providers.base import Provider
from sluice.translation.bridge import StreamTranslator


def estimated_usage(observer: StreamObserver, input_estimate: int) -> Usage:
    """Usage of a stream that ended early: what the stream reported, topped up by estimates."""
    seen = observer.usage
    return Usage(
        input_tokens=seen.input_tokens or (0 if seen.cache_read_tokens else input_estimate),
        output_tokens=max(seen.output_tokens, observer.output_chars // CHARS_PER_TOKEN),
        cache_read_tokens=seen.cache_read_tokens,
        cache_write_tokens=seen.cache_write_tokens,
        cache_write_1h_tokens=seen.cache_write_1h_tokens,
        web_searches=seen.web_searches,
        served_model=seen.served_model,
        service_tier=seen.service_tier,
        reported=True,  # an estimate stands in for the report
        finish_reasons=seen.finish_reasons,
    )


class Stream:
    """The provider's stream as the caller gets it (an async iterator of the caller's bytes).
    A stream that outgrows its reservation extends it by a block, or is cut before the chunk that
    outgrew it; `settle` makes the answer's cost durable before its last event goes out."""

    __slots__ = (
        "_accounted",
        "_charge",
        "_costs",
        "_ctx",
        "_deadline",
        "_eof",
        "_finished",
        "_first",
        "_guard",
        "_halt",
        "_halting",
        "_model",
        "_observer",
        "_pending",
        "_provider",
        "_reader",
        "_settle",
        "_translator",
        "_upstream",
        "guardrail",
    )

    def __init__(
        self,
        ctx: RequestContext,
        upstream: AsyncIterator[bytes],
        observer: StreamObserver,
        translator: StreamTranslator | None,
        charge: Charge | None,
        costs: Costs,
        settle: Callable[[RequestContext], Awaitable[None]],
        provider: Provider,
        model: str,
    ) -> None:
        self._ctx = ctx
        self._upstream = upstream
        self._observer = observer
        self._translator = translator
        self._charge = charge
        self._costs = costs
        self._settle = settle
        self._deadline = time.monotonic() + provider.timeouts.total
        self._provider = provider
        self._model = model
        self._first: bytes | None = None  # the piece `start` read, not handed out yet
        self._pending: SluiceError | None = None  # an in-stream failure, after the bytes before it
        self._eof = False  # nothing more to read: the provider's stream ended, or failed
        self._accounted = False  # the usage to bill is final
        self._finished = False
        self._guard = charge is not None and charge.guards_output and observer.count_output
        self.guardrail: StreamGuard | None = None  # restore -> observe -> scan (sluice.guardrails.answer)
        self._halt: SluiceError | None = None
        # The task while it waits on the provider's next chunk (a stop cancels that wait), and
        # whether a stop did (so the cancellation is the stop's, not the caller's going away).
        self._reader: asyncio.Task[Any] | None = None
        self._halting = False

    @property
    def halt(self) -> SluiceError | None:
        return self._halt

    @halt.setter
    def halt(self, error: SluiceError | None) -> None:
        """Set by the kill switch (sluice.sessions.stops) when a stop covers this stream: it ends
        now with this error (the caller's in-stream error event), billed for what it streamed. A
        read waiting on a silent provider (long thinking, a hung upstream) is woken for it."""
        self._halt = error
        if error is not None and self._reader is not None and not self._halting:
            # Cancelling the one wait costs nothing per chunk (a timeout scope around every read
            # cost ~3 µs a chunk); the read below tells the stop's cancellation from any other.
            self._halting = True
            self._reader.cancel()

    async def start(self) -> None:
        """Reads the first piece for the caller, within the first-byte timeout. Failures surface
        here, where nothing reached the caller yet and a retry or a fallback can still take over."""
        first_byte_timeout = self._provider.timeouts.first_byte
        try:
            async with asyncio.timeout(first_byte_timeout):
                self._first = await self.__anext__()
        except StopAsyncIteration:
            self._first = b""
        except TimeoutError:
            await self.aclose()
            raise SluiceError(
                ErrorKind.PROVIDER_TIMEOUT,
                f"provider {self._provider.name} sent nothing within {first_byte_timeout:g} s",
            ) from None
        except BaseException:
            await self.aclose()
            raise
        self._ctx.mark_first_byte()

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            if first:
                return first
        if self._pending is not None:
            failure, self._pending = self._pending, None
            raise failure
        ctx, observer, translator = self._ctx, self._observer, self._translator
        try:
            while not self._eof:
                if self._halt is not None:  # stopped while the caller read the last chunk
                    raise self._halt
                self._reader = asyncio.current_task()
                try:
                    chunk = await self._upstream.__anext__()
                except StopAsyncIteration:
                    self._eof = True
                    if translator is not None:
                        return self._translated(translator.close())
                    break
                except asyncio.CancelledError:
                    reader = self._reader
                    if not self._halting or reader is None or reader.uncancel() > 0 or self._halt is None:
                        raise  # the caller went away (or was cancelled besides the stop)
                    self._halting = False
                    raise self._halt from None  # stopped while the provider was silent
                finally:
                    self._reader = None
                if self._halt is not None:  # stopped: this chunk is not sent
                    raise self._halt
                if time.monotonic() > self._deadline:
                    raise SluiceError(
                        ErrorKind.PROVIDER_TIMEOUT, f"provider {self._provider.name} took too long in all"
                    )
                out = observer.feed(chunk) if self.guardrail is None else self.guardrail.feed(chunk)
                # (the charge is there whenever `_guard` is: read in place, per chunk)
                if self._guard and observer.output_chars // CHARS_PER_TOKEN >= self._charge.output_allowance:  # type: ignore[union-attr]
                    await self._extend_or_cut()  # raises to cut: this chunk is not sent
                if observer.completed and not ctx.answer_complete:
                    if self._charge is not None and self._charge.limited:
                        # Hold the stream's last event until its cost is durable in the ledger.
                        self._account()
                        await self._settle(ctx)
                    ctx.answer_complete = True
                if translator is not None:
                    out = self._translated(translator.feed(out))
                if out:
                    return out
        except BaseException:
            self._eof = True
            self._finish()
            raise
        self._finish()
        raise StopAsyncIteration

    async def _extend_or_cut(self) -> None:
        """The stream outgrew its reservation: reserve another block, or stop it here and bill
        what was generated so far."""
        assert self._charge is not None
        cost = self._costs.next_block(self._charge, self._provider, self._model)
        await self._charge.extend(cost, self._costs.block)

    def _translated(self, out: bytes) -> bytes:
        """The translator's bytes; its failure is raised after them (on the next read when there
        are bytes to send first)."""
        assert self._translator is not None
        failure = self._translator.failure
        if failure is not None:
            self._eof = True
            if not out:
                raise failure
            self._pending = failure
        return out

    def _account(self) -> None:
        """The usage to bill: what the stream reported when it completed, else an estimate of
        what was streamed (it broke, was cut, or the caller left)."""
        if self._accounted:
            return
        self._accounted = True
        ctx, observer = self._ctx, self._observer
        if observer.completed and observer.usage.reported:
            ctx.answered(observer.usage)
        else:
            ctx.answered(estimated_usage(observer, ctx.charge.input_estimate if ctx.charge is not None else 0))

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._account()
        if self._observer.error and self._ctx.decision == "allow":
            self._ctx.decision, self._ctx.reason = "error", "provider sent an in-stream error"

    async def aclose(self) -> None:
        """Closes the provider's stream; whatever was streamed is billed."""
        self._eof = True
        self._finish()
        aclose = getattr(self._upstream, "aclose", None)
        if aclose is not None:
            await aclose()
