"""Generic webhook: a JSON array of records, the body signed with HMAC-SHA256 in a header
(`X-Sluice-Signature: sha256=<hex>`), so the receiver can check who sent it."""

from __future__ import annotations

import hashlib
import hmac

import orjson

from sluice.audit.exporters.base import Delivery, document, event_id, ok_status
from sluice.storage.records import AuditRecord


class WebhookExporter:
    def __init__(self, name: str, url: str, secret: str, headers: dict[str, str] | None = None) -> None:
        self.name, self._url, self._secret, self._headers = name, url, secret.encode(), headers or {}

    def render(self, records: list[AuditRecord]) -> Delivery:
        body = orjson.dumps([document(r) for r in records])
        signature = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        headers = {
            **self._headers,
            "content-type": "application/json",
            "x-sluice-signature": f"sha256={signature}",
            "x-sluice-event-ids": ",".join(event_id(r) for r in records),
        }
        return Delivery(self._url, body, headers)

    accepted = staticmethod(ok_status)
