"""Signed checkpoints without configuration, and exports that verify on their own.

Only `audit.hmac_key` is configured: the gateway generates its Ed25519 signing key on first start
(mode 600, public key beside it and in the log once), so a log cut short at the end is caught.
An export carries the signed checkpoint of its last record: it verifies later, after the gateway
has signed checkpoints past its end, and a copy cut short is caught.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sluice.app import build_services
from sluice.audit import checkpoints
from sluice.cli.audit import keygen
from sluice.settings import parse_config
from tests.integration.test_audit_tamper import KEY, verify


def _config(tmp: Path, url: str, audit: dict[str, Any]) -> Path:
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump({"store": {"url": url}, "audit": audit}))
    return path


async def _traffic(url: str, audit: dict[str, Any], n: int) -> None:
    """What a running gateway does: append records and sign checkpoints, with its own defaults."""
    doc = {"store": {"url": url}, "audit": audit, "request_log": {"spill_path": url[10:] + ".spill"}}
    services = build_services(parse_config(doc))
    await services.start()
    for i in range(n):
        await services.audit.append("request", "vk-a", {"n": i})
    await services.stop()


def test_checkpoints_are_on_by_default_and_catch_a_cut_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "g.db"
    url = f"sqlite:///{db}"
    audit = {"hmac_key": KEY, "checkpoint_every_records": 3}
    config = _config(tmp_path, url, audit)
    with caplog.at_level(logging.WARNING, logger="sluice.audit"):
        asyncio.run(_traffic(url, audit, 10))
    key_file = Path(f"{db}.checkpoint.key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    public = Path(f"{key_file}.pub").read_text().strip()
    assert sum(public in r.getMessage() for r in caplog.records) == 1  # the public key, printed once
    assert Path(f"{db}.checkpoints.jsonl").read_text().count("\n") >= 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sluice.audit"):
        asyncio.run(_traffic(url, audit, 2))  # a restart reuses the key
    assert not any(public in r.getMessage() for r in caplog.records)
    assert verify(config) == (0, "ok: 12 record(s), chain intact\n")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 8")
    code, output = verify(config)
    assert code == 1 and "truncated: it ends at record 8" in output, output


def test_audit_checkpoints_false_turns_them_off(tmp_path: Path) -> None:
    db = tmp_path / "off.db"
    asyncio.run(_traffic(f"sqlite:///{db}", {"hmac_key": KEY, "checkpoints": False}, 3))
    assert not Path(f"{db}.checkpoint.key").exists() and not Path(f"{db}.checkpoints.jsonl").exists()


@pytest.mark.parametrize("configured", ["generated key", "configured key"])
def test_an_export_verifies_later_and_a_cut_copy_is_caught(tmp_path: Path, configured: str) -> None:
    from sluice.cli.main import app

    url = f"sqlite:///{tmp_path / 'e.db'}"
    audit: dict[str, Any] = {"hmac_key": KEY, "checkpoint_every_records": 2}
    if configured == "configured key":
        private, public = keygen()
        audit |= {
            "checkpoint_key": private,
            "checkpoint_public_key": public,
            "checkpoint_path": str(tmp_path / "cp.jsonl"),
        }
    config = _config(tmp_path, url, audit)
    asyncio.run(_traffic(url, audit, 7))
    exported = CliRunner().invoke(app, ["audit", "export", "--config", str(config)]).output
    export = tmp_path / "export.jsonl"
    export.write_text(exported)
    # More traffic: the gateway signs checkpoints past the export's end (its data-access record too).
    asyncio.run(_traffic(url, audit, 6))
    signed = tmp_path / ("cp.jsonl" if configured == "configured key" else "e.db.checkpoints.jsonl")
    assert max(cp.seq for cp in checkpoints.read(signed)) > 9
    assert verify(config, "--file", str(export)) == (0, "ok: 7 record(s), chain intact\n")
    assert verify(config)[0] == 0

    lines = exported.splitlines()
    export.write_text("\n".join(lines[:-1]) + "\n")  # the tail cut, checkpoint line and all
    code, output = verify(config, "--file", str(export))
    assert code == 1 and "carries no signed checkpoint" in output, output
    export.write_text("\n".join(lines[:5] + lines[-1:]) + "\n")  # records cut, the checkpoint kept
    code, output = verify(config, "--file", str(export))
    assert code == 1 and "truncated: it ends at record 5" in output, output

    # Truncation of the store itself stays caught.
    with sqlite3.connect(tmp_path / "e.db") as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 9")
    code, output = verify(config)
    assert code == 1 and "truncated" in output, output
