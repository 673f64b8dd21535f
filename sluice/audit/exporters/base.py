"""What every audit exporter shares: a rendered HTTP delivery and the stable event id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.audit.chain import canonical
from sluice.storage.records import AuditRecord


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Exporter(Protocol):
    name: str

    def render(self, records: list[AuditRecord]) -> Delivery: ...

    def accepted(self, status: int, body: bytes) -> bool: ...


def event_id(record: AuditRecord) -> str:
    """Stable across retries and restarts: sinks that de-duplicate by id see each event once."""
    return f"sluice-audit-{record.seq}-{record.mac[:16]}"


def document(record: AuditRecord) -> dict[str, Any]:
    return {**record.body(), "mac": record.mac, "event_id": event_id(record)}


def ndjson(docs: list[dict[str, Any]]) -> bytes:
    return b"".join(canonical(d) + b"\n" for d in docs)


def ok_status(status: int, body: bytes) -> bool:
    return 200 <= status < 300
