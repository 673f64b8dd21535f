"""`/readyz` on a running gateway while its real PostgreSQL and Redis go away and come back;
`/healthz` stays 200 throughout (an outage must take a replica out of rotation, not restart it)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.pg_cluster import PgCluster
from tests.support import GatewayThread, free_port


class RedisServer:
    """A redis-server of the test's own on a free port (the shared one is never stopped)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sluice-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.dir]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], check=True, capture_output=True)
                return
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def _probe(base: str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _wait_for(base: str, status: int, deadline_s: float = 15) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    while True:
        code, body = _probe(base, "/readyz")
        if code == status or time.monotonic() > end:
            assert code == status, body
            return body
        time.sleep(0.2)


def test_readyz_follows_postgres_and_redis_outages(pg: PgCluster, redis: RedisServer, tmp_path: Path) -> None:
    config = {
        "store": {"url": pg.url},
        "governance": {
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{redis.port}/0",
            "spend_journal_path": str(tmp_path / "journal.jsonl"),
        },
        "audit": {"hmac_key": "h" * 32, "checkpoint_path": str(tmp_path / "cp.jsonl")},
        "request_log": {"spill_path": str(tmp_path / "spill.jsonl")},
    }
    with GatewayThread(config, tmp_path) as gw:
        body = _wait_for(gw.base_url, 200)
        assert body["checks"] == {"config": "ok", "store": "ok", "redis": "ok", "audit": "ok", "local_files": "ok"}

        redis.stop()
        body = _wait_for(gw.base_url, 503)
        assert body["failed"] == ["redis"]
        assert _probe(gw.base_url, "/healthz") == (200, {"status": "ok"})
        redis.start()
        _wait_for(gw.base_url, 200)

        pg.stop()
        body = _wait_for(gw.base_url, 503)
        assert "store" in body["failed"] and "redis" not in body["failed"]
        assert _probe(gw.base_url, "/healthz")[0] == 200
        pg.start()
        _wait_for(gw.base_url, 200, deadline_s=30)  # the pool's pre-ping reconnects
