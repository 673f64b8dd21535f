"""Virtual keys: generation, hashing, extraction from request headers, and a cache that
authenticates without touching the store on the hot path."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime

from sluice.core.clock import SYSTEM_CLOCK, Clock
from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.profiles import ProfileBook
from sluice.governance.refresh import Follower
from sluice.storage.ports import KeyStore
from sluice.storage.records import VirtualKey

log = logging.getLogger("sluice.keys")
KEY_PREFIX = "sk-sluice-"

# Which credential header wins when a request carries several: the first present in this order.
# Only the winner is checked; the others are ignored and never forwarded upstream.
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random (or chosen by an operator); a fast hash suffices and keeps
    # lookups O(1). Comparing hashes in constant time closes the remaining timing channel.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hint_of(secret: str) -> str:
    return secret[: min(12, max(4, len(secret) // 3))] + "…"


def credential_from(headers: Mapping[str, str]) -> str | None:
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                continue
            return token.strip()
        return value.strip()
    return None


def check_usable(key: VirtualKey, now: datetime) -> None:
    if key.revoked_at is not None:
        raise SluiceError(
            ErrorKind.POLICY_KEY_INACTIVE,
            f"Virtual key '{key.id}' was revoked at {key.revoked_at.isoformat()}. "
            "Ask your platform team for a new key.",
        )
    if not key.is_active:
        raise SluiceError(
            ErrorKind.POLICY_KEY_INACTIVE,
            f"Virtual key '{key.id}' is inactive. Ask your platform team to re-activate it.",
        )
    if key.expires_at is not None and key.expires_at <= now:
        raise SluiceError(
            ErrorKind.POLICY_KEY_INACTIVE,
            f"Virtual key '{key.id}' expired at {key.expires_at.isoformat()}. Ask your platform team for a new key.",
        )


class KeyCache:
    """All keys in memory by hash; reloaded within `refresh_interval` of any change in the store
    (a revocation by CLI or API applies within that interval, a new key at once). Keys that derive
    from an access profile are held as the profile makes them, rebuilt when a profile changes."""

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        refresh_interval: float = 1.0,
        profiles: ProfileBook | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._profiles = profiles
        self._stored: list[VirtualKey] = []
        self._by_hash: dict[str, VirtualKey] = {}
        self._follower = Follower("keys", store.keys_version, self._load_keys, interval=refresh_interval)
        if profiles is not None:
            profiles.subscribe(self._index)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def reload(self) -> None:
        await self._follower.load()

    async def _load_keys(self) -> None:
        self._stored = await self._store.list_keys()
        await self._index()

    def _derive(self, key: VirtualKey) -> VirtualKey:
        return self._profiles.derive(key) if self._profiles is not None else key

    async def _index(self) -> None:
        by_hash: dict[str, VirtualKey] = {}
        for stored in self._stored:
            key = self._derive(stored)
            by_hash[key.key_hash] = key
            if key.previous_key_hash:
                by_hash[key.previous_key_hash] = key
        self._by_hash = by_hash

    async def authenticate(self, secret: str | None, *, cached_only: bool = False) -> VirtualKey:
        """The usable key of `secret`. `cached_only`: look in memory only (a caller being throttled
        for failures may not make every guess a store query)."""
        if not secret:
            raise SluiceError(
                ErrorKind.CALLER_MISSING_KEY,
                "No virtual key sent. Send your Sluice key as 'Authorization: Bearer <key>' or 'x-api-key'.",
            )
        digest = hash_secret(secret)
        key = self._by_hash.get(digest)
        if key is None and not cached_only:
            key = await self._store.key_by_hash(digest)
            if key is not None:
                key = self._derive(key)
                self._by_hash[digest] = key
        now = self._clock.now()
        if key is None or not (hmac.compare_digest(key.key_hash, digest) or _previous_valid(key, digest, now)):
            raise SluiceError(
                ErrorKind.CALLER_INVALID_KEY, "Invalid virtual key. Check the key your platform team issued."
            )
        check_usable(key, now)
        return key


def _previous_valid(key: VirtualKey, digest: str, now: datetime) -> bool:
    """A rotated key's old secret, still inside its overlap period."""
    return (
        key.previous_key_hash is not None
        and hmac.compare_digest(key.previous_key_hash, digest)
        and key.previous_valid_until is not None
        and now < key.previous_valid_until
    )
