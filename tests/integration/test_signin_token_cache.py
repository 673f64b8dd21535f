"""The sign-in token cache (sluice.gateway_signin.token_cache) on two replicas sharing one store: a
cached token costs no store read, and a revocation or a SCIM deactivation on either replica still
refuses the token at the next request on that replica, and on the other once it has polled (or
its short TTL ran out)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sluice.app import Services, build_services
from sluice.auth.directory import USER
from sluice.core.errors import ErrorKind, SluiceError
from sluice.gateway_signin.service import REFRESH_PREFIX, GatewaySignin, digest
from sluice.settings import parse_config
from sluice.storage.grants import GatewayGrant

pytestmark = pytest.mark.asyncio


PG = "postgresql://postgres@127.0.0.1:5432"


def _config(tmp: Path, name: str, store: str) -> dict[str, Any]:
    return {
        "store": {"url": store},
        "request_log": {"spill_path": str(tmp / f"{name}-spill.jsonl")},
        "governance": {"spend_journal_path": str(tmp / f"{name}-journal.jsonl")},
        "audit": {
            "hmac_key": "k" * 32,
            "checkpoint_path": str(tmp / f"{name}-cp.jsonl"),
            "checkpoint_key_path": str(tmp / f"{name}-cp.key"),
        },
        "access_profiles": [{"id": "developers", "groups": ["engineering"], "provider_configs": []}],
        "auth": {
            "oidc": {
                "issuer": "https://idp.example.com",
                "client_id": "sluice",
                "client_secret": "client-secret-0123456789",
                "redirect_uri": "https://sluice.example.com/auth/callback",
            },
            "session": {"secret": "session-secret-0123456789"},
            "gateway_signin": {"public_url": "https://sluice.example.com"},
        },
    }


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Services, Services, Clock]]:
    root = None
    if request.param == "postgresql":
        name = "sluice_tokens_" + uuid.uuid4().hex[:8]
        root = await asyncpg.connect(PG + "/postgres")
        await root.execute(f'CREATE DATABASE "{name}"')
        store = f"{PG}/{name}"
    else:
        store = f"sqlite:///{tmp_path / 'shared.db'}"
    a = build_services(parse_config(_config(tmp_path, "a", store)))
    b = build_services(parse_config(_config(tmp_path, "b", store)))
    clock = Clock()
    for services in (a, b):
        await services.start()
        signin = services.identity.gateway
        assert signin is not None
        signin._clock = clock  # one clock for both: a TTL runs out on purpose, not by waiting
    try:
        yield a, b, clock
    finally:
        await a.stop()
        await b.stop()
        if root is not None:
            await root.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await root.close()


def _signin(services: Services) -> GatewaySignin:
    assert services.identity.gateway is not None
    return services.identity.gateway


async def _signed_in(services: Services, clock: Clock) -> tuple[str, str, str]:
    """(user id, grant id, access token) of a person signed in through the device flow's last step."""
    directory = services.identity.directory
    uid = f"u-{secrets.token_hex(4)}"
    await directory.put(USER, uid, {"userName": f"{uid}@example.com", "sluice:idpGroups": ["engineering"]}, "test")
    key, _ = await directory.sync_key(uid, "test", extra_groups=["engineering"])
    assert key is not None
    refresh = f"{REFRESH_PREFIX}g.{secrets.token_urlsafe(8)}"
    grant = GatewayGrant(
        id=secrets.token_hex(8),
        device_hash=digest(secrets.token_urlsafe(8)),
        user_code="BCDF-GHJK",
        status="active",
        created_at=clock.now,
        expires_at=clock.now + 3600,
        user_id=uid,
        key_id=key.id,
        refresh_hash=digest(refresh),
    )
    await services.store.create_grant(grant)
    return uid, grant.id, _signin(services).issue(grant, refresh, clock.now).access_token


async def _refused(signin: GatewaySignin, token: str) -> bool:
    try:
        await signin.key_for(token)
    except SluiceError as err:
        assert err.kind in (ErrorKind.CALLER_INVALID_KEY, ErrorKind.POLICY_KEY_INACTIVE)
        return True
    return False


async def test_a_cached_token_reads_nothing_from_the_store(replicas: tuple[Services, Services, Clock]) -> None:
    a, _, clock = replicas
    _, _, token = await _signed_in(a, clock)
    signin = _signin(a)
    first = await signin.key_for(token)
    reads: list[str] = []
    store: Any = a.store
    real_grant_by, real_key_by_id = store.grant_by, store.key_by_id

    async def grant_by(column: str, value: str) -> Any:
        reads.append("grant")
        return await real_grant_by(column, value)

    async def key_by_id(key_id: str) -> Any:
        reads.append("key")
        return await real_key_by_id(key_id)

    store.grant_by, store.key_by_id = grant_by, key_by_id
    try:
        again = await signin.key_for(token)
        assert again == first and reads == []
        clock.now += signin.tokens.ttl_s  # the TTL ran out: both are read again
        assert await signin.key_for(token) == first and reads == ["grant", "key"]
    finally:
        store.grant_by, store.key_by_id = real_grant_by, real_key_by_id


async def test_an_admin_revoke_cuts_off_on_this_replica_and_the_other(
    replicas: tuple[Services, Services, Clock],
) -> None:
    a, b, clock = replicas
    uid, gid, token = await _signed_in(a, clock)
    assert not await _refused(_signin(a), token) and not await _refused(_signin(b), token)  # both cached it

    assert await _signin(a).revoke_one(uid, gid, "admin") is not None
    assert await _refused(_signin(a), token)  # the very next request here
    await _signin(b).tokens.poll()  # what B's follower does every 0.25 s
    assert await _refused(_signin(b), token)


async def test_a_scim_deactivation_on_the_other_replica_cuts_off_here(
    replicas: tuple[Services, Services, Clock],
) -> None:
    a, b, clock = replicas
    uid, _, token = await _signed_in(a, clock)
    assert not await _refused(_signin(a), token) and not await _refused(_signin(b), token)

    assert await b.identity.directory.set_active(uid, False, "scim") is not None  # B's SCIM endpoint
    assert await _refused(_signin(b), token)  # B: at once, its own change
    await _signin(a).tokens.poll()
    assert await _refused(_signin(a), token)


async def test_without_a_poll_the_ttl_still_ends_it(replicas: tuple[Services, Services, Clock]) -> None:
    a, b, clock = replicas
    uid, gid, token = await _signed_in(a, clock)
    assert not await _refused(_signin(b), token)
    await _signin(a).revoke_one(uid, gid, "admin")
    clock.now += _signin(b).tokens.ttl_s
    assert await _refused(_signin(b), token)


async def test_a_lookup_that_raced_a_revocation_is_not_kept(replicas: tuple[Services, Services, Clock]) -> None:
    a, _, clock = replicas
    uid, gid, token = await _signed_in(a, clock)
    signin = _signin(a)
    store: Any = a.store
    real_key_by_id = store.key_by_id

    async def key_by_id(key_id: str) -> Any:
        found = await real_key_by_id(key_id)
        await signin.revoke_one(uid, gid, "admin")  # lands after the grant was read as active
        return found

    store.key_by_id = key_by_id
    try:
        await signin.key_for(token)  # this one was admitted before the revocation finished
    finally:
        store.key_by_id = real_key_by_id
    assert len(signin.tokens) == 0
    assert await _refused(signin, token)
