"""Datadog Logs intake: `POST /api/v2/logs` with `DD-API-KEY`, a JSON array of log entries
{ddsource, ddtags, hostname, service, message}."""

from __future__ import annotations

import socket

import orjson

from sluice.audit.exporters.base import Delivery, document, ok_status
from sluice.storage.records import AuditRecord


class DatadogExporter:
    def __init__(self, name: str, url: str, api_key: str, tags: str = "") -> None:
        self.name, self._api_key, self._tags = name, api_key, tags
        self._url = url.rstrip("/") + "/api/v2/logs"
        self._host = socket.gethostname()

    def render(self, records: list[AuditRecord]) -> Delivery:
        entries = [
            {
                "ddsource": "sluice",
                "ddtags": self._tags,
                "hostname": self._host,
                "service": "sluice-audit",
                "message": orjson.dumps(document(r)).decode(),
            }
            for r in records
        ]
        headers = {"dd-api-key": self._api_key, "content-type": "application/json"}
        return Delivery(self._url, orjson.dumps(entries), headers)

    accepted = staticmethod(ok_status)
