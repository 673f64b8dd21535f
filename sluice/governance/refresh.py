"""Follows a version number in the store and reloads when it moves, so changes made by another
process (the CLI, another replica, the admin API) apply within one interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sluice.core.tasks import cancel, spawn

log = logging.getLogger("sluice.refresh")


class Follower:
    def __init__(
        self,
        name: str,
        read_version: Callable[[], Awaitable[int]],
        reload: Callable[[], Awaitable[None]],
        *,
        interval: float = 1.0,
    ) -> None:
        self._name = name
        self._read_version = read_version
        self._reload = reload
        self._interval = interval
        self._version = -1
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        version = await self._read_version()
        await self._reload()
        self._version = version

    async def start(self) -> None:
        await self.load()
        self._task = spawn(self._loop(), name=f"follow-{self._name}")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await self._read_version() != self._version:
                    await self.load()
            except Exception:  # a store hiccup must not stop following; keep the last state
                log.exception("reloading %s failed", self._name)
