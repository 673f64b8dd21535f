"""One trace per request: a SERVER span for the request and a CLIENT span per provider attempt,
with the OpenTelemetry GenAI semantic-convention attributes, exported over OTLP/HTTP.

Imported only when `observability.tracing.endpoint` is set. The spans are built when the request
has finished, from its request log entry and its attempts' timings (no span object lives through
the request, no context is attached to the event loop); the ids are chosen up front so the
`traceparent` sent to the provider names the attempt's span. The SDK's batch processor exports
from its own thread, off the event loop.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sluice.core.context import Attempt, RequestRecord
from sluice.core.types import Operation
from sluice.settings import TracingConfig
from sluice.storage.records import RequestLogEntry

_Value = str | int | float | bool | tuple[str, ...]
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SCOPE = InstrumentationScope("sluice")
# gen_ai.provider.name's well-known values, by the provider names Sluice configures.
PROVIDER_NAMES = {
    "anthropic": "anthropic",
    "openai": "openai",
    "azure": "azure.ai.openai",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "groq": "groq",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
}
OPERATION_NAMES = {Operation.GENERATE: "chat", Operation.EMBED: "embeddings", Operation.COUNT_TOKENS: "count_tokens"}


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a W3C traceparent, or None when it is not one
    (an all-zero id is invalid, and so is anything else a hostile caller may send)."""
    if not value or len(value) != 55:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(int(match.group(3), 16) & 1)


@dataclass(slots=True)
class _Trace:
    trace_id: int
    span_id: int  # the request's span
    parent: SpanContext | None
    sampled: bool
    link: SpanContext | None = None
    attempts: dict[int, int] = field(default_factory=dict)  # id(Attempt) -> its span id


