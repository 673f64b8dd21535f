"""Elasticsearch / OpenSearch `_bulk`: NDJSON action + document pairs, `_id` = the stable event
id, so a batch delivered twice is stored once. A 200 whose `errors` is true is a failure."""

from __future__ import annotations

import base64

import orjson

from sluice.audit.exporters.base import Delivery, document, event_id, ndjson
from sluice.storage.records import AuditRecord


class ElasticsearchExporter:
    def __init__(
        self,
        name: str,
        url: str,
        index: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.name, self._index = name, index
        self._url = url.rstrip("/") + "/_bulk"
        self._headers = {"content-type": "application/x-ndjson"}
        if api_key:
            self._headers["authorization"] = f"ApiKey {api_key}"
        elif username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["authorization"] = f"Basic {token}"

    def render(self, records: list[AuditRecord]) -> Delivery:
        lines = []
        for r in records:
            lines.append({"index": {"_index": self._index, "_id": event_id(r)}})
            lines.append(document(r))
        return Delivery(self._url, ndjson(lines), dict(self._headers))

    def accepted(self, status: int, body: bytes) -> bool:
        if not 200 <= status < 300:
            return False
        try:
            return orjson.loads(body).get("errors") is False
        except (orjson.JSONDecodeError, AttributeError):
            return False
