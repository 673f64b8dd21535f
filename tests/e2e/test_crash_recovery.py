"""SIGKILL a gateway in the middle of streaming load, restart it on the same store: every stream a
client received whole is in the spend ledger exactly once, and nothing in flight at the crash is
held against the budget afterwards."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp

from tests.e2e.gateway_process import GatewayProcess

KEY = "sk-sluice-crash-00000000000000000"
LIMIT_USD = 5
CONFIG = {
    "virtual_keys": [{"id": "vk-crash", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
    "pricing": {"slow": {"input_cost_per_mtok": 1000, "output_cost_per_mtok": 1000}},
    "budgets": [
        {
            "id": "budget-crash",
            "virtual_key_id": "vk-crash",
            "max_limit": LIMIT_USD,
            "reset_duration": "1d",
            "calendar_aligned": True,
        }
    ],
}
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


async def _one(session: aiohttp.ClientSession, base_url: str, i: int) -> tuple[str, str | None]:
    body = {
        "model": "fake/slow",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": f"crash test {i}"}],
    }
    try:
        async with session.post(base_url + "/v1/messages", json=body, headers=HEADERS) as resp:
            data = await resp.read()
            if resp.status == 200 and b"event: message_stop" in data:
                return "complete", resp.headers.get("x-request-id")
            return f"status {resp.status}", None
    except aiohttp.ClientError:
        return "broken", None


async def _load(base_url: str, seconds: float) -> list[tuple[str, str | None]]:
    results: list[tuple[str, str | None]] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        i = 0
        pending: set[asyncio.Task[tuple[str, str | None]]] = set()
        while time.monotonic() < deadline:
            while len(pending) < 40:
                pending.add(asyncio.ensure_future(_one(session, base_url, i)))
                i += 1
            done, pending = await asyncio.wait(pending, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            results.extend(t.result() for t in done)
        if pending:
            done, _ = await asyncio.wait(pending, timeout=10)
            results.extend(t.result() for t in done)
    return results


def _ledger(db: Path) -> tuple[set[str], int]:
    with sqlite3.connect(db) as conn:
        ids = {row[0] for row in conn.execute("select request_id from spend_ledger")}
        total = int(conn.execute("select coalesce(sum(cost_pico), 0) from spend_ledger").fetchone()[0])
    return ids, total


def test_sigkill_mid_load_then_restart(tmp_path: Path) -> None:
    gw = GatewayProcess(CONFIG, tmp_path).start()

    async def load_then_kill() -> list[tuple[str, str | None]]:
        load = asyncio.ensure_future(_load(gw.base_url, 1.5))
        await asyncio.sleep(0.8)
        gw.stop(signal.SIGKILL)
        return await load

    results = asyncio.run(load_then_kill())
    completed = {rid for outcome, rid in results if outcome == "complete"}
    broken = [outcome for outcome, _ in results if outcome != "complete"]
    assert completed and broken, (len(completed), len(broken))  # the kill really hit mid-load

    ids, spent = _ledger(gw.db)
    assert completed <= ids  # no lost settlement: every stream delivered whole is in the ledger
    # (rows are keyed by request id, so none can be there twice)

    gw2 = GatewayProcess(CONFIG, tmp_path)
    gw2.port, gw2.base_url = gw.port, gw.base_url
    with gw2:

        async def after() -> tuple[int, dict[str, str]]:
            async with aiohttp.ClientSession() as session:
                body = {"model": "fake/slow", "max_tokens": 5, "messages": [{"role": "user", "content": "again"}]}
                async with session.post(gw2.base_url + "/v1/messages", json=body, headers=HEADERS) as resp:
                    await resp.read()
                    return resp.status, dict(resp.headers)

        status, headers = asyncio.run(after())
    assert status == 200
    ids_after, _ = _ledger(gw.db)
    assert ids <= ids_after and len(ids_after) == len(ids) + 1
    # Remaining budget right after admission = limit - settled spend - this request's reservation:
    # no reservation of the killed process lingers, and the settled spend was not lost on restart.
    # This request reserves < $0.05; the 40 streams in flight at the kill held about $1.7.
    remaining = float(headers["x-sluice-budget-remaining-usd"])
    assert 0 < LIMIT_USD - spent / 1e12 - remaining < 0.05