class Tracer:
    def __init__(self, config: TracingConfig, processor: SpanProcessor) -> None:
        self.config = config
        self.processor = processor
        self.resource = Resource.create({"service.name": config.service_name})
        self._live: dict[str, _Trace] = {}
        self._ids = random.Random(os.urandom(32))
        self._threshold = int(config.sample_ratio * (1 << 64))

    def _begin(self, headers: Mapping[str, str]) -> _Trace:
        caller = parse_traceparent(headers.get("traceparent"))
        span_id = self._ids.getrandbits(64) or 1
        if caller is not None and self.config.follow_caller:
            trace_id, parent_id, sampled = caller
            parent = SpanContext(trace_id, parent_id, is_remote=True, trace_flags=TraceFlags(int(sampled)))
            return _Trace(trace_id, span_id, parent, sampled)
        trace_id = self._ids.getrandbits(128) or 1
        sampled = (trace_id & 0xFFFFFFFFFFFFFFFF) < self._threshold  # as TraceIdRatioBased decides
        link = None
        if caller is not None:
            link = SpanContext(caller[0], caller[1], is_remote=True, trace_flags=TraceFlags(int(caller[2])))
        return _Trace(trace_id, span_id, None, sampled, link)

    def outbound(self, record: RequestRecord, headers: Mapping[str, str], attempt: Attempt) -> str | None:
        """The `traceparent` for the provider call of `attempt`: the attempt's own span."""
        trace = self._live.get(record.request_id)
        if trace is None:
            trace = self._live[record.request_id] = self._begin(headers)
        if not trace.sampled:
            return headers.get("traceparent") if trace.parent is not None else None
        span_id = self._ids.getrandbits(64) or 1
        trace.attempts[id(attempt)] = span_id
        return f"00-{trace.trace_id:032x}-{span_id:016x}-01"

    def finished(self, record: RequestRecord, entry: RequestLogEntry, attempts: Sequence[Attempt]) -> None:
        trace = self._live.pop(record.request_id, None)
        if trace is None:  # refused before any provider was called: its own trace
            trace = self._begin({})
        if not trace.sampled:
            return
        start = int(record.started_unix * 1e9)
        end = start + int(entry.latency_ms * 1e6)
        op = OPERATION_NAMES.get(record.operation, record.operation.value)
        context = SpanContext(trace.trace_id, trace.span_id, is_remote=False, trace_flags=TraceFlags(1))
        served = next((a.served_model for a in reversed(attempts) if a.served_model), None) or entry.model
        attrs: dict[str, _Value] = {
            "gen_ai.operation.name": op,
            "http.request.method": "POST",
            "url.path": entry.path,
            "http.response.status_code": entry.status,
            "sluice.request_id": entry.request_id,
            "sluice.surface": entry.surface,
            "sluice.decision": entry.decision,
            "sluice.cost_usd": entry.cost_pico / 1e12,
        }
        if entry.requested_model:
            attrs["gen_ai.request.model"] = entry.requested_model
        if entry.provider:
            attrs["gen_ai.provider.name"] = attrs["gen_ai.system"] = PROVIDER_NAMES.get(entry.provider, entry.provider)
        if served:
            attrs["gen_ai.response.model"] = served
        finish = next((a.finish_reasons for a in reversed(attempts) if a.finish_reasons), ())
        if finish:
            attrs["gen_ai.response.finish_reasons"] = finish
        if entry.decision == "allow" or entry.input_tokens or entry.output_tokens:
            attrs["gen_ai.usage.input_tokens"] = entry.input_tokens
            attrs["gen_ai.usage.output_tokens"] = entry.output_tokens
        if entry.cache_read_tokens:
            attrs["gen_ai.usage.cache_read.input_tokens"] = entry.cache_read_tokens
        if entry.cache_write_tokens:
            attrs["gen_ai.usage.cache_creation.input_tokens"] = entry.cache_write_tokens
        for name, value in (("sluice.virtual_key", entry.virtual_key_id), ("sluice.team", entry.team_id),
                            ("sluice.route", entry.route), ("error.type", entry.error_kind)):  # fmt: skip
            if value:
                attrs[name] = value
        status = Status(StatusCode.ERROR, entry.reason or "") if entry.decision != "allow" else Status(StatusCode.UNSET)
        spans = [
            ReadableSpan(
                f"{op} {entry.requested_model or ''}".strip(),
                context,
                trace.parent,
                self.resource,
                attrs,
                links=[Link(trace.link)] if trace.link is not None else (),
                kind=SpanKind.SERVER,
                status=status,
                start_time=start,
                end_time=end,
                instrumentation_scope=_SCOPE,
            )
        ]
        for attempt in attempts:
            span_id = trace.attempts.get(id(attempt))
            if span_id is not None and attempt.sent is not None:
                spans.append(self._attempt_span(trace, context, attempt, record, op, start, end, entry))
        for span in spans:
            self.processor.on_end(span)

    def _attempt_span(
        self,
        trace: _Trace,
        parent: SpanContext,
        attempt: Attempt,
        record: RequestRecord,
        op: str,
        request_start: int,
        request_end: int,
        entry: RequestLogEntry,
    ) -> ReadableSpan:
        assert attempt.sent is not None
        start = request_start + int((attempt.sent - record.started) * 1e9)
        end = request_end if attempt.outcome == "ok" else start + int((attempt.waited or 0) * 1e9)
        attrs: dict[str, _Value] = {
            "gen_ai.operation.name": op,
            "gen_ai.request.model": attempt.model,
        }
        if attempt.provider:
            attrs["gen_ai.provider.name"] = attrs["gen_ai.system"] = PROVIDER_NAMES.get(
                attempt.provider, attempt.provider
            )
        if attempt.status is not None:
            attrs["http.response.status_code"] = attempt.status
        if attempt.key:
            attrs["sluice.provider_key"] = attempt.key
        if attempt.translated:
            attrs["sluice.translated"] = attempt.translated
        if attempt.outcome == "ok":
            attrs["gen_ai.response.model"] = attempt.served_model or attempt.model
            attrs["gen_ai.usage.input_tokens"] = entry.input_tokens
            attrs["gen_ai.usage.output_tokens"] = entry.output_tokens
            if attempt.finish_reasons:
                attrs["gen_ai.response.finish_reasons"] = attempt.finish_reasons
            status = Status(StatusCode.UNSET)
        else:
            attrs["error.type"] = attempt.outcome or "cancelled"
            status = Status(StatusCode.ERROR, attempt.outcome or "")
        context = SpanContext(trace.trace_id, trace.attempts[id(attempt)], is_remote=False, trace_flags=TraceFlags(1))
        return ReadableSpan(
            f"{op} {attempt.model}",
            context,
            parent,
            self.resource,
            attrs,
            kind=SpanKind.CLIENT,
            status=status,
            start_time=start,
            end_time=max(start, end),
            instrumentation_scope=_SCOPE,
        )

    def force_flush(self) -> None:
        self.processor.force_flush()

    def shutdown(self) -> None:
        self.processor.shutdown()


def build_tracer(config: TracingConfig) -> Tracer:
    assert config.endpoint
    exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers), timeout=10)
    return Tracer(config, BatchSpanProcessor(exporter, schedule_delay_millis=1000))
