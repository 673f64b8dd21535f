"""What a replay's policy objects see of the store: the live store for reading, memory for
everything they would write.

The live policy objects (`Limits`, `sync_from_file`) take a store; a replay hands them this view
instead. It has the few methods they call and no other: anything else they tried would fail
loudly rather than reach the live store. Reads of the live store are plain reads (objects, keys,
the spend ledger before the replay starts); writes (objects the proposal declares, window
anchors, settlements) stay in this process and go when the replay ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sluice.storage.ports import Store
from sluice.storage.records import ConfigEvent, ConfigObject, SpendRow, VirtualKey


class ReplayStore:
    """A read-only view of `live` as of `start`, with its own in-memory objects and anchors."""

    def __init__(self, live: Store, start: datetime) -> None:
        self._live = live
        self._start = start
        self._objects: dict[tuple[str, str], ConfigObject] = {}
        self._anchors: dict[str, int] = {}
        self.settled = 0  # settlements the replay made (kept nowhere: counters hold what matters)

    async def load(self) -> None:
        """The live configuration objects, copied once: the proposal is laid over them."""
        self._objects = {(o.kind, o.id): o for o in await self._live.list_objects()}

    async def list_keys(self) -> list[VirtualKey]:
        return await self._live.list_keys()

    # -- what sync_from_file and Limits use (ConfigStore, MetaStore, SpendLedger) ---------------
    async def list_objects(self) -> list[ConfigObject]:
        return list(self._objects.values())

    async def put_object(self, obj: ConfigObject, actor: str) -> ConfigEvent | None:
        self._objects[obj.kind, obj.id] = obj
        return None  # nothing is recorded: a simulation changes no configuration

    async def delete_object(self, kind: str, object_id: str, actor: str) -> ConfigEvent | None:
        self._objects.pop((kind, object_id), None)
        return None

    async def config_version(self) -> int:
        return 0

    async def first_seen(self, name: str, now: int) -> int:
        # A rolling window's anchor: where the live gateway would store it, the replay keeps its own.
        return self._anchors.setdefault(name, now)

    async def spend_totals(self, scope: str, scope_id: str, start: datetime, end: datetime) -> tuple[int, int, int]:
        """The spend of a window: what the live ledger settled in it before the replay starts
        (the proposal did not decide those requests), plus nothing after, since the replay's own
        counters take every replayed request."""
        if start >= self._start:
            return 0, 0, 0
        return await self._live.spend_totals(scope, scope_id, start, min(end, self._start))

    async def record_spend(self, rows: list[SpendRow]) -> None:
        self.settled += len(rows)

    def as_store(self) -> Store:
        """This view where the policy objects' signatures ask for a store."""
        return cast(Store, self)
