"""The Compose proxy's Caddyfile, run by a real Caddy in front of two real gateways: a replica
whose /readyz answers 503 (here: its Redis is unreachable) gets no request. The file is used as
shipped except for the upstream addresses (Docker's DNS is not here: `dynamic a` becomes `to`)
and the port. Skipped where caddy is not installed (Debian: apt-get install caddy)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT
from tests.support import GatewayThread, free_port

pytestmark = pytest.mark.slow

KEY = "sk-sluice-proxy-health-0000000000"


def _config(tmp: Path, **governance: object) -> dict[str, object]:
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "store": {"url": f"sqlite:///{tmp / 'sluice.db'}"},
        "request_log": {"spill_path": str(tmp / "spill.jsonl")},
        "governance": {"spend_journal_path": str(tmp / "journal.jsonl"), **governance},
        "virtual_keys": [{"id": "vk-p", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
    }


def _post(url: str) -> int:
    body = b'{"model":"fake/echo","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_replica_that_is_not_ready_gets_no_request(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    ready = GatewayThread(_config(tmp_path / "a"), tmp_path / "a")
    unready = GatewayThread(
        _config(tmp_path / "b", backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0"), tmp_path / "b"
    )
    port = free_port()
    shipped = (ROOT / "deploy" / "compose" / "Caddyfile").read_text()
    upstreams = f"to 127.0.0.1:{ready.port} 127.0.0.1:{unready.port}"
    caddyfile = re.sub(r"dynamic a \{[^}]*\}", upstreams, shipped).replace(":8080 {", f"http://127.0.0.1:{port} {{")
    assert upstreams in caddyfile and "health_uri /readyz" in caddyfile
    (tmp_path / "Caddyfile").write_text(caddyfile)
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    with ready, unready:
        proc = subprocess.Popen(
            [caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            time.sleep(3)  # one round of active checks (every 2 s) has marked the unready one down
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            statuses = [_post(f"http://127.0.0.1:{port}/v1/messages") for _ in range(20)]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert statuses == [200] * 20
        assert ready.services.recorder.recorded == 20 and unready.services.recorder.recorded == 0
