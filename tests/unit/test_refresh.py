"""Following `config_version`: the live config, the limits and the access profiles share one read
of it per interval, and each still reacts to a change.

Intervals pass when the test says (`Intervals` stands in for asyncio.sleep inside
sluice.governance.refresh only), so reads are counted per interval without timing anything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import sluice.app
from sluice.app import Services, build_services
from sluice.governance import refresh
from sluice.settings import parse_config
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import ConfigObject

_sleep = asyncio.sleep


class Intervals:
    """Only the test's own event loop is held: the patched `asyncio` is the module's, so followers of
    gateways that other tests left running in threads of this process sleep through it too (in the
    whole suite they did, and counted as this gateway's loops)."""

    def __init__(self) -> None:
        self.sleeping = 0
        self._gate = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    async def sleep(self, delay: float) -> None:
        if asyncio.get_running_loop() is not self._loop:
            await _sleep(delay)
            return
        gate = self._gate
        self.sleeping += 1
        try:
            await gate.wait()
        finally:
            self.sleeping -= 1

    async def quiet(self) -> None:
        """Until every follower loop is back waiting for the next interval."""
        seen, stable = -1, 0
        for _ in range(2000):
            await _sleep(0.005)
            stable = stable + 1 if self.sleeping == seen and seen > 0 else 0
            seen = self.sleeping
            if stable >= 10:
                return
        raise AssertionError("the follower loops never settled")

    async def elapse(self) -> None:
        sleepers = self.sleeping
        gate, self._gate = self._gate, asyncio.Event()
        gate.set()
        await self.quiet()
        assert self.sleeping == sleepers


class _Asyncio:
    """asyncio as sluice.governance.refresh sees it, with the test's intervals."""

    def __init__(self, intervals: Intervals) -> None:
        self.sleep = intervals.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


Gateway = tuple[Services, Intervals, list[int]]


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    reads: list[int] = []

    def counting_store(url: str, *, linger_s: float = 0.0) -> SqlStore:
        store = SqlStore(url, linger_s=linger_s)
        read = store.config_version

        async def config_version() -> int:
            reads.append(1)
            return await read()

        store.config_version = config_version  # type: ignore[method-assign]
        return store

    intervals = Intervals()
    monkeypatch.setattr(sluice.app, "open_store", counting_store)
    monkeypatch.setattr(refresh, "asyncio", _Asyncio(intervals))
    doc = {
        "store": {"url": f"sqlite:///{tmp_path / 'sluice.db'}"},
        "request_log": {"spill_path": str(tmp_path / "spill.jsonl")},
        "governance": {"spend_journal_path": str(tmp_path / "journal.jsonl")},
        "audit": {"hmac_key": "k" * 32, "checkpoint_path": str(tmp_path / "cp.jsonl")},
    }
    services = build_services(parse_config(doc))
    await services.start()
    try:
        await intervals.quiet()
        yield services, intervals, reads
    finally:
        await services.stop()


async def test_one_read_of_config_version_per_interval_serves_all_three(
    gateway: Gateway,
) -> None:
    """Two reads an interval: the three's one, and the MCP gateway's, which follows keys_version and
    config_version summed (not shared yet). Failed on the old code: 4 (each of the three read it)."""
    _, intervals, reads = gateway
    before = len(reads)
    for _ in range(3):
        await intervals.elapse()
    assert len(reads) - before == 3 * 2


async def test_a_change_reaches_all_three_with_that_one_read(gateway: Gateway) -> None:
    """The three's one read, and the MCP gateway's. Failed on the old code: 8 (each of the four
    read the change, then read it again to load)."""
    services, intervals, reads = gateway
    profile = {"id": "dev", "groups": ["Engineering"]}
    budget = {"id": "b-team", "team_id": "t1", "max_limit": 5, "reset_duration": "30d"}
    group = {"name": "readonly", "tools": ["fs.read"]}
    before = len(reads)
    await services.store.put_object(ConfigObject("access_profile", "dev", profile, "api"), "admin")
    await services.store.put_object(ConfigObject("budget", "b-team", budget, "api"), "admin")
    await services.store.put_object(ConfigObject("tool_group", "readonly", group, "api"), "admin")
    await intervals.elapse()
    await _until(lambda: "dev" in services.profiles.profiles)
    await _until(lambda: any(r.id.startswith("b-team") for rs in services.limits._by_scope.values() for r in rs))
    await _until(lambda: [g.name for g in services.live.config.mcp.tool_groups] == ["readonly"])
    assert len(reads) - before == 1 + 1


async def _until(done: Any) -> None:
    """The followers reload in their own tasks, after the interval's one read."""
    for _ in range(1000):
        if done():
            return
        await _sleep(0.005)
    raise AssertionError("the change was not followed")
