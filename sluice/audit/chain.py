"""The tamper-evident chain (pure): canonical encoding, HMAC-SHA256 links, verification.

Record n's MAC is HMAC-SHA256(key[key_id], prev_mac || canonical(record n without its MAC)),
where prev_mac is record n-1's MAC (64 zero hex digits for the first record) and the canonical
encoding is JSON with keys sorted, no insignificant whitespace, UTF-8, and no floats (values are
strings, integers, booleans, null, lists and objects). Sequence numbers start at 1 and have no
gaps, so a deleted, inserted or reordered record breaks the chain where it happened, and a
modified one fails its own MAC. Keys rotate by id: each record names the key that sealed it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from sluice.storage.records import AuditRecord

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    _reject_floats(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("audit data holds no floats (their text is not canonical): use a string")
    if isinstance(value, Mapping):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def seal(key: bytes, body: dict[str, Any], *, floats_checked: bool = False) -> str:
    """`floats_checked`: the caller has made sure the body holds no float (AuditLog writes
    every float as text before sealing), so the walk over it is skipped."""
    body = sealed_body(body)
    prev = str(body["prev_mac"]).encode()
    encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS) if floats_checked else canonical(body)
    # hmac.digest is the one-shot C path (no HMAC object, no second hash copy): the same MAC as
    # hmac.new(...).hexdigest(), about 1 µs less a record.
    return hmac.digest(key, prev + encoded, "sha256").hex()


# Captured prompts and answers are sealed by digest (records whose data says
# `content_sealing: sha256`): the MAC covers sha256(canonical(content)), so the content can later be
# replaced by a tombstone that keeps the digest (retention, an erasure request) and the record,
# and the chain, still verify. Records sealed before this rule carry no marker and verify as before.
CONTENT_SEALING = "sha256"


def content_digest(content: Any) -> str:
    return hashlib.sha256(canonical(content)).hexdigest()


def is_tombstone(content: Any) -> bool:
    return isinstance(content, Mapping) and content.get("erased") is True and isinstance(content.get("sha256"), str)


def sealed_body(body: dict[str, Any]) -> dict[str, Any]:
    """What the MAC is computed over: the body, with sealed-by-digest content replaced by its digest."""
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("content_sealing") != CONTENT_SEALING or "content" not in data:
        return body
    content = data["content"]
    digest = str(content["sha256"]) if is_tombstone(content) else content_digest(content)
    return {**body, "data": {**data, "content": {"sha256": digest}}}


def make_record(
    key: bytes,
    key_id: str,
    prev: AuditRecord | None,
    ts: datetime,
    kind: str,
    actor: str,
    data: dict[str, Any],
    *,
    floats_checked: bool = False,
) -> AuditRecord:
    seq = prev.seq + 1 if prev else 1
    prev_mac = prev.mac if prev else GENESIS
    # The same fields as AuditRecord.body(), without building the record twice.
    body = {
        "seq": seq,
        "ts": ts.isoformat(),
        "kind": kind,
        "actor": actor,
        "data": data,
        "key_id": key_id,
        "prev_mac": prev_mac,
    }
    return AuditRecord(seq, ts, kind, actor, data, key_id, prev_mac, seal(key, body, floats_checked=floats_checked))


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    problem: str | None = None
    at_seq: int | None = None


def seal_anchor(key: bytes, anchor: dict[str, Any]) -> str:
    """Seals the point up to which records were pruned, so a prefix cannot be cut off unseen."""
    return hmac.new(key, b"anchor:" + canonical(anchor), hashlib.sha256).hexdigest()


def verify(
    records: Iterable[AuditRecord], keys: Mapping[str, bytes], *, start: tuple[int, str] | None = None
) -> Verdict:
    """Walks the records in storage order and names the first break. `start` is the (seq, mac)
    of the last pruned record, when older records were removed by retention."""
    expected_seq, prev_mac = (start[0] + 1, start[1]) if start else (1, GENESIS)
    checked = 0
    for record in records:
        if record.seq > expected_seq:
            problem = f"record {expected_seq} is missing (deleted or moved): record {record.seq} stands in its place"
            return Verdict(False, checked, problem, record.seq)
        if record.seq < expected_seq:
            problem = f"record {record.seq} appears after record {expected_seq - 1} (inserted or moved)"
            return Verdict(False, checked, problem, record.seq)
        key = keys.get(record.key_id)
        if key is None:
            return Verdict(False, checked, f"record {record.seq} names unknown key id {record.key_id!r}", record.seq)
        if record.prev_mac != prev_mac:
            return Verdict(False, checked, f"record {record.seq} does not follow record {record.seq - 1}", record.seq)
        if not hmac.compare_digest(seal(key, record.body()), record.mac):
            return Verdict(False, checked, f"record {record.seq} was modified (its MAC does not match)", record.seq)
        expected_seq, prev_mac, checked = record.seq + 1, record.mac, checked + 1
    return Verdict(True, checked)
