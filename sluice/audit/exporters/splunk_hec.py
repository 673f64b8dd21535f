"""Splunk HTTP Event Collector: `POST /services/collector/event` with `Authorization: Splunk
<token>`, events as concatenated JSON objects {time, host, source, sourcetype, index, event}."""

from __future__ import annotations

import socket

from sluice.audit.exporters.base import Delivery, document, ndjson, ok_status
from sluice.storage.records import AuditRecord


class SplunkHecExporter:
    def __init__(self, name: str, url: str, token: str, index: str | None = None) -> None:
        self.name, self._token, self._index = name, token, index
        self._url = url.rstrip("/") + "/services/collector/event"
        self._host = socket.gethostname()

    def render(self, records: list[AuditRecord]) -> Delivery:
        events = []
        for r in records:
            event = {
                "time": f"{r.ts.timestamp():.6f}",
                "host": self._host,
                "source": "sluice",
                "sourcetype": "sluice:audit",
                "event": document(r),
            }
            if self._index:
                event["index"] = self._index
            events.append(event)
        headers = {"authorization": f"Splunk {self._token}", "content-type": "application/json"}
        return Delivery(self._url, ndjson(events), headers)

    accepted = staticmethod(ok_status)
