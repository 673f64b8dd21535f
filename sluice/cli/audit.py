"""`sluice audit verify | export`: check the tamper-evident log offline, or write it out."""

from __future__ import annotations

import base64
import getpass
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

import orjson

from sluice.app import open_store
from sluice.audit import checkpoints
from sluice.audit.chain import Verdict
from sluice.audit.log import AuditLog
from sluice.audit.verification import verify_with_checkpoints
from sluice.settings import AuditConfig
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


async def verify_store(url: str, config: AuditConfig) -> Verdict:
    config = checkpoints.with_defaults(config, url)
    store = open_store(url)
    try:
        await store.migrate()
        records = [r async for r in store.audit_records()]
        return verify_with_checkpoints(records, config.keys(), config, await store.audit_anchor())
    finally:
        await store.close()


def verify_file(path: Path, config: AuditConfig, store_url: str) -> Verdict:
    config = checkpoints.with_defaults(config, store_url)
    records: list[AuditRecord] = []
    carried: list[checkpoints.Checkpoint] = []
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            raw = orjson.loads(line)
            if isinstance(raw, dict) and set(raw) == {"checkpoint"}:
                carried.append(checkpoints.from_dict(raw["checkpoint"]))
            else:
                records.append(from_json(line))
    return verify_with_checkpoints(records, config.keys(), config, carried=carried)


async def prune(url: str, config: AuditConfig, keep_days: int) -> int:
    store = open_store(url)
    try:
        await store.migrate()
        return await AuditLog(config, store).prune(keep_days, f"cli:{getpass.getuser()}")
    finally:
        await store.close()


def keygen() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed).decode(), checkpoints.public_key_of(private)


async def export(url: str, since: int, out: TextIO, config: AuditConfig) -> int:
    """Writes the records out, then records who read them (data access is audited too)."""
    store = open_store(url)
    count = 0
    try:
        await store.migrate()
        records: AsyncIterator[AuditRecord] = store.audit_records(since)
        last: AuditRecord | None = None
        async for record in records:
            out.write(to_json(record).decode() + "\n")
            count += 1
            last = record
        carried = _checkpoint_for(last, checkpoints.with_defaults(config, url))
        if carried is not None:
            # The file carries the signed checkpoint of its own last record, so it verifies on its
            # own, later and elsewhere, and a copy cut short is caught.
            out.write(orjson.dumps({"checkpoint": checkpoints.to_dict(carried)}).decode() + "\n")
        await AuditLog(config, store).append(
            "data_access", f"cli:{getpass.getuser()}", {"action": "audit_export", "since": since, "records": count}
        )
    finally:
        await store.close()
    return count


def _checkpoint_for(last: AuditRecord | None, config: AuditConfig) -> checkpoints.Checkpoint | None:
    """A checkpoint signed for the export's last record, or the gateway's latest one at or before it."""
    if last is None:
        return None
    # Only the gateway's own key may sign: a tool never makes one up (its signature would not verify).
    signer = checkpoints.signing_key(config, create=False) if config.enabled else None
    if signer is not None:
        return checkpoints.sign(signer, last)
    kept = checkpoints.read(Path(config.checkpoint_path)) if config.checkpoint_path else []
    reached = [cp for cp in kept if cp.seq <= last.seq]
    return reached[-1] if reached else None
