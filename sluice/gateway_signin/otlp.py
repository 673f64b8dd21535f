"""The agents' own telemetry (OTLP/HTTP, protobuf or JSON) at `/v1/metrics`, `/v1/logs` and
`/v1/traces` (sluice.http.agent_telemetry): a signed-in Claude Code's
(docs/design/claude-gateway-protocol.md, "Telemetry"), and Codex's and Gemini CLI's with a virtual
key. Metrics are stored per data point, attributed to the key (and its person) that sent them:
the credential, not the client's own `user.*` attributes, which any client can set. Logs and
traces are checked and acknowledged (the protocol: answer 200 whether you keep them or not), not
kept.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from sluice.storage.grants import AGENT_TOKEN_METRICS, AgentMetric
from sluice.storage.records import VirtualKey

MAX_BODY = 4 * 1024 * 1024  # an export batch, compressed or not
MAX_ATTRIBUTES = 32
MAX_TEXT = 200
MAX_POINTS = 5000  # per request: a batch beyond is refused, not half stored

SIGNALS: dict[str, type[Message]] = {
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
    "traces": ExportTraceServiceRequest,
}


class OtlpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def decompress(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise OtlpError(415, f"Unsupported Content-Encoding {encoding!r}.")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, MAX_BODY + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise OtlpError(400, "The body does not decompress.") from exc
    if len(out) > MAX_BODY or inflater.unconsumed_tail:
        raise OtlpError(413, "The export batch is too large.")  # a decompression bomb stops here
    return out


def parse(signal: str, body: bytes, content_type: str) -> Message:
    message = SIGNALS[signal]()
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/x-protobuf":
            message.ParseFromString(body)
        elif kind == "application/json":
            json_format.Parse(body.decode("utf-8"), message, ignore_unknown_fields=True)
        else:
            raise OtlpError(415, "Send application/x-protobuf or application/json (OTLP/HTTP).")
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
        raise OtlpError(400, f"Not an OTLP {signal} export: {str(exc)[:200]}") from exc
    return message


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value[:MAX_TEXT]
    if kind in ("int_value", "double_value", "bool_value"):
        return getattr(value, kind)
    return None  # arrays, maps, bytes: not kept


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in list(pairs)[:MAX_ATTRIBUTES]:
        assert isinstance(pair, KeyValue)
        value = _value(pair.value)
        if value is not None:
            found[pair.key[:MAX_TEXT]] = value
    return found


# The token counts each agent reports, and which of their `type`s add up to what the model was
# billed for: the others are parts of those (Gemini's `cache` is inside `input`, per the API's
# usageMetadata; Codex's `cached_input` inside `input`, `reasoning_output` inside `output`, `total`
# their sum), so they are not stored as points of their own (they are still forwarded).
TOKEN_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "claude_code.token.usage": ("type", frozenset({"input", "output", "cacheRead", "cacheCreation"})),
    "gemini_cli.token.usage": ("type", frozenset({"input", "output", "thought", "tool"})),
    "codex.turn.token_usage": ("token_type", frozenset({"input", "output"})),
}
assert tuple(TOKEN_TYPES) == AGENT_TOKEN_METRICS  # what the spend report sums
_CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
MAX_SERIES_PER_KEY = 5000


class Cumulative:
    """What each cumulative series last said, so a cumulative sum is stored as what it added since
    (Gemini CLI's default; Claude Code and Codex send deltas). In this process only: after a
    restart, or on another replica, a series' next point counts from zero (`sluice connect
    gemini-cli --telemetry` asks for deltas, which have no such gap). Bounded per key, so one key
    sending endless series forgets only its own, never another person's."""

    def __init__(self, per_key: int = MAX_SERIES_PER_KEY) -> None:
        self._last: dict[str, dict[bytes, float]] = {}
        self._per_key = per_key

    def added(self, key_id: str, series: tuple[Any, ...], value: float) -> float:
        known = self._last.setdefault(key_id, {})
        digest = hashlib.blake2b(repr(series).encode(), digest_size=16).digest()  # a series' text can be KBs
        before = known.pop(digest, None)
        known[digest] = value
        if len(known) > self._per_key:
            del known[next(iter(known))]  # the key's least recently reported series
        return value if before is None or value < before else value - before  # lower: the counter restarted


def _kept(name: str, attributes: dict[str, Any]) -> bool:
    rule = TOKEN_TYPES.get(name)
    return rule is None or attributes.get(rule[0]) in rule[1]


def metric_rows(
    request: ExportMetricsServiceRequest, key: VirtualKey, cumulative: Cumulative | None = None
) -> list[AgentMetric]:
    """Every number data point of sums and gauges (and of Codex's token histogram, its sum), with
    its metric, unit and attributes."""
    rows: list[AgentMetric] = []
    for resource in request.resource_metrics:
        resource_attrs = _attributes(resource.resource.attributes)
        service = str(resource_attrs.get("service.name") or "unknown")[:MAX_TEXT]
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                data = metric.WhichOneof("data")
                name = metric.name[:MAX_TEXT]
                if data not in ("sum", "gauge") and not (data == "histogram" and name in TOKEN_TYPES):
                    continue  # other histograms and summaries: not kept yet
                body = getattr(metric, data)
                running = data == "sum" and body.aggregation_temporality == _CUMULATIVE
                for point in body.data_points:
                    if data == "histogram":
                        value = float(point.sum)
                    else:
                        kind = point.WhichOneof("value")
                        value = float(point.as_double if kind == "as_double" else point.as_int)
                    attributes = _attributes(point.attributes)
                    if not _kept(name, attributes):
                        continue
                    if running and cumulative is not None:
                        series = (service, name, point.start_time_unix_nano, *sorted(attributes.items()))
                        value = cumulative.added(key.id, series, value)
                    nanos = point.time_unix_nano
                    ts = datetime.fromtimestamp(nanos / 1e9, UTC) if nanos else datetime.now(UTC)
                    rows.append(
                        AgentMetric(ts, key.user_id, key.id, service, name, attributes, value, metric.unit[:50])
                    )
                    if len(rows) > MAX_POINTS:
                        raise OtlpError(413, f"More than {MAX_POINTS} data points in one export.")
    return rows


def success(content_type: str) -> tuple[bytes, str]:
    """OTLP/HTTP's success answer: an empty Export*ServiceResponse in the request's encoding."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return b"{}", "application/json"
    return b"", "application/x-protobuf"
