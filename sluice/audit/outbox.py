"""Delivers the audit log to each configured sink. The log itself is the durable outbox: every
exporter keeps its position (the last sequence number a sink accepted) in the store, so nothing
is lost while a sink is down for hours or the gateway restarts, and delivery is at least once,
each event carrying a stable id."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from sluice.audit.exporters.base import Exporter
from sluice.audit.exporters.datadog import DatadogExporter
from sluice.audit.exporters.elasticsearch import ElasticsearchExporter
from sluice.audit.exporters.otlp import OtlpExporter
from sluice.audit.exporters.splunk_hec import SplunkHecExporter
from sluice.audit.exporters.webhook import WebhookExporter
from sluice.core.errors import SluiceError
from sluice.core.tasks import cancel, spawn
from sluice.settings import AuditExportConfig, AuditExporterConfig
from sluice.storage.ports import AuditStore
from sluice.storage.records import AuditRecord
from sluice.upstream.client import Timeouts, UpstreamClient

log = logging.getLogger("sluice.audit.export")


def build_exporter(cfg: AuditExporterConfig) -> Exporter:
    def secret(value: object) -> str:
        return value.get_secret_value() if value is not None else ""  # type: ignore[attr-defined]

    if cfg.type == "webhook":
        return WebhookExporter(cfg.name, cfg.url, secret(cfg.secret), cfg.headers)
    if cfg.type == "splunk_hec":
        return SplunkHecExporter(cfg.name, cfg.url, secret(cfg.token), cfg.index)
    if cfg.type == "datadog":
        return DatadogExporter(cfg.name, cfg.url, secret(cfg.api_key), cfg.tags)
    if cfg.type == "elasticsearch":
        return ElasticsearchExporter(
            cfg.name,
            cfg.url,
            cfg.index or "sluice-audit",
            api_key=secret(cfg.api_key) or None,
            username=cfg.username,
            password=secret(cfg.password) or None,
        )
    return OtlpExporter(cfg.name, cfg.url, cfg.headers)


class ExportRunner:
    def __init__(
        self, exporter: Exporter, batch_size: int, store: AuditStore, client: UpstreamClient, config: AuditExportConfig
    ) -> None:
        self.exporter = exporter
        self._batch_size = batch_size
        self._store = store
        self._client = client
        self._config = config
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        # This runner's name in the sink's lease: one process delivers to a sink at a time.
        self.holder = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.leased = False
        self._leased_until = 0  # ms: this runner's lease runs to here, as it last took it
        self.now_ms: Callable[[], int] = lambda: int(time.time() * 1000)  # the lease's clock

    def start(self) -> None:
        self._task = spawn(self._run(), name=f"audit-export-{self.exporter.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        if self.leased:
            self.leased = False
            try:  # another replica takes over at once instead of after the lease lapses
                await self._store.release_export_lease(self.exporter.name, self.holder)
            except Exception:
                log.warning("audit export %s: lease not released", self.exporter.name, exc_info=True)

    async def _lease(self) -> bool:
        """Takes or renews the sink's lease before a delivery: False while another process has it.
        A lease with more than two thirds of its time to run is not renewed (no write per poll);
        a delivery outlasting the rest would still be fenced off when it stores its position."""
        ttl_ms, now = int(self._config.lease_s * 1000), self.now_ms()
        if self.leased and now < self._leased_until - 2 * ttl_ms // 3:
            return True
        held = await self._store.take_export_lease(self.exporter.name, self.holder, now, ttl_ms)
        if held != self.leased:
            log.info("audit export %s: %s the delivery lease", self.exporter.name, "took" if held else "lost")
        self.leased, self._leased_until = held, now + ttl_ms if held else 0
        return held

    async def _move(self, seq: int, failures: int) -> bool:
        """Stores the sink's position, unless this process lost the lease meanwhile."""
        moved = await self._store.set_export_position(self.exporter.name, seq, failures, self.holder)
        if not moved:
            log.warning(
                "audit export %s: lease lost during a delivery; position left to its holder", self.exporter.name
            )
            self.leased = False
        return moved

    async def backlog(self) -> int:
        """Records not yet accepted by this sink (a metric for operators)."""
        last = await self._store.last_audit()
        position, _ = await self._store.export_position(self.exporter.name)
        return max(0, (last.seq if last else 0) - position)

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.deliver_once()
            except Exception:
                log.exception("audit export %s failed unexpectedly", self.exporter.name)
                sent = 0
            if not sent:
                await asyncio.sleep(self._config.poll_interval_s)

    async def deliver_once(self) -> int:
        """Sends what comes next, if this process holds the sink's lease. Returns how many records
        the sink accepted (or were passed over)."""
        if not await self._lease():
            return 0
        return await self._deliver_next()

    async def _deliver_next(self) -> int:
        """Sends the next batch, if any. Returns how many records the sink accepted."""
        position, failures = await self._store.export_position(self.exporter.name)
        batch: list[AuditRecord] = []
        async for record in self._store.audit_records(position + 1):
            batch.append(record)
            if len(batch) >= self._batch_size:
                break
        if not batch:
            return 0
        error = await self._send(batch)
        if error is None:
            if not await self._move(batch[-1].seq, 0):
                return 0
            self.delivered += len(batch)
            return len(batch)
        failures += 1
        log.warning(
            "audit export %s: records %d-%d not accepted (%s), failure %d of %d",
            self.exporter.name,
            batch[0].seq,
            batch[-1].seq,
            error,
            failures,
            self._config.max_failures,
        )
        if failures >= self._config.max_failures:
            await self._store.dead_letter(self.exporter.name, batch[0].seq, batch[-1].seq, error)
            await self._move(batch[-1].seq, 0)
            return 0
        await self._move(position, failures)
        await asyncio.sleep(min(self._config.backoff_max_s, 0.5 * 2 ** (failures - 1)))
        return 0

    async def _send(self, batch: list[AuditRecord]) -> str | None:
        delivery = self.exporter.render(batch)
        try:
            response = await self._client.post(
                f"audit:{self.exporter.name}",
                delivery.url,
                delivery.headers,
                delivery.body,
                Timeouts(connect=5, first_byte=30, read=30),
            )
            body = await response.read()
        except SluiceError as exc:
            return exc.message
        if self.exporter.accepted(response.status, body):
            return None
        return f"HTTP {response.status}: {body[:200].decode('utf-8', 'replace')}"


class AuditExport:
    """Every configured exporter, running in the background."""

    def __init__(
        self, exporters: list[AuditExporterConfig], config: AuditExportConfig, store: AuditStore, client: UpstreamClient
    ) -> None:
        self.runners = [ExportRunner(build_exporter(c), c.batch_size, store, client, config) for c in exporters]

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.stop()
