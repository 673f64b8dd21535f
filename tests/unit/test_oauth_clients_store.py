"""The registered MCP clients' bound (SqlStore.create_client): full means refused, except that
registrations older than a day that no sign-in grant names make room first (a flood of
registrations never gets a grant, so it cannot lock clients out for good)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.app import open_store
from sluice.storage.grants import GatewayGrant, OAuthClient
from sluice.storage.ports import Store

DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'clients.db'}")
    await st.migrate()
    yield st
    await st.close()


def client(client_id: str, at: float, address: str = "198.51.100.1") -> OAuthClient:
    return OAuthClient(client_id, client_id, ("http://localhost:1/callback",), at, address)


async def test_full_refuses_until_unused_old_registrations_make_room(store: Store) -> None:
    assert await store.create_client(client("used", 0.0), most=2, most_from_address=10, since=0.0)
    assert await store.create_client(client("flood", 0.0), most=2, most_from_address=10, since=0.0)
    grant = GatewayGrant("g1", "h" * 64, "C-000000000000", "active", 0.0, DAY, client_id="used", code_challenge="c")
    await store.create_grant(grant)
    # Full, and nothing is a day old yet: refused, both kept.
    assert not await store.create_client(client("new", DAY / 2), most=2, most_from_address=10, since=0.0)
    assert await store.client_by_id("flood") is not None
    # A day on: the unused one goes, the one a grant names stays, the new one fits.
    assert await store.create_client(client("new", 2 * DAY), most=2, most_from_address=10, since=0.0)
    assert await store.client_by_id("flood") is None
    assert await store.client_by_id("used") is not None
    assert (await store.client_by_id("new")) == client("new", 2 * DAY)


async def test_one_address_is_bounded_within_the_window(store: Store) -> None:
    for n in range(3):
        assert await store.create_client(
            client(f"c{n}", 100.0 + n, "198.51.100.7"), most=100, most_from_address=3, since=50.0
        )
    assert not await store.create_client(client("c3", 110.0, "198.51.100.7"), most=100, most_from_address=3, since=50.0)
    assert await store.create_client(client("c4", 110.0, "198.51.100.8"), most=100, most_from_address=3, since=50.0)
    assert await store.create_client(
        client("c5", 200.0, "198.51.100.7"), most=100, most_from_address=3, since=150.0
    )  # window moved
