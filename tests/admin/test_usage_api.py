"""Spend reports (JSON and CSV), request log queries with filters and pages, audit queries; every
log read is itself recorded in the audit log."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime, timedelta

from sluice.app import Services
from sluice.storage.records import RequestLogEntry
from tests.admin.conftest import Client, as_role

NOW = datetime.now(UTC).replace(microsecond=0)


def entry(n: int, key: str, team: str | None, model: str, cost: int, days_ago: int = 0) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"req-{n}",
        ts=NOW - timedelta(days=days_ago, minutes=n),
        path="/v1/messages",
        surface="anthropic_messages",
        status=200,
        decision="allow",
        virtual_key_id=key,
        team_id=team,
        model=model,
        provider="fake",
        input_tokens=10,
        output_tokens=5,
        cost_pico=cost,
    )


async def seed(services: Services, c: Client) -> None:
    await c.post("/api/keys", json={"id": "vk-a", "team_id": "team-a", "user_id": "u-alice"})
    await c.post("/api/keys", json={"id": "vk-b", "team_id": "team-b", "user_id": "u-bob"})
    await services.store.insert_requests(
        [
            entry(1, "vk-a", "team-a", "m1", 1_500_000_000_000),
            entry(2, "vk-a", "team-a", "m2", 500_000_000_000, days_ago=1),
            entry(3, "vk-b", "team-b", "m1", 2_000_000_000_000),
            entry(4, "vk-b", "team-b", "m1", 1, days_ago=40),  # outside the default 30 days
        ]
    )


async def test_spend_by_every_grouping(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    report = {}
    for group in ("key", "user", "team", "model", "day"):
        r = await c.get("/api/spend", query={"group_by": group})
        assert r.status == 200, r.body
        report[group] = {row["group"]: (row["cost_usd"], row["requests"]) for row in r.json()["rows"]}
    assert report["key"] == {"vk-a": ("2", 2), "vk-b": ("2", 1)}
    assert report["user"] == {"u-alice": ("2", 2), "u-bob": ("2", 1)}
    assert report["team"] == {"team-a": ("2", 2), "team-b": ("2", 1)}
    assert report["model"] == {"m1": ("3.5", 2), "m2": ("0.5", 1)}
    assert sum(n for _, n in report["day"].values()) == 3
    r = await c.get("/api/spend", query={"group_by": "model", "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.body.decode())))
    assert rows[0][:4] == ["model", "cost_usd", "tokens", "requests"] and ["m1", "3.5", "30", "2"] == rows[1][:4]
    records = [rec async for rec in services.store.audit_records()]
    assert any(rec.kind == "data_access" and rec.data["action"] == "spend_export" for rec in records)


async def test_spend_report_counts_guardrail_decisions(admin: tuple[Services, Client]) -> None:
    """The spend report says, per group, how many guardrail decisions there were, on how many
    requests, and how many requests a rule blocked (JSON and CSV)."""
    services, c = admin
    await seed(services, c)
    flagged = dataclasses.replace(entry(5, "vk-a", "team-a", "m1", 0), request_id="req-g1", guardrails=3)
    blocked = dataclasses.replace(
        entry(6, "vk-a", "team-a", "m1", 0),
        request_id="req-g2",
        status=403,
        decision="deny",
        error_kind="policy_guardrail",
        guardrails=1,
    )
    await services.store.insert_requests([flagged, blocked])
    rows = {r["group"]: r for r in (await c.get("/api/spend", query={"group_by": "key"})).json()["rows"]}
    assert (
        rows["vk-a"]["guardrail_decisions"],
        rows["vk-a"]["guarded_requests"],
        rows["vk-a"]["guardrail_blocks"],
    ) == (
        4,
        2,
        1,
    )
    assert (
        rows["vk-b"]["guardrail_decisions"],
        rows["vk-b"]["guarded_requests"],
        rows["vk-b"]["guardrail_blocks"],
    ) == (
        0,
        0,
        0,
    )
    r = await c.get("/api/spend", query={"group_by": "key", "format": "csv"})
    table = list(csv.reader(io.StringIO(r.body.decode())))
    assert table[0][4:] == [
        "guardrail_decisions",
        "guarded_requests",
        "guardrail_blocks",
        "agent_cost_usd",
        "agent_tokens",
    ]
    assert next(row for row in table if row[0] == "vk-a")[4:] == ["4", "2", "1", "0", "0"]


async def test_spend_is_restricted_to_what_the_caller_may_see(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    lead = await c.get("/api/spend", query={"group_by": "team"}, token=as_role("team-lead", "team-a"))
    assert [row["group"] for row in lead.json()["rows"]] == ["team-a"]
    dev = await c.get("/api/spend", query={"group_by": "key"}, token=as_role("developer", "", "u-bob"))
    assert [row["group"] for row in dev.json()["rows"]] == ["vk-b"]
    assert (await c.get("/api/spend", query={"user": "u-alice"}, token=as_role("developer", "", "u-bob"))).status == 403
    assert (await c.get("/api/spend", token=as_role("viewer"))).status == 403


async def test_request_log_filters_and_pages(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    r = await c.get("/api/requests", query={"limit": 2})
    page = r.json()
    assert [i["request_id"] for i in page["items"]] == ["req-1", "req-3"] and page["next_offset"] == 2
    r = await c.get("/api/requests", query={"limit": 2, "offset": 2})
    assert [i["request_id"] for i in r.json()["items"]] == ["req-2", "req-4"]
    r = await c.get("/api/requests", query={"team": "team-a", "model": "m2"})
    assert [i["request_id"] for i in r.json()["items"]] == ["req-2"]
    r = await c.get("/api/requests", query={"user": "u-bob", "since": (NOW - timedelta(days=2)).isoformat()})
    assert [i["request_id"] for i in r.json()["items"]] == ["req-3"]
    assert (await c.get("/api/requests", token=as_role("team-lead", "team-a"))).status == 403
    assert (await c.get("/api/requests", token=as_role("security-auditor"))).status == 200
    records = [rec async for rec in services.store.audit_records()]
    reads = [rec for rec in records if rec.kind == "data_access" and rec.data["action"] == "request_log_query"]
    assert len(reads) == 5 and reads[-1].actor == "oidc:security-auditor@example.test"


async def test_audit_query(admin: tuple[Services, Client]) -> None:
    _, c = admin
    await c.post("/api/teams", json={"id": "t1"})
    r = await c.get("/api/audit", query={"kind": "config_change"}, token=as_role("security-auditor"))
    assert r.status == 200
    items = r.json()["items"]
    assert [i["data"]["id"] for i in items] == ["t1"] and items[0]["actor"] == "bootstrap:bootstrap"
    assert (await c.get("/api/audit", token=as_role("viewer"))).status == 403
    r = await c.get("/api/audit", query={"limit": 1})
    assert len(r.json()["items"]) == 1 and r.json()["next_since_seq"] == 2


async def test_spend_by_user_is_by_the_keys_owner_not_the_agents_end_user(admin: tuple[Services, Client]) -> None:
    """group_by=user and user= name the Sluice user a key belongs to (VirtualKey.user_id), not
    the end-user id an agent sends in the request body (kept in the request log's user_id)."""
    services, c = admin
    await c.post("/api/keys", json={"id": "vk-a", "user_id": "u-alice"})
    await c.post("/api/keys", json={"id": "vk-shared"})  # a service key without an owner
    body_users = ["customer-42", "u-bob", "customer-42"]
    await services.store.insert_requests(
        [
            dataclasses.replace(entry(n, key, None, "m1", 10**12), user_id=end_user)
            for n, (key, end_user) in enumerate(zip(["vk-a", "vk-a", "vk-shared"], body_users, strict=True))
        ]
    )
    rows = (await c.get("/api/spend", query={"group_by": "user"})).json()["rows"]
    assert {row["group"]: row["requests"] for row in rows} == {"u-alice": 2, None: 1}
    bob = (await c.get("/api/spend", query={"group_by": "key", "user": "u-bob"})).json()["rows"]
    assert bob == []  # u-bob only appears as an end user in a request body
    alice = (await c.get("/api/spend", query={"group_by": "key"}, token=as_role("developer", "", "u-alice"))).json()
    assert [(row["group"], row["requests"]) for row in alice["rows"]] == [("vk-a", 2)]
