"""`sluice serve --workers 2` on Redis (database 5): both processes take connections on the one
port, a request-count limit holds exactly across them, and SIGTERM drains both and exits 0.
On the local backend, more than one worker is refused: each process would allow the whole limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import redis
import yaml

from tests.e2e.gateway_process import GatewayProcess

REDIS_DB = 5
KEY = "sk-sluice-workers-00000000000000"
LIMIT = 10
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
BODY = {"model": "fake/echo", "max_tokens": 16, "messages": [{"role": "user", "content": "count me"}]}


def _config(backend: str) -> dict[str, Any]:
    return {
        "providers": {"fake": {}},
        "governance": {"backend": backend, "redis_url": f"redis://127.0.0.1:6379/{REDIS_DB}"},
        "virtual_keys": [{"id": "vk-workers", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
        "rate_limits": [
            {
                "id": "rl-workers",
                "virtual_key_id": "vk-workers",
                "request_max_limit": LIMIT,
                "request_reset_duration": "1h",
            }
        ],
    }


@pytest.fixture
def flushed() -> Iterator[None]:
    r = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    r.flushdb()
    try:
        yield
    finally:
        r.flushdb()
        r.close()


async def _one(url: str) -> int:
    # A connection of its own per request, so the kernel spreads them over the workers.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.post(url + "/v1/messages", json=BODY, headers=HEADERS) as resp,
    ):
        await resp.read()
        return resp.status


async def _held_connections(url: str, n: int, gw: GatewayProcess) -> dict[int, int]:
    """Opens n connections at once and counts, per worker pid, the ones it accepted."""
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    streams = [await asyncio.open_connection(host, port) for _ in range(n)]
    try:
        assert gw.proc is not None
        per_worker: dict[int, int] = {}
        for _ in range(50):  # until every connection is accepted
            per_worker = {}
            for child in psutil.Process(gw.proc.pid).children(recursive=True):
                mine = [c for c in child.net_connections("tcp") if c.laddr and c.laddr.port == port and c.raddr]
                if mine:
                    per_worker[child.pid] = len(mine)
            if sum(per_worker.values()) == n:
                break
            await asyncio.sleep(0.1)
        return per_worker
    finally:
        for _, writer in streams:
            writer.close()


def _listening_workers(gw: GatewayProcess) -> list[int]:
    """The pids of the worker processes that listen on the gateway's port."""
    assert gw.proc is not None
    pids = []
    for child in psutil.Process(gw.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == gw.port for c in child.net_connections("tcp")):
                pids.append(child.pid)
    return pids


def test_two_workers_share_the_port_and_a_request_limit_holds_exactly(tmp_path: Path, flushed: None) -> None:
    gw = GatewayProcess(_config("redis"), tmp_path, args=("--workers", "2")).start()
    try:
        deadline = time.monotonic() + 60  # /healthz answers once the first worker is up
        while len(_listening_workers(gw)) < 2:
            assert time.monotonic() < deadline, "the second worker did not start\n" + gw.output()
            time.sleep(0.2)
        per_worker = asyncio.run(_held_connections(gw.base_url, 24, gw))
        assert len(per_worker) == 2 and sum(per_worker.values()) == 24, per_worker

        async def burst() -> list[int]:
            return list(await asyncio.gather(*(_one(gw.base_url) for _ in range(3 * LIMIT))))

        statuses = asyncio.run(burst())
        assert statuses.count(200) == LIMIT, statuses
        assert statuses.count(429) == 2 * LIMIT, statuses
        # A worker that dies is replaced, on the same port, with the same shared counters.
        assert gw.proc is not None
        before = _listening_workers(gw)
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(now := _listening_workers(gw)) < 2 or before[0] in now:
            assert time.monotonic() < deadline, "the dead worker was not replaced\n" + gw.output()
            time.sleep(0.2)
        assert asyncio.run(_one(gw.base_url)) == 429  # the limit still holds: the count lives in Redis
        gw.proc.send_signal(signal.SIGTERM)
        code = gw.proc.wait(timeout=60)
    finally:
        gw.stop()
    assert code == 0, gw.output()


def test_more_than_one_worker_on_the_local_backend_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml.safe_dump({**_config("local"), "store": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"}}))
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli.main", "serve", "--config", str(path), "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "governance.backend: redis" in done.stderr


def test_sighup_reloads_every_worker(tmp_path: Path, flushed: None) -> None:
    """Routing from the file lives in each process: after SIGHUP, every worker must route the new
    alias, so no answer on any connection comes from the old routing."""
    config = _config("redis")
    config["rate_limits"] = []
    gw = GatewayProcess(config, tmp_path, args=("--workers", "2")).start()

    async def statuses(model: str) -> list[int]:
        async def one() -> int:
            body = {**BODY, "model": model}
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
                session.post(gw.base_url + "/v1/messages", json=body, headers=HEADERS) as resp,
            ):
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one() for _ in range(20))))

    try:
        deadline = time.monotonic() + 60
        while len(_listening_workers(gw)) < 2:
            assert time.monotonic() < deadline, "the second worker did not start\n" + gw.output()
            time.sleep(0.2)
        assert asyncio.run(statuses("team-model")) == [200] * 20  # the fake provider echoes any name
        on_disk = yaml.safe_load(gw.config_path.read_text())
        on_disk["routing"] = {"aliases": [{"alias": "team-model", "target": "fake/error-500"}]}
        gw.config_path.write_text(yaml.safe_dump(on_disk))
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while 200 in (got := asyncio.run(statuses("team-model"))):
            assert time.monotonic() < deadline, f"a worker still routes the old way: {got}\n" + gw.output()
            time.sleep(0.5)
    finally:
        gw.stop()
