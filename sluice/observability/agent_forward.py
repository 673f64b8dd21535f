"""Signed-in agents' own OpenTelemetry, forwarded to the operator's collector
(`observability.agent_telemetry.forward`).

The OTLP receiver (sluice.gateway_signin.otlp) hands over each export it accepted, already parsed,
with the identity its bearer token proved. Every resource of the export gets that identity as
resource attributes (`enduser.id`, `sluice.user.id`, `sluice.virtual_key.id`, and the key's
access profile and team when it has them), replacing any the client sent under those names: the
client's own `user.*` attributes are its claim, these are the gateway's. The token is never
forwarded; the collector gets the configured headers only.

Submitting never waits: an export joins a bounded queue or, when it is full, is dropped and
counted. One background task serialises and posts each (OTLP/HTTP protobuf) through the upstream
client; a refusal or a transport failure is counted, not retried (the agent sends new points every
interval, and cumulative sums carry the totals). `sluice_agent_telemetry_forwarded_total{signal,
outcome}` (sent, failed, dropped) shows what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sluice.core.errors import SluiceError
from sluice.core.tasks import cancel, spawn
from sluice.settings import AgentTelemetryConfig
from sluice.upstream.client import Timeouts, UpstreamClient

log = logging.getLogger("sluice.observability")
SIGNALS = ("metrics", "logs", "traces")
OUTCOMES = ("sent", "failed", "dropped")
# Each export request's list of resources, by signal (opentelemetry-proto's field names).
_RESOURCES = {"metrics": "resource_metrics", "logs": "resource_logs", "traces": "resource_spans"}
IDENTITY_KEYS = ("enduser.id", "sluice.user.id", "sluice.virtual_key.id", "sluice.access_profile", "sluice.team.id")
_UPSTREAM = "agent-telemetry"  # the upstream client's name for this destination (its own slot gate)


def identity_attributes(
    user_id: str | None, key_id: str, profile_id: str | None, team_id: str | None
) -> dict[str, str]:
    """The person as the gateway knows them (from their token), as resource attributes."""
    found = {"sluice.virtual_key.id": key_id}
    if user_id:
        found["enduser.id"] = found["sluice.user.id"] = user_id
    if profile_id:
        found["sluice.access_profile"] = profile_id
    if team_id:
        found["sluice.team.id"] = team_id
    return found


def attribute(message: Message, signal: str, identity: Mapping[str, str]) -> None:
    """Sets `identity` on every resource of the export, in place; the client's own values under
    those names are removed first (they are not the gateway's to vouch for)."""
    for resource in getattr(message, _RESOURCES[signal]):
        attributes = resource.resource.attributes
        kept = [kv for kv in attributes if kv.key not in IDENTITY_KEYS]
        del attributes[:]
        attributes.extend(kept)
        attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in identity.items())


@dataclass(frozen=True, slots=True)
class _Export:
    signal: str
    message: Message


class AgentForwarder:
    def __init__(self, config: AgentTelemetryConfig, collector: str, client: UpstreamClient) -> None:
        self.config = config
        self.collector = collector.rstrip("/")
        self._client = client
        self._queue: asyncio.Queue[_Export] = asyncio.Queue(config.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._headers = {**config.headers, "content-type": "application/x-protobuf"}
        self._timeouts = Timeouts(connect=config.timeout_s, first_byte=config.timeout_s, read=config.timeout_s)
        self.counts: dict[tuple[str, str], int] = {(s, o): 0 for s in SIGNALS for o in OUTCOMES}

    def submit(self, signal: str, message: Message, identity: Mapping[str, str]) -> bool:
        """Queues an export for the collector, with the person's identity; False when the queue
        is full (dropped and counted). Never waits."""
        attribute(message, signal, identity)
        try:
            self._queue.put_nowait(_Export(signal, message))
        except asyncio.QueueFull:
            self.counts[signal, "dropped"] += 1
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = spawn(self._run(), name="agent-telemetry-forward")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Sends what is queued for up to `drain_s`, then stops."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_s)
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            export = await self._queue.get()
            try:
                outcome = await self._send(export)
            except Exception:  # a bug here must not stop the forwarding of the next export
                log.exception("forwarding agent %s failed", export.signal)
                outcome = "failed"
            finally:
                self._queue.task_done()
            self.counts[export.signal, outcome] += 1

    async def _send(self, export: _Export) -> str:
        body = export.message.SerializeToString()
        url = f"{self.collector}/v1/{export.signal}"
        try:
            response = await self._client.post(_UPSTREAM, url, self._headers, body, self._timeouts)
            await response.read()
        except SluiceError as err:
            log.warning("agent %s not forwarded to %s: %s", export.signal, self.collector, err.message)
            return "failed"
        if response.status >= 300:
            log.warning("agent %s not forwarded: the collector answered %s", export.signal, response.status)
            return "failed"
        return "sent"


class ForwardCollector(Collector):
    """The forwarder's counts and queue, read at scrape time."""

    def __init__(self, forwarder: AgentForwarder) -> None:
        self.forwarder = forwarder

    def collect(self) -> Iterator[Metric]:
        forwarded = CounterMetricFamily(
            "sluice_agent_telemetry_forwarded",
            "Agent OTLP exports forwarded to the collector (outcome: sent, failed = refused or unreachable, "
            "dropped = the queue was full).",
            labels=["signal", "outcome"],
        )
        for (signal, outcome), count in sorted(self.forwarder.counts.items()):
            forwarded.add_metric([signal, outcome], count)
        queued = GaugeMetricFamily("sluice_agent_telemetry_queued", "Agent OTLP exports waiting to be forwarded.")
        queued.add_metric([], self.forwarder.queued)
        yield forwarded
        yield queued
