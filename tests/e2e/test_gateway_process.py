"""A real `sluice serve` process over real sockets: start-up banner, graceful shutdown and
revocation by CLI while serving."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.e2e.gateway_process import GatewayProcess

KEY = "sk-sluice-e2e-000000000000000000"
CONFIG = {"virtual_keys": [{"id": "vk-e2e", "value": KEY, "provider_configs": [{"provider": "fake"}]}]}


async def _fire(base_url: str, n: int, *, stream: bool) -> list[int]:
    body = {"model": "fake/slow", "max_tokens": 20, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(base_url + "/v1/messages", json=body, headers=headers) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one() for _ in range(n))))


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from request_log").fetchone()[0])


def test_banner_and_nothing_lost_on_graceful_shutdown(tmp_path: Path) -> None:
    gw = GatewayProcess(CONFIG, tmp_path).start()
    try:
        statuses = asyncio.run(_fire(gw.base_url, 150, stream=False)) + asyncio.run(_fire(gw.base_url, 50, stream=True))
        assert statuses == [200] * 200
    finally:
        # uvicorn re-raises the signal after its graceful shutdown, hence -SIGTERM.
        assert gw.stop() in (0, -15)
    out = gw.output()
    assert "Traceback" not in out
    # Not a terminal: the banner names the key but keeps its secret out of the output (and logs).
    assert "curl -s http://127.0.0.1" in out and "ANTHROPIC_AUTH_TOKEN=<secret of vk-e2e>" in out
    assert KEY not in out
    assert _rows(gw.db) == 200  # every request of the run is in the log after SIGTERM


def test_cli_revocation_applies_to_the_running_gateway(tmp_path: Path) -> None:
    with GatewayProcess(CONFIG, tmp_path) as gw:
        assert asyncio.run(_fire(gw.base_url, 1, stream=False)) == [200]
        subprocess.run(
            [sys.executable, "-m", "sluice.cli.main", "keys", "revoke", "vk-e2e", "--store", f"sqlite:///{gw.db}"],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 3
        status = 200
        while status == 200 and time.monotonic() < deadline:
            [status] = asyncio.run(_fire(gw.base_url, 1, stream=False))
            time.sleep(0.1)
        assert status == 403
