"""The request metrics: each finished request's log entry folded into plain dictionaries, shown
to Prometheus at scrape time.

Why not `prometheus_client`'s Counter and Histogram objects on the hot path: each `labels(...)`
call formats and locks (about 1-2 µs), and a request touches a dozen series. Here a request costs
a few dictionary updates keyed by tuples of the values it already carries (see
bench/metrics_record.py); the exposition formats them once per scrape. Everything runs on the
event loop's thread (the request's `finish` and the `/metrics` route alike), so nothing locks.

Cardinality: the labels are the surface, provider, model, status, decision, team and, only when
`observability.metrics.per_key` is on, the virtual key. A model name can come from the caller
(an allowlist with patterns), so each table holds at most `max_series` label sets; past that, new
label sets are counted under the value `_other`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sluice.core.context import Attempt
from sluice.storage.records import RequestLogEntry

PICO_PER_DOLLAR = 10**12
OTHER = "_other"
# Seconds. The whole request of an LLM call spans milliseconds (a refusal) to many minutes (a
# long stream); the provider's first byte is rarely under 100 ms; the gateway's own share should
# stay under a millisecond and is the one to watch for regressions.
REQUEST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
TTFB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
REFUSAL_KINDS = frozenset({"POLICY_BUDGET_EXCEEDED", "POLICY_BUDGET_BUSY", "POLICY_RATE_LIMITED"})
_QUIET_OUTCOMES = frozenset({"ok", "estimated", None})
_STATUS = {code: str(code) for code in range(100, 600)}  # no str() per request


@dataclass(slots=True)
class _Histogram:
    bounds: tuple[float, ...]
    series: dict[tuple[str, ...], list[float]] = field(default_factory=dict)  # per-bucket counts, then the sum

    def observe(self, key: tuple[str, ...], value: float, cap: int) -> None:
        slot = self.series.get(key)
        if slot is None:
            if len(self.series) >= cap:
                key = (OTHER,) * len(key)
            slot = self.series.setdefault(key, [0.0] * (len(self.bounds) + 2))
        slot[bisect_left(self.bounds, value)] += 1
        slot[-1] += value

    def family(self, name: str, doc: str, labels: Sequence[str]) -> HistogramMetricFamily:
        out = HistogramMetricFamily(name, doc, labels=labels)
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        for key, slot in sorted(self.series.items()):
            running, buckets = 0.0, []
            for le, count in zip(les, slot, strict=False):
                running += count
                buckets.append((le, running))
            out.add_metric(list(key), buckets, slot[-1])
        return out


def _bump(table: dict[tuple[str, ...], int], key: tuple[str, ...], cap: int, by: int = 1) -> None:
    if key not in table and len(table) >= cap:
        key = (OTHER,) * len(key)
    table[key] = table.get(key, 0) + by


class RequestMetrics(Collector):
    """Counts and times every finished request from its request log entry; a Prometheus collector."""

    def __init__(self, *, per_key: bool = False, max_series: int = 10_000) -> None:
        self.per_key = per_key
        self.max_series = max_series
        self.requests: dict[tuple[str, ...], int] = {}
        self.usage: dict[tuple[str, ...], list[int]] = {}  # input, output, cache read, cache write, cost (pico)
        self.refusals: dict[tuple[str, ...], int] = {}
        self.upstream_errors: dict[tuple[str, ...], int] = {}
        self.retries: dict[tuple[str, ...], int] = {}
        self.fallbacks: dict[tuple[str, ...], int] = {}
        self.duration = _Histogram(REQUEST_BUCKETS)
        self.ttfb = _Histogram(TTFB_BUCKETS)
        self.overhead = _Histogram(OVERHEAD_BUCKETS)

    def observe(self, entry: RequestLogEntry, attempts: Sequence[Attempt] = (), started: float = 0.0) -> None:
        """One finished request. `attempts` (with their timings) and `started` (the request's
        perf_counter start) give the provider's and the gateway's shares of its time."""
        cap = self.max_series
        provider, model, team, surface = entry.provider or "", entry.model or "", entry.team_id or "", entry.surface
        status = _STATUS.get(entry.status) or str(entry.status)
        if self.per_key:
            vk = entry.virtual_key_id or ""
            key: tuple[str, ...] = (surface, provider, model, status, entry.decision, team, vk)
            usage_key: tuple[str, ...] = (provider, model, team, vk)
        else:
            key = (surface, provider, model, status, entry.decision, team)
            usage_key = (provider, model, team)
        requests = self.requests
        if key in requests:
            requests[key] += 1
        else:
            _bump(requests, key, cap)
        latency = entry.latency_ms / 1000
        self.duration.observe((surface, provider), latency, cap)
        if entry.error_kind in REFUSAL_KINDS:
            _bump(self.refusals, (entry.error_kind or "", *key[5:]), cap)
        if entry.input_tokens or entry.output_tokens or entry.cost_pico:
            usage = self.usage.get(usage_key)
            if usage is None:
                if len(self.usage) >= cap:
                    usage_key = (OTHER,) * len(usage_key)
                usage = self.usage.setdefault(usage_key, [0, 0, 0, 0, 0])
            usage[0] += entry.input_tokens
            usage[1] += entry.output_tokens
            usage[2] += entry.cache_read_tokens
            usage[3] += entry.cache_write_tokens
            usage[4] += entry.cost_pico
        if attempts:
            self._attempts(entry, attempts, started, latency, cap)

    def _attempts(
        self, entry: RequestLogEntry, attempts: Sequence[Attempt], started: float, latency: float, cap: int
    ) -> None:
        first_byte = entry.ttfb_ms / 1000 if entry.ttfb_ms is not None else latency
        waited_total = 0.0
        previous: str | None = None
        for attempt in attempts:
            # Only an attempt that reached a provider (sent) can be an upstream error: a target
            # refused before (a limit, the allowlist, a translation) is the request's own outcome.
            if attempt.sent is not None and attempt.outcome not in _QUIET_OUTCOMES:
                kind = attempt.outcome or ""
                if kind.startswith("upstream "):
                    kind = "http_" + kind[9:]
                _bump(self.upstream_errors, (attempt.provider or "", kind), cap)
            if previous is not None:
                table = self.retries if attempt.model == previous else self.fallbacks
                _bump(table, (attempt.provider or "", attempt.model), cap)
            previous = attempt.model
            if attempt.sent is None:
                continue
            waited = attempt.waited
            if entry.stream and attempt.outcome == "ok":
                # A stream's first byte comes after its headers: the provider's wait ends with it.
                waited = max(0.0, first_byte - (attempt.sent - started))
            if waited is not None:
                waited_total += waited
                self.ttfb.observe((attempt.provider or "", attempt.model), waited, cap)
        if waited_total:
            self.overhead.observe((entry.surface,), max(0.0, first_byte - waited_total), cap)

    # -- exposition -------------------------------------------------------------------------------

    def _labels(self, *names: str) -> list[str]:
        return [*names, "team", "virtual_key"] if self.per_key else [*names, "team"]

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "sluice_requests",
            "Inference requests finished, by surface, provider, model, HTTP status and decision.",
            labels=self._labels("surface", "provider", "model", "status", "decision"),
        )
        for key, n in sorted(self.requests.items()):
            requests.add_metric(list(key), n)
        yield requests
        tokens = CounterMetricFamily(
            "sluice_tokens", "Tokens metered, by kind.", labels=self._labels("provider", "model", "kind")
        )
        cost = CounterMetricFamily(
            "sluice_cost_dollars", "Cost of the requests, in dollars.", labels=self._labels("provider", "model")
        )
        for key, usage in sorted(self.usage.items()):
            where, who = list(key[:2]), list(key[2:])
            for kind, n in zip(("input", "output", "cache_read", "cache_write"), usage, strict=False):
                tokens.add_metric([*where, kind, *who], n)
            cost.add_metric([*where, *who], usage[4] / PICO_PER_DOLLAR)
        yield tokens
        yield cost
        refusals = CounterMetricFamily(
            "sluice_limit_refusals",
            "Requests refused by a budget (POLICY_BUDGET_EXCEEDED, POLICY_BUDGET_BUSY) or a rate limit.",
            labels=self._labels("kind"),
        )
        for key, n in sorted(self.refusals.items()):
            refusals.add_metric(list(key), n)
        yield refusals
        yield from self._counter("sluice_upstream_errors", "Failed provider attempts, by kind.", self.upstream_errors)
        yield from self._counter("sluice_retries", "Attempts that retried the same model.", self.retries)
        yield from self._counter("sluice_fallbacks", "Attempts that fell back to another model.", self.fallbacks)
        yield self.duration.family(
            "sluice_request_duration_seconds", "Whole request, arrival to last byte.", ["surface", "provider"]
        )
        yield self.ttfb.family(
            "sluice_provider_ttfb_seconds",
            "Each provider attempt: sent to the answer's headers (a stream: its first piece).",
            ["provider", "model"],
        )
        yield self.overhead.family(
            "sluice_gateway_overhead_seconds",
            "The gateway's own share of the time to first byte (the provider's waits taken out).",
            ["surface"],
        )

    @staticmethod
    def _counter(name: str, doc: str, table: dict[tuple[str, ...], int]) -> Iterator[Metric]:
        labels = ["provider", "kind"] if name == "sluice_upstream_errors" else ["provider", "model"]
        family = CounterMetricFamily(name, doc, labels=labels)
        for key, n in sorted(table.items()):
            family.add_metric(list(key), n)
        yield family


class StreamsInFlight(Collector):
    """Requests whose answer streams now: counted from the first provider attempt that streams
    to the request's end (`Observer.finished`). Read at scrape time."""

    def __init__(self) -> None:
        self.open: dict[str, str] = {}  # request id -> surface

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("sluice_streams_in_flight", "Streaming requests open now.", labels=["surface"])
        counts: dict[str, int] = {}
        for surface in self.open.values():
            counts[surface] = counts.get(surface, 0) + 1
        for surface, n in sorted(counts.items()):
            gauge.add_metric([surface], n)
        yield gauge


