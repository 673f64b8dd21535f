"""`sluice serve` with nothing but an audit HMAC key: it generates the checkpoint signing key on its
first start and prints the public key once; `sluice audit verify` then catches a log cut short."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.gateway_process import GatewayProcess

CONFIG = {
    "audit": {"hmac_key": "e2e-audit-key-0123456789", "checkpoint_every_records": 1},
    "budgets": [{"id": f"b{i}", "team_id": "t", "max_limit": 10 + i, "reset_duration": "1d"} for i in range(4)],
}


def _verify(config: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli.main", "audit", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_first_start_generates_the_key_and_a_cut_tail_is_caught(tmp_path: Path) -> None:
    gw = GatewayProcess(CONFIG, tmp_path)
    with gw:
        pass
    public = Path(f"{gw.db}.checkpoint.key.pub").read_text().strip()
    assert gw.output().count(public) == 1, gw.output()
    assert Path(f"{gw.db}.checkpoint.key").stat().st_mode & 0o777 == 0o600
    with GatewayProcess(CONFIG, tmp_path) as again:  # the same store: the key is reused, not printed
        pass
    assert public not in again.output()  # (the log file is written afresh by each process)
    assert _verify(gw.config_path) == (0, "ok: 4 record(s), chain intact\n")
    with sqlite3.connect(gw.db) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 2")
    code, output = _verify(gw.config_path)
    assert code == 1 and "truncated: it ends at record 2" in output, output
