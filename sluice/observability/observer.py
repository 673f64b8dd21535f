"""The engine's one seam into observability: `send` wraps each provider call (its timing, the
trace context passed upstream, the stream it opens), `finished` takes each request's log entry
(metrics, the trace's spans). Both are no more than a few attribute writes when nothing is on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from sluice.core.context import Attempt, RequestRecord
from sluice.core.trace_context import OUTBOUND_TRACEPARENT
from sluice.observability.metrics import McpMetrics, RequestMetrics, StreamsInFlight
from sluice.providers.base import Provider, ProviderCall, ProviderReply
from sluice.settings import ObservabilityConfig
from sluice.storage.records import RequestLogEntry

if TYPE_CHECKING:
    from sluice.observability.tracing import Tracer


class Request(Protocol):
    """What the observer reads of a request (the engine's `RequestContext` is one)."""

    @property
    def request(self) -> RequestRecord: ...

    @property
    def attempts(self) -> list[Attempt]: ...


class Observer:
    def __init__(self, metrics: RequestMetrics | None = None, tracer: Tracer | None = None) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.streams = StreamsInFlight()
        self.mcp: McpMetrics | None = None

    async def send(self, ctx: Request, provider: Provider, call: ProviderCall, attempt: Attempt) -> ProviderReply:
        """`provider.send(call)`, timed into `attempt` (and traced, when tracing is on)."""
        record = ctx.request
        if call.stream:
            self.streams.open[record.request_id] = record.surface.value
        token = None
        if self.tracer is not None:
            token = OUTBOUND_TRACEPARENT.set(self.tracer.outbound(record, call.inbound_headers, attempt))
        attempt.sent = started = time.perf_counter()
        try:
            return await provider.send(call)
        finally:
            attempt.waited = time.perf_counter() - started
            if token is not None:
                OUTBOUND_TRACEPARENT.reset(token)

    def finished(self, ctx: Request, entry: RequestLogEntry) -> None:
        """The request is over and `entry` is its request log record. Never raises."""
        record = ctx.request
        self.streams.open.pop(record.request_id, None)
        if self.metrics is not None:
            self.metrics.observe(entry, ctx.attempts, record.started)
        if self.tracer is not None:
            self.tracer.finished(record, entry, ctx.attempts)


def build_observer(config: ObservabilityConfig) -> Observer:
    """The observer the settings ask for. The OpenTelemetry SDK is imported only when tracing is."""
    metrics = None
    if config.metrics.enabled:
        metrics = RequestMetrics(per_key=config.metrics.per_key, max_series=config.metrics.max_series)
    tracer = None
    if config.tracing.endpoint:
        from sluice.observability.tracing import build_tracer

        tracer = build_tracer(config.tracing)
    observer = Observer(metrics, tracer)
    if config.metrics.enabled:
        observer.mcp = McpMetrics(max_series=config.metrics.max_series)
    return observer
