"""OpenTelemetry logs over OTLP/HTTP with JSON encoding: `POST /v1/logs`, an
ExportLogsServiceRequest with one log record per audit record."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.audit.exporters.base import Delivery, document, event_id, ok_status
from sluice.storage.records import AuditRecord


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": "" if value is None else str(value)}}


class OtlpExporter:
    def __init__(self, name: str, url: str, headers: dict[str, str] | None = None) -> None:
        self.name, self._headers = name, headers or {}
        self._url = url.rstrip("/") + "/v1/logs"

    def render(self, records: list[AuditRecord]) -> Delivery:
        log_records = [
            {
                "timeUnixNano": str(int(r.ts.timestamp() * 1_000_000) * 1000),
                "severityNumber": 9,
                "severityText": "INFO",
                "body": {"stringValue": orjson.dumps(document(r)).decode()},
                "attributes": [
                    _attribute("sluice.audit.kind", r.kind),
                    _attribute("sluice.audit.actor", r.actor),
                    _attribute("sluice.audit.seq", r.seq),
                    _attribute("event.id", event_id(r)),
                ],
            }
            for r in records
        ]
        payload = {
            "resourceLogs": [
                {
                    "resource": {"attributes": [_attribute("service.name", "sluice")]},
                    "scopeLogs": [{"scope": {"name": "sluice.audit"}, "logRecords": log_records}],
                }
            ]
        }
        return Delivery(self._url, orjson.dumps(payload), {**self._headers, "content-type": "application/json"})

    accepted = staticmethod(ok_status)
