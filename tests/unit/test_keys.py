from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluice.app import open_store
from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.keys import KeyCache, credential_from, generate_secret, hash_secret, hint_of
from sluice.storage.records import ProviderGrant, VirtualKey


def test_credential_precedence() -> None:
    assert credential_from({"authorization": "Bearer a", "x-api-key": "b", "x-goog-api-key": "c"}) == "a"
    assert credential_from({"x-api-key": "b", "x-goog-api-key": "c"}) == "b"
    assert credential_from({"x-goog-api-key": "c"}) == "c"
    # A non-bearer Authorization header does not shadow x-api-key.
    assert credential_from({"authorization": "Basic zzz", "x-api-key": "b"}) == "b"
    assert credential_from({}) is None


def test_secrets_are_random_and_hashed() -> None:
    a, b = generate_secret(), generate_secret()
    assert a != b and a.startswith("sk-sluice-") and len(a) > 40
    assert hash_secret(a) != a and len(hash_secret(a)) == 64
    assert hint_of(a) != a and a.startswith(hint_of(a)[:-1])


def _key(secret: str, **kw: object) -> VirtualKey:
    return VirtualKey(
        id=str(kw.pop("id", "vk-a")),
        name="A",
        key_hash=hash_secret(secret),
        key_hint=hint_of(secret),
        grants=(ProviderGrant("fake"),),
        **kw,
    )  # type: ignore[arg-type]


async def test_key_cache_authenticates_and_sees_revocation(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    cache = KeyCache(store, refresh_interval=0.05)
    await cache.start()
    try:
        with pytest.raises(SluiceError) as missing:
            await cache.authenticate(None)
        assert missing.value.kind is ErrorKind.CALLER_MISSING_KEY
        # Created after the cache loaded: found at once through the store.
        await store.create_key(_key("s3cret"))
        assert (await cache.authenticate("s3cret")).id == "vk-a"
        with pytest.raises(SluiceError) as invalid:
            await cache.authenticate("wrong")
        assert invalid.value.kind is ErrorKind.CALLER_INVALID_KEY
        assert await store.revoke_key("vk-a", datetime.now(UTC))
        await cache.reload()
        with pytest.raises(SluiceError) as revoked:
            await cache.authenticate("s3cret")
        assert revoked.value.kind is ErrorKind.POLICY_KEY_INACTIVE and "revoked" in revoked.value.message
    finally:
        await cache.stop()
        await store.close()


async def test_inactive_and_expired_keys_are_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    await store.create_key(_key("off", id="vk-off", is_active=False))
    await store.create_key(_key("old", id="vk-old", expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await store.create_key(_key("later", id="vk-later", expires_at=datetime.now(UTC) + timedelta(days=1)))
    cache = KeyCache(store)
    await cache.reload()
    for secret, word in (("off", "inactive"), ("old", "expired")):
        with pytest.raises(SluiceError, match=word):
            await cache.authenticate(secret)
    assert (await cache.authenticate("later")).id == "vk-later"
    await store.close()


async def test_store_never_holds_the_secret(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = open_store(f"sqlite:///{db}")
    await store.migrate()
    await store.create_key(_key("very-secret-value-123"))
    await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))
    assert b"very-secret-value-123" not in raw


async def test_rotated_key_keeps_its_old_secret_for_the_overlap_only(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    cache = KeyCache(store, refresh_interval=0.05)
    await cache.start()
    try:
        await store.create_key(_key("old-secret", user_id="u-1", profile_id="p-dev"))
        key = await cache.authenticate("old-secret")
        assert (key.user_id, key.profile_id) == ("u-1", "p-dev")
        until = datetime.now(UTC) + timedelta(hours=1)
        rotated = dataclasses.replace(
            key,
            key_hash=hash_secret("new-secret"),
            key_hint=hint_of("new-secret"),
            previous_key_hash=key.key_hash,
            previous_valid_until=until,
        )
        assert await store.update_key(rotated)
        await cache.reload()
        assert (await cache.authenticate("new-secret")).id == "vk-a"
        assert (await cache.authenticate("old-secret")).id == "vk-a"
        assert (await store.key_by_hash(hash_secret("old-secret"))) is not None
        # The overlap ends: the old secret is refused, the new one still works.
        assert await store.update_key(dataclasses.replace(rotated, previous_valid_until=datetime.now(UTC)))
        await cache.reload()
        with pytest.raises(SluiceError) as expired:
            await cache.authenticate("old-secret")
        assert expired.value.kind is ErrorKind.CALLER_INVALID_KEY
        assert (await cache.authenticate("new-secret")).id == "vk-a"
        assert not await store.update_key(dataclasses.replace(rotated, id="vk-unknown"))
    finally:
        await cache.stop()
        await store.close()


async def test_cached_only_never_asks_the_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    cache = KeyCache(store, refresh_interval=3600)
    await cache.reload()
    try:
        await store.create_key(_key("s3cret"))  # after the cache loaded
        with pytest.raises(SluiceError) as unknown:
            await cache.authenticate("s3cret", cached_only=True)  # a throttled caller's guess
        assert unknown.value.kind is ErrorKind.CALLER_INVALID_KEY
        assert (await cache.authenticate("s3cret")).id == "vk-a"  # through the store
        assert (await cache.authenticate("s3cret", cached_only=True)).id == "vk-a"  # now in memory
    finally:
        await store.close()
