"""`GET /metrics`: Prometheus text exposition, read fresh at every scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sluice.app import Services
from sluice.http.asgi import Receive, Scope, Send, respond
from sluice.http.scrape import ServicesCollector
from sluice.observability.agent_forward import ForwardCollector
from sluice.upstream.client import UpstreamClient


class UpstreamPoolCollector(Collector):
    """The upstream connection slots, read from the client at scrape time."""

    def __init__(self, client: UpstreamClient) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        saturated = CounterMetricFamily(
            "sluice_gateway_saturated",
            "Requests refused 503 gateway_saturated (reason: pool = no connection slot in time, sockets = none "
            "could be opened, loop = the event loop was stalled).",
            labels=["provider", "reason"],
        )
        for (provider, reason), count in sorted(self.client.saturated.items()):
            saturated.add_metric([provider, reason], count)
        in_use = GaugeMetricFamily(
            "sluice_upstream_connections_in_use", "Upstream exchanges open now.", labels=["provider"]
        )
        waiting = GaugeMetricFamily(
            "sluice_upstream_connections_waiting", "Requests waiting for a connection slot.", labels=["provider"]
        )
        for provider, gate in sorted(self.client.gates().items()):
            in_use.add_metric([provider], gate.in_use)
            waiting.add_metric([provider], gate.waiting)
        stalled = CounterMetricFamily(
            "sluice_event_loop_stalled_seconds",
            "Seconds the event loop ran late (CPU saturation, blocking calls); its timeouts are gateway_saturated.",
        )
        stalled.add_metric([], self.client.lag.stalled_total)
        yield saturated
        yield in_use
        yield waiting
        yield stalled


class MetricsRoute:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(UpstreamPoolCollector(services.client))
        self._recorded = Gauge(
            "sluice_request_log_recorded", "Requests handed to the request log.", registry=self.registry
        )
        self._written = Gauge("sluice_request_log_written", "Request log records stored.", registry=self.registry)
        self._spilled = Gauge(
            "sluice_request_log_spilled", "Request log records spilled to the overflow file.", registry=self.registry
        )
        self._journalled = Gauge(
            "sluice_spend_journalled",
            "Settlements waiting in the local spend journal for the store (non-zero: the store is down).",
            registry=self.registry,
        )
        self._backlog = Gauge(
            "sluice_audit_export_backlog",
            "Audit records a sink has not accepted yet.",
            ["exporter"],
            registry=self.registry,
        )
        self._delivered = Gauge(
            "sluice_audit_export_delivered",
            "Audit records delivered since start.",
            ["exporter"],
            registry=self.registry,
        )
        # The request metrics (folded per request by the engine's observer) and the gauges read
        # from the services at scrape time: docs/observability.md lists them all.
        observer = services.engine.observer
        for collector in (observer.metrics, observer.streams, observer.mcp):
            if collector is not None:
                self.registry.register(collector)
        if services.agent_forward is not None:
            self.registry.register(ForwardCollector(services.agent_forward))
        self._services = ServicesCollector(services)
        self.registry.register(self._services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        recorder = self.services.recorder
        self._recorded.set(recorder.recorded)
        self._written.set(recorder.written)
        self._spilled.set(recorder.spilled)
        self._journalled.set(self.services.limits.journalled)
        for runner in self.services.export.runners:
            self._backlog.labels(runner.exporter.name).set(await runner.backlog())
            self._delivered.labels(runner.exporter.name).set(runner.delivered)
        await self._services.refresh()
        await respond(send, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST, {})
