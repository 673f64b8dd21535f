"""What a gateway access token stands for, kept for a few seconds so a signed-in agent's requests
do not each read its grant and its key from the store (two queries per request otherwise).

Revocation stays prompt:
- on this replica at once: the store counts every change of a key or of a sign-in's standing this
  process writes (`credentials_generation`, read without I/O), and any change empties the cache;
- on other replicas within `POLL_S`: the store's `credentials_version` (keys_version +
  grants_version, one read) is polled and any move empties the cache;
- never later than `ttl_s` after the entry was read, even if polling fails.

A lookup that raced a change (the generation moved while it read the store) is not kept, so a
revocation is never overwritten by an answer read before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sluice.governance.refresh import Follower
from sluice.storage.ports import GrantStore
from sluice.storage.records import VirtualKey

POLL_S = 0.25  # what a replica waits at most to see another replica's revocation
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    key: VirtualKey  # as stored: the profile is applied at each use, so a profile change applies too
    audience: str  # the token's `aud`: where it may be used is decided again at each use
    token_exp: float  # the token's own expiry: past it, the token is re-verified (and refused)
    fresh_until: float


class TokenCache:
    def __init__(self, store: GrantStore, ttl_s: float, clock: Callable[[], float], *, poll_s: float = POLL_S) -> None:
        self._store = store
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._seen = store.credentials_generation
        self._polled = 0  # changes other replicas made, as the poll saw them
        self._follower = Follower("signin-tokens", store.credentials_version, self._changed, interval=poll_s)
        self.hits = 0
        self.misses = 0

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def poll(self) -> None:
        """One look at the store's version now (what the follower does every `poll_s`)."""
        await self._follower.load()

    async def _changed(self) -> None:
        self._polled += 1
        self._entries.clear()

    def generation(self) -> int:
        """Where the changes seen so far stand (this process's own, read without I/O, and other
        replicas', as polled); a move of its own empties the cache before it is read."""
        current = self._store.credentials_generation
        if current != self._seen:
            self._entries.clear()
            self._seen = current
        return current + self._polled

    def get(self, token: str, now: float) -> Entry | None:
        if self.ttl_s <= 0:
            return None
        self.generation()
        entry = self._entries.get(token)
        if entry is None or now >= entry.fresh_until or now >= entry.token_exp:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(
        self, token: str, key: VirtualKey, audience: str, token_exp: float, now: float, read_at_generation: int
    ) -> None:
        if self.ttl_s <= 0 or self.generation() != read_at_generation:
            return  # a change landed while the store was read: that answer may predate it
        if len(self._entries) >= MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[token] = Entry(key, audience, token_exp, now + self.ttl_s)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
