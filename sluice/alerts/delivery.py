"""Delivers `alert` audit records to one sink, through the audit outbox: the runner keeps its
position in the store like every audit exporter (nothing lost while a sink is down or the
gateway restarts), skips the records that are not alerts, and sends one alert per delivery, so
an alert the sink accepted is never sent again after a later one fails."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl

from sluice.alerts import sinks
from sluice.audit.exporters.base import Delivery
from sluice.audit.outbox import ExportRunner
from sluice.core.errors import SluiceError
from sluice.settings import AlertSinkConfig, AuditExportConfig
from sluice.storage.ports import Store
from sluice.storage.records import AuditRecord
from sluice.upstream.client import Timeouts, UpstreamClient

log = logging.getLogger("sluice.alerts")
SCAN = 1000  # records read per pass when no alert is among them
RECENT = 1024  # alert ids a runner remembers having sent


class AlertSink:
    """The outbox's view of a sink (an `Exporter`): its name is its position's name in the store."""

    def __init__(self, config: AlertSinkConfig) -> None:
        self.config = config
        self.name = f"alert:{config.name}"

    def render(self, records: list[AuditRecord]) -> Delivery:
        alert = sinks.alert_of(records[0])
        if self.config.type == "slack":
            return sinks.slack(self.config, alert)
        if self.config.type == "teams":
            return sinks.teams(self.config, alert)
        return sinks.webhook(self.config, alert)

    def accepted(self, status: int, body: bytes) -> bool:
        return 200 <= status < 300


class AlertRunner(ExportRunner):
    def __init__(self, sink: AlertSinkConfig, store: Store, client: UpstreamClient, config: AuditExportConfig) -> None:
        super().__init__(AlertSink(sink), 1, store, client, config)
        self.sink = sink
        self._directory = store  # the keys and users, for notify_developer
        # Ids sent lately: an alert recorded twice (its first recorder died before marking its claim
        # recorded, and the check that took the claim over recorded it again) is sent once.
        self._sent: dict[str, None] = {}

    async def _deliver_next(self) -> int:
        """Moves past records that are not alerts, then sends the next alert, if any (under the
        sink's lease, taken by `deliver_once`)."""
        name = self.exporter.name
        position, failures = await self._store.export_position(name)
        scanned, alert = position, None
        async for record in self._store.audit_records(position + 1):
            if record.kind == "alert":
                alert = record
                break
            scanned = record.seq
            if scanned - position >= SCAN:
                break
        if alert is None:
            if scanned > position and not await self._move(scanned, failures):
                return 0
            return scanned - position
        alert_id = str(alert.data.get("alert_id", ""))
        if alert_id in self._sent:
            return 1 if await self._move(alert.seq, 0) else 0
        error = await self._deliver(alert)
        if error is None:
            if not await self._move(alert.seq, 0):
                return 0
            self._sent[alert_id] = None
            if len(self._sent) > RECENT:
                del self._sent[next(iter(self._sent))]
            self.delivered += 1
            return 1
        failures += 1
        log.warning("alert %s to %s not delivered (%s), failure %d", alert.seq, self.sink.name, error, failures)
        if failures >= self._config.max_failures:
            await self._store.dead_letter(name, alert.seq, alert.seq, error)
            await self._move(alert.seq, 0)
            return 0
        await self._move(alert.seq - 1, failures)
        await asyncio.sleep(min(self._config.backoff_max_s, 0.5 * 2 ** (failures - 1)))
        return 0

    async def _deliver(self, record: AuditRecord) -> str | None:
        if self.sink.type == "email":
            developer = None
            if self.sink.notify_developer:
                developer = await sinks.developer_email(self._directory, sinks.alert_of(record))
            if not self.sink.to and developer is None:
                return None  # nobody to tell about this one
            return await asyncio.to_thread(self._mail, record, developer)
        delivery = self.exporter.render([record])
        try:
            response = await self._client.post(
                self.exporter.name,
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

    def _mail(self, record: AuditRecord, developer: str | None = None) -> str | None:
        """Sends the alert's email (in a worker thread: smtplib blocks)."""
        cfg = self.sink
        assert cfg.smtp_host is not None
        try:
            message = sinks.email(cfg, sinks.alert_of(record), developer)
        except ValueError as exc:  # a header the email library refuses: a dead letter in time, not a crash
            return f"email: {exc}"[:300]
        try:
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=30) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username and cfg.password is not None:
                    smtp.login(cfg.username, cfg.password.get_secret_value())
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            return f"SMTP: {exc}"[:300]
        return None
