"""`sluice audit verify | export`: check the tamper-evident log offline, or write it out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

import orjson

from sluice.app import open_store
from sluice.audit.chain import Verdict, verify
from sluice.storage.records import AuditRecord


def to_json(record: AuditRecord) -> bytes:
    return orjson.dumps({**record.body(), "mac": record.mac})


def from_json(line: bytes) -> AuditRecord:
    raw = orjson.loads(line)
    return AuditRecord(
        int(raw["seq"]),
        datetime.fromisoformat(raw["ts"]),
        raw["kind"],
        raw["actor"],
        raw["data"],
        raw["key_id"],
        raw["prev_mac"],
        raw["mac"],
    )


async def verify_store(url: str, keys: dict[str, bytes]) -> Verdict:
    store = open_store(url)
    try:
        await store.migrate()
        return verify([r async for r in store.audit_records()], keys)
    finally:
        await store.close()


def verify_file(path: Path, keys: dict[str, bytes]) -> Verdict:
    def records() -> Iterator[AuditRecord]:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield from_json(line)

    return verify(records(), keys)


async def export(url: str, since: int, out: TextIO) -> int:
    store = open_store(url)
    count = 0
    try:
        await store.migrate()
        records: AsyncIterator[AuditRecord] = store.audit_records(since)
        async for record in records:
            out.write(to_json(record).decode() + "\n")
            count += 1
    finally:
        await store.close()
    return count
