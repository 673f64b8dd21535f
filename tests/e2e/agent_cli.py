"""Running a real agent CLI (installed by `make e2e-deps`) against a `sluice serve` process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

NODE_BIN = Path(__file__).parent / "node_modules" / ".bin"


def installed(name: str) -> Path:
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed: run `make e2e-deps` (make test does it)")
    return path


def connect(client: str, gateway_url: str, key: str, home: Path, *extra: str) -> str:
    """`sluice connect CLIENT --write`: the tests set the CLIs up the way a user would."""
    argv = [sys.executable, "-m", "sluice.cli.main", "connect", client, "--url", gateway_url, "--key", key]
    result = subprocess.run(
        [*argv, "--home", str(home), "--write", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def run(argv: list[str], home: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI with a clean environment: only PATH, HOME, TERM, TMPDIR and what the test passes."""
    work, tmp = home / "work", home / "tmp"
    work.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    # TMPDIR too: Gemini CLI leaves an error report file in the temporary directory on every failure.
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "dumb", "TMPDIR": str(tmp)}
    return subprocess.run(
        argv,
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=work,
    )


def log_rows(db: Path, key_id: str, count: int = 1, wait: float = 5.0, **match: Any) -> list[dict[str, Any]]:
    """The gateway's request-log rows of one key (with the `match` column values), once at least `count` are
    written and no more come: the gateway writes them from a queue, after the response, and lets them wait
    for company (store.linger_ms, 50 ms), so the last request of a run can land after the ones before it."""
    deadline = time.monotonic() + wait
    seen = -1
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            rows = [
                dict(r)
                for r in conn.execute("select * from request_log where virtual_key_id = ? order by ts", (key_id,))
                if all(r[name] == value for name, value in match.items())
            ]
        if time.monotonic() > deadline or (len(rows) >= count and (wait == 0 or len(rows) == seen)):
            return rows
        seen = len(rows) if len(rows) >= count else -1
        time.sleep(0.3 if len(rows) >= count else 0.1)  # 0.3 s: past the linger and its commit
