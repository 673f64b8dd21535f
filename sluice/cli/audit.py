"""`sluice audit verify | export`: check the tamper-evident log offline, or write it out."""

from __future__ import annotations

import base64
import getpass
import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from sluice.app import open_store
from sluice.audit import checkpoints
from sluice.audit.chain import Verdict, seal_anchor, verify
from sluice.audit.log import AuditLog
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


def verify_with_checkpoints(
    records: list[AuditRecord],
    keys: dict[str, bytes],
    config: AuditConfig,
    anchor: tuple[dict[str, Any], str] | None = None,
) -> Verdict:
    start = None
    if anchor is not None:
        fields, seal = anchor
        key = keys.get(str(fields.get("key_id")))
        if key is None or not hmac.compare_digest(seal_anchor(key, fields), seal):
            return Verdict(False, 0, "the retention anchor was altered (its seal does not match)")
        start = (int(fields["seq"]), str(fields["mac"]))
    verdict = verify(records, keys, start=start)
    if not verdict.ok or not (config.checkpoint_path and config.checkpoint_public_key):
        return verdict
    pruned_up_to = start[0] if start else 0
    found = [cp for cp in checkpoints.read(Path(config.checkpoint_path)) if cp.seq > pruned_up_to]
    problem = checkpoints.check(
        found,
        {r.seq: r.mac for r in records},
        records[-1].seq if records else 0,
        checkpoints.load_public_key(config.checkpoint_public_key),
    )
    return Verdict(False, verdict.checked, problem) if problem else verdict


async def verify_store(url: str, config: AuditConfig) -> Verdict:
    store = open_store(url)
    try:
        await store.migrate()
        records = [r async for r in store.audit_records()]
        return verify_with_checkpoints(records, config.keys(), config, await store.audit_anchor())
    finally:
        await store.close()


def verify_file(path: Path, config: AuditConfig) -> Verdict:
    def records() -> Iterator[AuditRecord]:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield from_json(line)

    return verify_with_checkpoints(list(records()), config.keys(), config)


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
        async for record in records:
            out.write(to_json(record).decode() + "\n")
            count += 1
        await AuditLog(config, store).append(
            "data_access", f"cli:{getpass.getuser()}", {"action": "audit_export", "since": since, "records": count}
        )
    finally:
        await store.close()
    return count