MCP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class McpMetrics(Collector):
    """MCP tool calls, reads and prompt gets, and their denials, per server and tool, from the
    records the MCP gateway writes to the audit log."""

    def __init__(self, *, max_series: int = 10_000) -> None:
        self.max_series = max_series
        self.calls: dict[tuple[str, ...], int] = {}
        self.denials: dict[tuple[str, ...], int] = {}
        self.duration = _Histogram(MCP_BUCKETS)

    def observe(self, kind: str, data: dict[str, object]) -> None:
        server = str(data.get("server") or "")
        what = data.get("tool") or data.get("prompt") or data.get("method") or ""
        name, outcome = str(what)[:200], str(data.get("outcome") or "")
        if kind == "mcp_denied":
            _bump(self.denials, (server, name, outcome), self.max_series)
            return
        _bump(self.calls, (server, name, outcome), self.max_series)
        duration = data.get("duration_us")
        if isinstance(duration, int):
            self.duration.observe((server, name), duration / 1e6, self.max_series)

    def collect(self) -> Iterator[Metric]:
        labels = ["server", "tool", "outcome"]
        calls = CounterMetricFamily("sluice_mcp_calls", "MCP calls forwarded, by outcome.", labels=labels)
        for key, n in sorted(self.calls.items()):
            calls.add_metric(list(key), n)
        yield calls
        denials = CounterMetricFamily("sluice_mcp_denials", "MCP calls refused (denied, rate_limited).", labels=labels)
        for key, n in sorted(self.denials.items()):
            denials.add_metric(list(key), n)
        yield denials
        yield self.duration.family("sluice_mcp_call_duration_seconds", "MCP calls upstream.", ["server", "tool"])
