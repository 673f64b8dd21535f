"""Signed checkpoints of the chain head (Ed25519), written to a destination apart from the log.

The HMAC chain shows a record that was changed, removed or inserted in the middle, but not a log
cut short at the end, nor one replaced whole by someone holding the HMAC key. A checkpoint
vouches, with a signature only the gateway's private key can make, that record `seq` had MAC
`mac` at time `ts`. Verification then requires the log to reach every checkpoint, with the same
MAC there. Checkpoints are JSON lines, appended and fsynced.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sluice.audit.chain import canonical
from sluice.settings import AuditConfig
from sluice.storage.records import AuditRecord

log = logging.getLogger("sluice.audit")


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
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(private: Ed25519PrivateKey, record: AuditRecord) -> Checkpoint:
    unsigned = Checkpoint(record.seq, record.mac, record.ts.isoformat(), "")
    signature = base64.b64encode(private.sign(unsigned.statement())).decode()
    return Checkpoint(record.seq, record.mac, unsigned.ts, signature)


def to_dict(checkpoint: Checkpoint) -> dict[str, object]:
    return {"seq": checkpoint.seq, "mac": checkpoint.mac, "ts": checkpoint.ts, "signature": checkpoint.signature}


def from_dict(raw: dict[str, object]) -> Checkpoint:
    return Checkpoint(int(str(raw["seq"])), str(raw["mac"]), str(raw["ts"]), str(raw["signature"]))


def append(path: Path, checkpoint: Checkpoint) -> None:
    line = orjson.dumps(to_dict(checkpoint)) + b"\n"
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
            out.append(from_dict(orjson.loads(line)))
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


def with_defaults(config: AuditConfig, store_url: str) -> AuditConfig:
    """The audit section with the checkpoint paths filled in for this store (checkpoints are on by
    default): beside the SQLite file, else in the working directory, named after the database."""
    if not config.enabled or not config.checkpoints:
        return config
    database = store_url.split("?", 1)[0]
    if database.startswith("sqlite:///") and ":memory:" not in database and database[len("sqlite:///") :]:
        stem = database[len("sqlite:///") :]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    else:
        parsed = urlsplit(database)
        where = f"{parsed.hostname or 'local'}-{parsed.port or ''}-{parsed.path.strip('/') or 'db'}"
        stem = "sluice-audit-" + re.sub(r"[^A-Za-z0-9_.-]", "_", where)
    update: dict[str, str] = {}
    if not config.checkpoint_path:
        update["checkpoint_path"] = f"{stem}.checkpoints.jsonl"
    if not config.checkpoint_key and not config.checkpoint_key_path:
        update["checkpoint_key_path"] = f"{stem}.checkpoint.key"
    return config.model_copy(update=update) if update else config


def signing_key(config: AuditConfig, *, create: bool = True) -> Ed25519PrivateKey | None:
    """The configured key, or the one kept in `checkpoint_key_path`, generated there (mode 600)
    the first time, with its public key beside it (`.pub`) and in the log, once."""
    if not config.checkpoints or not config.checkpoint_path:
        return None
    if config.checkpoint_key is not None:
        return load_private_key(config.checkpoint_key.get_secret_value())
    if not config.checkpoint_key_path:
        return None
    path = Path(config.checkpoint_key_path)
    if not create:
        return load_private_key(path.read_text().strip()) if path.exists() else None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_private_key(path.read_text().strip())
    private = Ed25519PrivateKey.generate()
    raw, fmt = serialization.Encoding.Raw, serialization.PrivateFormat.Raw
    seed = private.private_bytes(raw, fmt, serialization.NoEncryption())
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(seed).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    public = public_key_of(private)
    Path(f"{path}.pub").write_text(public + "\n")
    log.warning(
        "audit: generated the checkpoint signing key %s (keep it private); its public key is %s. "
        "Pin it as audit.checkpoint_public_key where logs and exports are verified.",
        path,
        public,
    )
    return private


def public_key(config: AuditConfig) -> Ed25519PublicKey | None:
    """The key checkpoints are verified with: configured, else the generated key's `.pub` file."""
    if config.checkpoint_public_key:
        return load_public_key(config.checkpoint_public_key)
    if config.checkpoint_key is not None:
        return load_private_key(config.checkpoint_key.get_secret_value()).public_key()
    if config.checkpoint_key_path and Path(f"{config.checkpoint_key_path}.pub").exists():
        return load_public_key(Path(f"{config.checkpoint_key_path}.pub").read_text().strip())
    return None
