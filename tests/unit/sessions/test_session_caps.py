"""Session caps as a scope of Limits: a dollar counter per key's session, a duration from the
session's first request, and the ways a caller might try to dodge them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sluice.app import open_store
from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.limits import Limits
from sluice.storage.ports import Store
from sluice.storage.records import VirtualKey
from tests.unit.test_limits import DOLLAR, FakeClock, make_limits, vk


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'caps.db'}")
    await s.migrate()
    yield s
    await s.close()


def config(**cap: Any) -> dict[str, Any]:
    return {
        "teams": [{"id": "team-a"}],
        "virtual_keys": [{"id": "vk-a", "team_id": "team-a"}, {"id": "vk-b", "team_id": "team-a"}],
        "session_caps": [{"id": "cap-session", "team_id": "team-a", **cap}],
    }


async def spend(limits: Limits, key: VirtualKey, rid: str, session: str | None, reserve: int, actual: int) -> None:
    admission = await limits.admit(rid, key, reserve, 0, session)
    assert admission is not None
    await limits.settle(admission, limits.spend_row(admission, rid, key, actual, 0, datetime.now(UTC)))


async def refused(limits: Limits, key: VirtualKey, session: str | None, cost: int = DOLLAR // 10) -> SluiceError:
    with pytest.raises(SluiceError) as exc:
        await limits.admit("refused", key, cost, 0, session)
    return exc.value


NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_a_spent_session_is_refused_with_the_budget_error_and_a_new_session_is_not(store: Store) -> None:
    limits = await make_limits(store, config(max_cost=1), FakeClock(NOW))
    a = vk("vk-a", "team-a")
    for i in range(9):
        await spend(limits, a, f"r{i}", "sess-1", DOLLAR // 10, DOLLAR // 10)
    await spend(limits, a, "r9", "sess-1", DOLLAR // 10, DOLLAR // 10)  # exactly $1: still within
    err = await refused(limits, a, "sess-1")
    assert err.kind is ErrorKind.POLICY_BUDGET_EXCEEDED
    assert "Budget 'cap-session' (session sess-1) is exhausted: limit $1.00 per session" in err.message
    assert await limits.admit("other", a, DOLLAR // 10, 0, "sess-2") is not None


async def test_the_session_id_is_compared_in_one_form(store: Store) -> None:
    # Re-spelling the spent session's id (case, spaces, percent-escapes, full-width letters) is the same session.
    limits = await make_limits(store, config(max_cost=1), FakeClock(NOW))
    a = vk("vk-a", "team-a")
    await spend(limits, a, "r0", "Sess-1", DOLLAR, DOLLAR)
    for spelling in ("sess-1", "SESS-1", " sess-1 ", "%53ess-1", "ｓｅｓｓ-1"):
        assert (await refused(limits, a, spelling)).kind is ErrorKind.POLICY_BUDGET_EXCEEDED, spelling


async def test_another_key_naming_the_victims_session_neither_spends_nor_shares_its_cap(store: Store) -> None:
    limits = await make_limits(store, config(max_cost=1), FakeClock(NOW))
    a, b = vk("vk-a", "team-a"), vk("vk-b", "team-a")
    await spend(limits, b, "r0", "victim", DOLLAR, DOLLAR)  # b exhausts "its" session named like a's
    assert await limits.admit("a1", a, DOLLAR // 10, 0, "victim") is not None


async def test_no_session_id_is_refused_by_default_so_leaving_the_header_out_dodges_nothing(store: Store) -> None:
    limits = await make_limits(store, config(max_cost=1), FakeClock(NOW))
    err = await refused(limits, vk("vk-a", "team-a"), None)
    assert err.kind is ErrorKind.CALLER_BAD_REQUEST and "names no session" in err.message
    assert (await refused(limits, vk("vk-a", "team-a"), "   ")).kind is ErrorKind.CALLER_BAD_REQUEST


async def test_shared_counts_every_sessionless_request_of_a_key_as_one_session(store: Store) -> None:
    limits = await make_limits(store, config(max_cost=1, without_session="shared"), FakeClock(NOW))
    a = vk("vk-a", "team-a")
    await spend(limits, a, "r0", None, DOLLAR, DOLLAR)
    assert (await refused(limits, a, None)).kind is ErrorKind.POLICY_BUDGET_EXCEEDED


async def test_duration_runs_from_the_sessions_first_request_on_every_replica(store: Store) -> None:
    clock = FakeClock(NOW)
    first = await make_limits(store, config(max_duration="4h"), clock)
    second = await make_limits(store, config(max_duration="4h"), clock)  # another replica, same store
    a = vk("vk-a", "team-a")
    assert await first.admit("r0", a, 1, 0, "long") is not None
    clock.current = NOW + timedelta(hours=3, minutes=59)
    assert await second.admit("r1", a, 1, 0, "long") is not None
    clock.current = NOW + timedelta(hours=4)
    err = await refused(second, a, "LONG")
    assert err.kind is ErrorKind.POLICY_BUDGET_EXCEEDED and "has run 4h00m" in err.message
    assert await second.admit("r2", a, 1, 0, "fresh") is not None  # a new session starts its own clock


async def test_an_access_profiles_cap_is_per_derived_key(store: Store) -> None:
    cfg = {
        "access_profiles": [{"id": "dev", "session_caps": [{"id": "per-session", "max_cost": 1}]}],
    }
    limits = await make_limits(store, cfg, FakeClock(NOW))
    alice = VirtualKey("vk-alice", "alice", "h1", "h", (), profile_id="dev")
    await spend(limits, alice, "r0", "s", DOLLAR, DOLLAR)
    err = await refused(limits, alice, "s")
    assert err.kind is ErrorKind.POLICY_BUDGET_EXCEEDED and "dev/per-session@vk-alice" in err.message


async def test_a_key_without_caps_or_limits_admits_nothing_to_count(store: Store) -> None:
    limits = await make_limits(store, config(max_cost=1), FakeClock(NOW))
    assert await limits.admit("r", vk("vk-other"), DOLLAR * 5, 0, None) is None
