"""Verifying the audit log as stored or as exported: the chain from its retention anchor, then
the signed checkpoints. One implementation for `sluice audit verify` and the console's
"verify now"."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from sluice.audit import checkpoints
from sluice.audit.chain import Verdict, seal_anchor, verify
from sluice.settings import AuditConfig
from sluice.storage.records import AuditRecord


def verify_with_checkpoints(
    records: list[AuditRecord],
    keys: dict[str, bytes],
    config: AuditConfig,
    anchor: tuple[dict[str, Any], str] | None = None,
    *,
    carried: list[checkpoints.Checkpoint] | None = None,
) -> Verdict:
    """The chain, then the signed checkpoints. For the store (`carried` is None) every checkpoint
    must be reached: a log cut short at the end is caught. For an export (`carried`: the
    checkpoints the file itself carries) the file must reach what it carries, and agree with every
    checkpoint of the gateway it can reach; later ones vouch for records made after it."""
    start = None
    if anchor is not None:
        fields, seal = anchor
        key = keys.get(str(fields.get("key_id")))
        if key is None or not hmac.compare_digest(seal_anchor(key, fields), seal):
            return Verdict(False, 0, "the retention anchor was altered (its seal does not match)")
        start = (int(fields["seq"]), str(fields["mac"]))
    verdict = verify(records, keys, start=start)
    public = checkpoints.public_key(config) if config.checkpoints else None
    if not verdict.ok or public is None:
        return verdict
    pruned_up_to = start[0] if start else 0
    last_seq = records[-1].seq if records else 0
    kept = checkpoints.read(Path(config.checkpoint_path)) if config.checkpoint_path else []
    found = [cp for cp in kept if cp.seq > pruned_up_to]
    if carried is not None:
        if not carried:
            unvouched = "the export carries no signed checkpoint, so nothing vouches for its end (was it cut short?)"
            return Verdict(False, verdict.checked, unvouched)
        first_seq = records[0].seq if records else 0
        found = [*carried, *(cp for cp in found if first_seq <= cp.seq <= last_seq)]
    problem = checkpoints.check(found, {r.seq: r.mac for r in records}, last_seq, public)
    return Verdict(False, verdict.checked, problem) if problem else verdict
