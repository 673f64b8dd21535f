"""The store goes down mid-load: no answered request loses its spend.

A PostgreSQL cluster of the test's own is stopped while budgeted requests stream through the
gateway. Settlements go to the local journal (fsynced) and are replayed into the ledger when the
cluster is back, once each; the budget keeps holding meanwhile, and counters rebuilt after a
restart include the outage's spend. With the journal's disk full as well, the answer is refused
rather than served unbilled.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.integration.pg_cluster import PgCluster
from tests.support import GatewayThread

BIG, SMALL = "sk-sluice-outage-big-000000000000", "sk-sluice-outage-small-0000000000"


def _config(cluster: PgCluster, tmp: Path, journal: Path) -> dict[str, Any]:
    return {
        "store": {"url": cluster.url},
        "request_log": {"spill_path": str(tmp / "spill.jsonl")},
        "governance": {"spend_journal_path": str(journal)},
        "virtual_keys": [
            {"id": "vk-big", "value": BIG, "provider_configs": [{"provider": "fake"}]},
            {"id": "vk-small", "value": SMALL, "provider_configs": [{"provider": "fake"}]},
        ],
        "pricing": {"echo": {"input_cost_per_mtok": 1000, "output_cost_per_mtok": 1000}},
        "budgets": [
            {"id": "b-big", "virtual_key_id": "vk-big", "max_limit": 100, "reset_duration": "1d"},
            {"id": "b-small", "virtual_key_id": "vk-small", "max_limit": 1, "reset_duration": "1d"},
        ],
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


async def _ask(session: aiohttp.ClientSession, base: str, key: str, i: int, stream: bool) -> tuple[int, str, str]:
    body = {
        "model": "fake/echo",
        "max_tokens": 20,
        "stream": stream,
        "messages": [{"role": "user", "content": f"outage {i:04d}"}],
    }
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    async with session.post(base + "/v1/messages", json=body, headers=headers) as resp:
        data = await resp.read()
        whole = resp.status == 200 and (not stream or b"event: message_stop" in data)
        outcome = "whole" if whole else f"{resp.status} {data[-200:]!r}"
        return resp.status, outcome, resp.headers.get("x-request-id", "")


async def _ledger(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("select request_id, cost_pico from spend_ledger")
    finally:
        await conn.close()
    return {r["request_id"]: int(r["cost_pico"]) for r in rows}


async def _spent(url: str, key_id: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("select sum(cost_pico) from spend_ledger where virtual_key_id = $1", key_id))
    finally:
        await conn.close()


def _gauge(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def _wait_gone(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists(), "the journal was not replayed"


def test_postgres_stopped_mid_load_loses_no_spend(cluster: PgCluster, tmp_path: Path) -> None:
    journal = tmp_path / "spend.journal.jsonl"
    config = _config(cluster, tmp_path, journal)
    answered: dict[str, str] = {}

    async def load(base: str) -> tuple[list[str], list[int]]:
        outcomes: list[str] = []
        async with aiohttp.ClientSession() as session:
            await _ask(session, base, SMALL, 0, False)  # seeds the small budget's counter from the ledger
            queue = list(range(60))
            loop = asyncio.get_running_loop()
            stopper: asyncio.Future[None] | None = None

            async def worker() -> None:
                nonlocal stopper
                while queue:
                    i = queue.pop(0)
                    _, outcome, rid = await _ask(session, base, BIG, i, stream=i % 2 == 0)
                    outcomes.append(outcome)
                    if outcome == "whole":
                        answered[rid] = outcome
                    if len(outcomes) == 15 and stopper is None:
                        stopper = loop.run_in_executor(None, cluster.stop)  # mid-load, requests in flight

            await asyncio.gather(*(worker() for _ in range(6)))
            assert stopper is not None
            await stopper
            # The store is down now: the small budget ($1) must still stop spending at its limit.
            small: list[int] = []
            for i in range(1, 40):
                status, _, rid = await _ask(session, base, SMALL, i, False)
                small.append(status)
                if status == 200:
                    answered[rid] = "whole"
                else:
                    break
        return outcomes, small

    with GatewayThread(config, tmp_path) as gw:
        outcomes, small = asyncio.run(load(gw.base_url))
        assert outcomes.count("whole") == 60, [o for o in outcomes if o != "whole"][:3]
        journalled = journal.read_bytes().count(b"\n") if journal.exists() else 0
        assert _gauge(gw.base_url, "sluice_spend_journalled") == journalled
        assert small[-1] == 402 and small.count(200) >= 3
        cluster.start()
        _wait_gone(journal)  # replayed while running, once the store answers again
        assert _gauge(gw.base_url, "sluice_spend_journalled") == 0
        ledger = asyncio.run(_ledger(cluster.url))
        # Every answered request is in the ledger once (rows are keyed by request id).
        lost = set(answered) - set(ledger)
        assert not lost, f"{len(lost)} of {len(answered)} answered requests are missing from the ledger"
        assert journalled >= 20  # the outage was real: that many settlements waited in the journal

    # A restart rebuilds the counters from the ledger, outage spend included.
    async def after(base: str) -> tuple[int, dict[str, str]]:
        async with aiohttp.ClientSession() as session:
            status, _, _ = await _ask(session, base, SMALL, 99, False)
            body = {"model": "fake/echo", "max_tokens": 20, "messages": [{"role": "user", "content": "after"}]}
            headers = {"x-api-key": BIG, "anthropic-version": "2023-06-01"}
            async with session.post(base + "/v1/messages", json=body, headers=headers) as resp:
                await resp.read()
                return status, dict(resp.headers)

    with GatewayThread(config, tmp_path) as gw:
        small_status, headers = asyncio.run(after(gw.base_url))
    assert small_status == 402  # its dollar went during the outage
    big_spent = asyncio.run(_spent(cluster.url, "vk-big")) / 10**12
    remaining = float(headers["x-sluice-budget-remaining-usd"])
    # remaining = limit - settled (outage included) - this request's own reservation (< $0.1)
    assert 0 < 100 - big_spent - remaining < 0.1, (big_spent, remaining)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs, filled up: the journal's writes fail with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass  # ENOSPC: the disk is full
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_during_outage_refuses_the_answer(cluster: PgCluster, tmp_path: Path, full_disk: Path) -> None:
    journal = full_disk / "spend.journal.jsonl"
    config = _config(cluster, tmp_path, journal)

    async def run(base: str) -> list[tuple[int, str, str]]:
        async with aiohttp.ClientSession() as session:
            first = await _ask(session, base, BIG, 0, False)  # seeds the counter while the store is up
            await asyncio.get_running_loop().run_in_executor(None, cluster.stop)
            try:
                return [first, await _ask(session, base, BIG, 1, False), await _ask(session, base, BIG, 2, True)]
            finally:
                await asyncio.get_running_loop().run_in_executor(None, cluster.start)

    with GatewayThread(config, tmp_path) as gw:
        first, plain, stream = asyncio.run(run(gw.base_url))
    assert first[1] == "whole"
    assert plain[0] == 500 and "could not be recorded" in plain[1]
    assert stream[1] != "whole" and "could not be recorded" in stream[1]  # cut before its last event
    assert not journal.exists() or journal.read_bytes() == b""
