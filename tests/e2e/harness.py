"""A small shared harness for the e2e tests that drive a real agent CLI through a `sluice serve`
process: the gateway with a config and a strict fake upstream, the CLIs set up by `sluice connect`
as a user would have them (HOME, env), the `sluice` admin commands run against the gateway's own
config file, and reads of what the gateway recorded (request log, session ledger, audit log, stops).

It gathers what test_codex.py, test_gemini_cli.py, test_sessions.py and
test_claude_code_session_control.py each did by hand; those keep working as they are.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

log_rows = agent_cli.log_rows


@dataclass
class Ran:
    """What a CLI run printed, as the user saw it."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@contextlib.contextmanager
def gateway_with(
    config: Callable[[FakeUpstreamThread], dict[str, Any]], tmp: Path
) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    """A fake upstream and a `sluice serve` process on `config(upstream)` (the config names the
    upstream's address), both stopped at the end."""
    with FakeUpstreamThread() as upstream, GatewayProcess(config(upstream), tmp) as gateway:
        yield gateway, upstream


def sluice(gateway: GatewayProcess, *args: str, timeout: float = 60) -> Ran:
    """A `sluice` admin command (stop, resume, stops, sessions...) on the gateway's own config file,
    run as a separate process the way an operator runs it."""
    argv = [sys.executable, "-m", "sluice.cli.main", *args, "--config", str(gateway.config_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return Ran(result.returncode, result.stdout, result.stderr)


# -- the agent CLIs, as `sluice connect` sets them up -------------------------------------------


def codex(gateway: GatewayProcess, home: Path, key: str, model: str, prompt: str, *overrides: str) -> Ran:
    """`codex exec` set up by `sluice connect codex` (the model in its config.toml), without
    retries, so a refusal shows at once instead of after five reconnects."""
    agent_cli.connect("codex", gateway.base_url, key, home, "--model", model)
    argv = [str(agent_cli.installed("codex")), "exec", "--skip-git-repo-check"]
    argv += [arg for override in overrides for arg in ("-c", override)]
    argv += ["-c", "model_providers.sluice.request_max_retries=0", "-c", "model_providers.sluice.stream_max_retries=0"]
    result = agent_cli.run([*argv, prompt], home, {"SLUICE_API_KEY": key}, timeout=180)
    return Ran(result.returncode, result.stdout, result.stderr)


def gemini(gateway: GatewayProcess, home: Path, key: str, model: str, prompt: str, *args: str) -> Ran:
    """`gemini -p` through the shell profile `sluice connect gemini-cli` prints: its exports and its
    `gemini` shell function, which names each run's session with `x-sluice-session` (Gemini CLI
    sends no session id of its own)."""
    out = agent_cli.connect("gemini-cli", gateway.base_url, key, home, "--model", model)
    lines = out.splitlines()
    exports = [line for line in lines if line.startswith("export ")]
    start = next(i for i, line in enumerate(lines) if line.startswith("sluice_workspace()"))
    end = next(i for i, line in enumerate(lines) if line.startswith("gemini()"))
    work = home / "work"
    work.mkdir(exist_ok=True)
    quoted = " ".join(_sh_quote(a) for a in (*args, "-p", prompt))
    script = "\n".join([*exports, *lines[start : end + 1], f"cd {_sh_quote(str(work))}", f"gemini {quoted}"])
    path = f"{agent_cli.NODE_BIN}:/usr/local/bin:/usr/bin:/bin"
    # Headless runs need a trusted folder (otherwise exit 55).
    env = {"PATH": path, "GEMINI_CLI_TRUST_WORKSPACE": "true"}
    result = agent_cli.run(["bash", "-c", script], home, env, timeout=180)
    return Ran(result.returncode, result.stdout, result.stderr)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


# -- what the gateway recorded ------------------------------------------------------------------


def _query(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]


def audit(db: Path, kind: str) -> list[dict[str, Any]]:
    """The audit records of one kind, oldest first, with their data decoded."""
    rows = _query(db, "select * from audit_log where kind = ? order by seq", kind)
    return [{**r, "data": json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]} for r in rows]


def stops(db: Path) -> list[dict[str, Any]]:
    return _query(db, "select * from stops order by id")


def sessions(db: Path, key_id: str) -> list[dict[str, Any]]:
    """The key's sessions in the ledger."""
    return _query(db, "select * from agent_session where virtual_key_id = ? order by started_at", key_id)


def wait_for(probe: Callable[[], Any], wait: float = 30.0, step: float = 0.05) -> Any:
    """`probe()` once it is truthy (None after `wait` seconds)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(step)
    return None


@contextlib.contextmanager
def meanwhile(action: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Runs `action` on a thread beside the CLI (an operator acting mid-session); its result (or
    error) is in the dict yielded, once the block ends."""
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["result"] = action()
        except BaseException as exc:  # reported by the test, not lost on a thread
            done["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(timeout=60)
