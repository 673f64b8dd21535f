"""Follows a version number in the store and reloads when it moves, so changes made by another
process (the CLI, another replica, the admin API) apply within one interval.

Several followers of the same number (live config, limits, profiles all follow `config_version`)
share one `VersionWatch`: it reads the number once per interval and tells them all, so the store
answers one read per interval, not one per follower. Each follower reacts in its own task, so a
slow reload in one does not delay the others, and stopping one cancels only its own reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sluice.core.tasks import cancel, spawn

log = logging.getLogger("sluice.refresh")


class VersionWatch:
    """Reads a version once per interval while any follower is started, and wakes them."""

    def __init__(self, name: str, read_version: Callable[[], Awaitable[int]], *, interval: float = 1.0) -> None:
        self._name = name
        self.read = read_version
        self._interval = interval
        self.latest = -1
        self._tick: asyncio.Event | None = None  # made on its event loop, in `join`
        self._followers: set[Follower] = set()
        self._task: asyncio.Task[None] | None = None

    async def next(self) -> int:
        """Waits for the next read and returns the version it found."""
        assert self._tick is not None, "wait only in a follower that joined"
        await self._tick.wait()
        return self.latest

    def join(self, follower: Follower) -> None:
        self._followers.add(follower)
        if self._task is None:
            self._tick = asyncio.Event()
            self._task = spawn(self._loop(), name=f"watch-{self._name}")

    async def leave(self, follower: Follower) -> None:
        self._followers.discard(follower)
        if not self._followers:
            task, self._task = self._task, None
            await cancel(task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.latest = await self.read()
            except Exception:  # a store hiccup must not stop following; keep the last state
                log.exception("reading the %s version failed", self._name)
                continue
            tick, self._tick = self._tick, asyncio.Event()
            if tick is not None:
                tick.set()


class Follower:
    def __init__(
        self,
        name: str,
        source: Callable[[], Awaitable[int]] | VersionWatch,
        reload: Callable[[], Awaitable[None]],
        *,
        interval: float = 1.0,
    ) -> None:
        """`source`: a shared watch, or a read of the version for a watch of this follower's own."""
        self._name = name
        self._watch = source if isinstance(source, VersionWatch) else VersionWatch(name, source, interval=interval)
        self._reload = reload
        self._version = -1
        self._task: asyncio.Task[None] | None = None

    @property
    def watch(self) -> VersionWatch:
        return self._watch

    async def load(self) -> None:
        version = await self._watch.read()
        await self._reload()
        self._version = version

    async def start(self) -> None:
        await self.load()
        self._task = spawn(self._loop(), name=f"follow-{self._name}")
        self._watch.join(self)

    async def stop(self) -> None:
        await cancel(self._task)
        await self._watch.leave(self)

    async def _loop(self) -> None:
        while True:
            version = await self._watch.next()
            if version == self._version:
                continue
            try:
                await self._reload()
                self._version = version  # read before the reload: a later change shows next time
            except Exception:  # a store hiccup must not stop following; keep the last state
                log.exception("reloading %s failed", self._name)
