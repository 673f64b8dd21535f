"""Signed checkpoints of the chain head (Ed25519), written to a destination apart from the log.

The HMAC chain shows a record that was changed, removed or inserted in the middle, but not a log
cut short at the end, nor one replaced whole by someone holding the HMAC key. A checkpoint
vouches, with a signature only the gateway's private key can make, that record `seq` had MAC
`mac` at time `ts`. Verification then requires the log to reach every checkpoint, with the same
MAC there. Checkpoints are JSON lines, appended and fsynced.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sluice.audit.chain import canonical
from sluice.storage.records import AuditRecord


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    mac: str
    ts: str
    signature: str

    def statement(self) -> bytes:
        return canonical({"seq": self.seq, "mac": self.mac, "ts": self.ts})


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A raw 32-byte seed, base64 (what `sluice audit keygen` prints)."""
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def load_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text))


def public_key_of(private: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(private: Ed25519PrivateKey, record: AuditRecord) -> Checkpoint:
    unsigned = Checkpoint(record.seq, record.mac, record.ts.isoformat(), "")
    signature = base64.b64encode(private.sign(unsigned.statement())).decode()
    return Checkpoint(record.seq, record.mac, unsigned.ts, signature)


def append(path: Path, checkpoint: Checkpoint) -> None:
    line = (
        orjson.dumps(
            {"seq": checkpoint.seq, "mac": checkpoint.mac, "ts": checkpoint.ts, "signature": checkpoint.signature}
        )
        + b"\n"
    )
    with path.open("ab") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            raw = orjson.loads(line)
            out.append(Checkpoint(int(raw["seq"]), raw["mac"], raw["ts"], raw["signature"]))
    return out


def check(
    checkpoints: Iterable[Checkpoint], macs: dict[int, str], last_seq: int, public: Ed25519PublicKey
) -> str | None:
    """None when the log agrees with every checkpoint; otherwise what is wrong."""
    for cp in checkpoints:
        try:
            public.verify(base64.b64decode(cp.signature), cp.statement())
        except InvalidSignature:
            return f"checkpoint for record {cp.seq} has an invalid signature"
        if cp.seq > last_seq:
            return f"the log was truncated: it ends at record {last_seq}, a signed checkpoint vouches for {cp.seq}"
        if macs.get(cp.seq) != cp.mac:
            return f"record {cp.seq} differs from its signed checkpoint (the log was replaced)"
    return None
