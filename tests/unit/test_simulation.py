"""Policy simulation over a real SQLite store: what the report says of each kind of row, and
that nothing in a proposal reaches the store's writes or the network."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sluice.settings import ConfigError
from sluice.simulation import parse_proposal, simulate
from sluice.simulation.parallel import simulate_parallel
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import RequestLogEntry

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
PRICES = {
    SONNET: {"input_cost_per_mtok": 3, "output_cost_per_mtok": 15},
    HAIKU: {"input_cost_per_mtok": 1, "output_cost_per_mtok": 5},
}


def entry(n: int, *, key: str | None = "vk-a", model: str = SONNET, cost: int = 0, **kw: Any) -> RequestLogEntry:
    fields: dict[str, Any] = {
        "request_id": f"r-{n:04d}",
        "ts": T0 + timedelta(minutes=n),
        "path": "/v1/messages",
        "surface": "anthropic_messages",
        "status": 200,
        "decision": "allow",
        "virtual_key_id": key,
        "team_id": "team-a" if key else None,
        "provider": "anthropic",
        "requested_model": model,
        "model": model,
        "input_tokens": 1000,
        "output_tokens": 1000,
        "cost_pico": cost,
    }
    fields.update(kw)
    return RequestLogEntry(**fields)


def proposal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "providers": {"anthropic": {"keys": [{"name": "k", "value": "x"}]}},
        "pricing": {"overrides": PRICES},
        "teams": [{"id": "team-a"}],
        "virtual_keys": [{"id": "vk-a", "team_id": "team-a", "provider_configs": [{"provider": "anthropic"}]}],
    }
    doc.update(extra)
    return doc


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    s = SqlStore(f"sqlite:///{tmp_path / 'live.db'}")
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


# 1000 input + 1000 output tokens of Sonnet at $3/$15 per million: $0.018.
SONNET_COST = 18 * 10**9
HAIKU_COST = 6 * 10**9


async def test_an_unchanged_policy_changes_nothing(store: SqlStore) -> None:
    await store.insert_requests([entry(n, cost=SONNET_COST) for n in range(5)])
    report = await simulate(parse_proposal(proposal()), store, T0)
    t = report.total
    assert (t.requests, t.unchanged, t.refused, t.rerouted) == (5, 5, 0, 0)
    assert t.cost_before_pico == t.cost_after_pico == 5 * SONNET_COST


async def test_a_budget_refuses_in_timestamp_order_and_refused_requests_are_not_charged(store: SqlStore) -> None:
    # Logged out of order: the replay sorts by time. $0.05 holds two requests of $0.018; the third
    # is refused, and since it is not charged the fourth, cheaper one ($0.006) still fits.
    rows = [entry(3, cost=SONNET_COST), entry(1, cost=SONNET_COST), entry(2, cost=SONNET_COST)]
    rows.append(entry(4, model=HAIKU, cost=HAIKU_COST))
    await store.insert_requests(rows)
    budget = {"id": "b-a", "virtual_key_id": "vk-a", "max_limit": 0.05, "reset_duration": "1d"}
    report = await simulate(parse_proposal(proposal(budgets=[budget])), store, T0, sample=None)
    assert report.examples["refused"] == ["r-0003"]
    assert report.total.refused_by == {"b-a": 1}
    assert report.total.unchanged == 3
    assert report.total.cost_after_pico == 2 * SONNET_COST + HAIKU_COST
    assert report.developers["vk-a"].refused == 1 and report.teams["team-a"].refused == 1


async def test_unknown_keys_and_models_are_refused_as_the_gateway_refuses_them(store: SqlStore) -> None:
    await store.insert_requests(
        [
            entry(1, key="vk-gone", cost=SONNET_COST),
            entry(2, model="no-such-model-anywhere"),
            entry(3, key=None, status=401, decision="deny", requested_model=None, model=None, provider=None),
        ]
    )
    doc = proposal()
    doc["virtual_keys"][0]["provider_configs"] = [{"provider": "anthropic", "allowed_models": [SONNET]}]
    report = await simulate(parse_proposal(doc), store, T0)
    assert report.total.refused_by == {"unknown_key": 1, "policy_model_denied": 1}
    assert report.skipped == {"no key (unauthenticated)": 1}
    assert report.developers["vk-gone"].refused == 1


async def test_rows_with_no_cost_are_repriced_only_when_rerouted(store: SqlStore) -> None:
    # Rows logged at $0 (their model was unpriced then, or they failed): served as logged, they stay
    # $0; rerouted by an alias to Haiku, the logged usage is priced on Haiku; a model nothing
    # prices is charged $0 and named in the report.
    unpriced = "claude-house-model"
    await store.insert_requests(
        [
            entry(1, cost=0),
            entry(2, cost=0, model=HAIKU),
            entry(3, cost=0, model=unpriced),
            entry(4, cost=0, model=HAIKU, decision="error", status=529, input_tokens=0, output_tokens=0),
        ]
    )
    doc = proposal(routing={"aliases": [{"alias": SONNET, "target": HAIKU}]})
    doc["virtual_keys"][0]["provider_configs"] = [
        {"provider": "anthropic", "allowed_models": [SONNET, HAIKU, unpriced]}
    ]
    report = await simulate(parse_proposal(doc), store, T0, sample=None)
    assert report.total.cost_before_pico == 0
    assert report.examples["rerouted"] == ["r-0001"]
    assert report.total.unchanged == 3
    assert report.total.cost_after_pico == HAIKU_COST + HAIKU_COST  # r-0001 rerouted, r-0002 priced now
    assert report.unpriced == {unpriced: 1}
    assert report.reroutes == {f"anthropic/{SONNET} -> anthropic/{HAIKU}": 1}


async def test_a_routing_rule_in_cel_degrades_to_a_cheaper_model(store: SqlStore) -> None:
    await store.insert_requests([entry(n, cost=SONNET_COST, client="claude-cli/2.1") for n in range(3)])
    rule = {"id": "cli-to-haiku", "models": [SONNET], "when": 'request.client.startsWith("claude")', "target": HAIKU}
    report = await simulate(parse_proposal(proposal(routing={"rules": [rule]})), store, T0)
    assert report.total.degraded == 3
    assert report.total.cost_after_pico == 3 * HAIKU_COST


async def test_session_caps_by_duration_and_dollars_are_decided_per_session(store: SqlStore) -> None:
    # Requests a minute apart. Session "s1" runs from minute 0: a 5-minute cap refuses it from
    # minute 5 on. Session "s2" starts at minute 2, so its own clock allows it until minute 7, and
    # its $0.04 holds two Sonnet requests ($0.018 each), the third is refused. A request naming no
    # session is counted in one shared session (`without_session: shared`), which started at minute 3.
    sessions = ["s1", "s1", "s2", None, "s2", "s1", "s2", None, "s1", None]
    await store.insert_requests([entry(n, cost=SONNET_COST, session_id=s) for n, s in enumerate(sessions)])
    cap = {"id": "cap", "virtual_key_id": "vk-a", "max_cost": 0.04, "max_duration": "5m", "without_session": "shared"}
    report = await simulate(parse_proposal(proposal(session_caps=[cap])), store, T0, sample=None)
    # s1: 0, 1 served, 5 and 8 past 5 minutes; s2: 2, 4 served, 6 over $0.04; shared: 3, 7 served, 9 past 5 minutes.
    assert report.examples["refused"] == ["r-0005", "r-0006", "r-0008", "r-0009"]
    assert report.total.refused_by == {"cap": 4}
    assert report.total.cost_after_pico == 6 * SONNET_COST


async def test_a_session_cap_refuses_requests_naming_no_session(store: SqlStore) -> None:
    await store.insert_requests([entry(n, cost=SONNET_COST, session_id=None if n % 2 else "s") for n in range(4)])
    cap = {"id": "cap", "virtual_key_id": "vk-a", "max_duration": "1h"}  # without_session: refuse
    report = await simulate(parse_proposal(proposal(session_caps=[cap])), store, T0, sample=None)
    assert report.examples["refused"] == ["r-0001", "r-0003"]
    assert report.total.refused_by == {"cap": 2}


async def test_a_proposal_that_fails_validation_says_why() -> None:
    with pytest.raises(ConfigError) as err:
        parse_proposal({"budgets": [{"id": "b", "virtual_key_id": "vk", "max_limit": -1, "reset_duration": "1d"}]})
    assert "budgets.0.max_limit" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_proposal({"budgetz": []})
    assert "budgetz: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match="when"):
        parse_proposal({"routing": {"rules": [{"id": "r", "when": "this is not CEL (", "target": "m"}]}})


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


async def test_a_hostile_proposal_reaches_neither_the_store_nor_the_network(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.insert_requests([entry(n, cost=SONNET_COST) for n in range(20)])
    budget = {"id": "b-live", "virtual_key_id": "vk-a", "max_limit": 100, "reset_duration": "1d"}
    await sync_live(store, budget)
    live_db = tmp_path / "live.db"
    before = dump(live_db)
    # Every outward-facing setting a config can hold, pointed somewhere the test can watch.
    elsewhere = tmp_path / "elsewhere"
    doc = proposal(
        store={"url": f"sqlite:///{elsewhere}.db"},
        request_log={"spill_path": str(elsewhere) + ".spill"},
        governance={"backend": "redis", "redis_url": "redis://127.0.0.1:1/0", "spend_journal_path": str(elsewhere)},
        audit={
            "hmac_key": "k" * 32,
            "exporters": [{"name": "x", "type": "webhook", "url": "http://127.0.0.1:1/", "secret": "s" * 32}],
        },
        budgets=[{"id": "b-live", "virtual_key_id": "vk-a", "max_limit": 0.04, "reset_duration": "1d"}],
        rate_limits=[{"id": "rl", "team_id": "team-a", "request_max_limit": 5, "request_reset_duration": "1h"}],
    )
    doc["providers"]["anthropic"]["base_url"] = "http://127.0.0.1:1"
    connects: list[Any] = []
    real_connect = socket.socket.connect

    def watched(self: socket.socket, address: Any) -> Any:
        connects.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", watched)
    report = await simulate(parse_proposal(doc), store, T0)
    assert report.total.refused == 18  # two fit in $0.04; the rest are refused
    assert connects == []
    assert not list(tmp_path.glob("elsewhere*"))
    assert dump(live_db) == before  # not a row written, not an anchor, not a ledger entry


async def sync_live(store: SqlStore, budget: dict[str, Any]) -> None:
    from sluice.storage.records import ConfigObject

    await store.put_object(ConfigObject("budget", budget["id"], budget), "test")


async def test_a_replay_split_over_processes_reports_what_one_replay_reports(store: SqlStore, tmp_path: Path) -> None:
    # Six keys: two teams of one customer (a customer budget joins them), a team of its own (a team
    # budget), a key alone (a key budget and a session cap), plus rows of an unknown key and of none.
    # Split by key, the shared budgets would be counted apart and refuse less.
    keys = {"vk-a": "team-a", "vk-b": "team-a", "vk-c": "team-b", "vk-d": "team-c", "vk-e": "team-c", "vk-f": None}
    order = [*keys, "vk-gone", None]
    rows = [entry(n, key=order[n % len(order)], cost=SONNET_COST, session_id=f"s{n % 3}") for n in range(160)]
    await store.insert_requests(rows)
    doc = proposal(
        customers=[{"id": "cust"}],
        teams=[{"id": "team-a", "customer_id": "cust"}, {"id": "team-b", "customer_id": "cust"}, {"id": "team-c"}],
        virtual_keys=[
            {"id": k, "team_id": t, "provider_configs": [{"provider": "anthropic"}]}
            if t
            else {"id": k, "provider_configs": [{"provider": "anthropic"}]}
            for k, t in keys.items()
        ],
        budgets=[
            {"id": "b-cust", "customer_id": "cust", "max_limit": 0.2, "reset_duration": "1h"},
            {"id": "b-team-c", "team_id": "team-c", "max_limit": 0.08, "reset_duration": "30m"},
            {"id": "b-f", "virtual_key_id": "vk-f", "max_limit": 0.1, "reset_duration": "1h"},
        ],
        session_caps=[{"id": "cap-f", "virtual_key_id": "vk-f", "max_cost": 0.05}],
    )
    config = parse_proposal(doc)
    one = await simulate(config, store, T0, sample=7)
    url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    split = await asyncio.to_thread(simulate_parallel, config, url, T0, None, processes=2, sample=7)
    assert one.total.refused_by.keys() == {"b-cust", "b-team-c", "b-f", "cap-f", "unknown_key"}
    assert {**split.as_dict(), "seconds": 0} == {**one.as_dict(), "seconds": 0}
    assert split.examples_at == one.examples_at
