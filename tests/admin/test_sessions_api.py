"""GET /api/sessions, /api/sessions/{id} and /api/sessions/spend over sessions made by real
inference requests (the headers an agent sends, through the recorder into the ledger): filters,
paging, CSV, a session's requests, spend by repository and branch, and who may see what."""

from __future__ import annotations

import csv
import io

from sluice.app import Services
from tests.admin.conftest import Client, as_role

CHAT = {"model": "fake/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def key(c: Client, key_id: str, team: str, user: str) -> str:
    made = await c.post(
        "/api/keys", json={"id": key_id, "team_id": team, "user_id": user, "grants": [{"provider": "fake"}]}
    )
    assert made.status == 201, made.body
    return str(made.json()["secret"])


async def call(c: Client, secret: str, session: str, **place: str) -> None:
    headers = {"x-sluice-session": session, "user-agent": "my-agent/1.2.3 (linux)"}
    headers |= {f"x-sluice-{k}": v for k, v in place.items()}
    reply = await c.post("/v1/chat/completions", json=CHAT, token=secret, headers=headers)
    assert reply.status == 200, reply.body


async def seed(services: Services, c: Client) -> None:
    alice = await key(c, "vk-alice", "team-a", "u-alice")
    bob = await key(c, "vk-bob", "team-b", "u-bob")
    for _ in range(3):
        await call(c, alice, "refactor", repo="acme/api", branch="refactor-auth", cwd="/home/alice/api")
    await call(c, alice, "docs", repo="acme/web", branch="main")
    await call(c, bob, "refactor", repo='=HYPERLINK("http://evil")', branch="main")  # same id, bob's own session
    await services.recorder.flush()


async def test_sessions_list_filters_and_detail(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    r = await c.get("/api/sessions")
    assert r.status == 200, r.body
    items = r.json()["items"]
    assert {(s["virtual_key_id"], s["session_id"]) for s in items} == {
        ("vk-alice", "refactor"),
        ("vk-alice", "docs"),
        ("vk-bob", "refactor"),
    }
    refactor = next(s for s in items if s["virtual_key_id"] == "vk-alice" and s["session_id"] == "refactor")
    assert refactor["requests"] == 3 and refactor["errors"] == 0 and refactor["developer"] == "u-alice"
    assert (refactor["repo"], refactor["branch"], refactor["cwd"]) == ("acme/api", "refactor-auth", "/home/alice/api")
    assert (refactor["client"], refactor["client_version"]) == ("my-agent", "1.2.3")
    assert refactor["tokens"]["input"] > 0 and [m["name"] for m in refactor["models"]] == ["echo"]
    assert refactor["duration_s"] >= 0

    only = await c.get("/api/sessions", query={"repo": "acme/api", "branch": "refactor-auth"})
    assert [s["id"] for s in only.json()["items"]] == [refactor["id"]]
    assert [s["session_id"] for s in (await c.get("/api/sessions", query={"user": "u-bob"})).json()["items"]] == [
        "refactor"
    ]
    assert (await c.get("/api/sessions", query={"client": "other"})).json()["items"] == []
    page = (await c.get("/api/sessions", query={"limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2

    detail = await c.get(f"/api/sessions/{refactor['id']}")
    assert detail.status == 200, detail.body
    assert len(detail.json()["request_log"]) == 3
    assert {r["virtual_key_id"] for r in detail.json()["request_log"]} == {"vk-alice"}
    assert (await c.get("/api/sessions/" + "0" * 32)).status == 404

    records = [rec async for rec in services.store.audit_records()]
    assert {"sessions_query", "session_read"} <= {
        rec.data.get("action") for rec in records if rec.kind == "data_access"
    }


async def test_sessions_csv_quotes_what_a_spreadsheet_would_run(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    r = await c.get("/api/sessions", query={"format": "csv"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    assert len(rows) == 3
    assert {row["repo"] for row in rows} == {"acme/api", "acme/web", '\'=HYPERLINK("http://evil")'}
    assert all(row["cost_usd"] for row in rows)


async def test_spend_by_repository_and_branch(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    r = await c.get("/api/sessions/spend", query={"group_by": "repo,branch"})
    assert r.status == 200, r.body
    rows = {(row["repo"], row["branch"]): (row["requests"], row["sessions"]) for row in r.json()["rows"]}
    assert rows[("acme/api", "refactor-auth")] == (3, 1) and rows[("acme/web", "main")] == (1, 1)
    by_repo = await c.get("/api/sessions/spend", query={"group_by": "repo", "team": "team-a", "format": "csv"})
    table = list(csv.reader(io.StringIO(by_repo.body.decode())))
    assert table[0] == ["repo", "cost_usd", "tokens", "requests", "sessions"]
    assert sorted(row[0] for row in table[1:]) == ["acme/api", "acme/web"]
    assert (await c.get("/api/sessions/spend", query={"group_by": "repo,nope"})).status == 422


async def test_a_team_lead_sees_their_team_and_a_developer_their_own(admin: tuple[Services, Client]) -> None:
    services, c = admin
    await seed(services, c)
    lead = await c.get("/api/sessions", token=as_role("team-lead", "team-b"))
    assert [s["virtual_key_id"] for s in lead.json()["items"]] == ["vk-bob"]
    assert (await c.get("/api/sessions", query={"team": "team-a"}, token=as_role("team-lead", "team-b"))).status == 403
    mine = await c.get("/api/sessions", token=as_role("developer", "", "u-alice"))
    assert {s["virtual_key_id"] for s in mine.json()["items"]} == {"vk-alice"}
    bobs = (await c.get("/api/sessions", query={"user": "u-bob"})).json()["items"][0]["id"]
    assert (await c.get(f"/api/sessions/{bobs}", token=as_role("developer", "", "u-alice"))).status == 403
    assert (await c.get(f"/api/sessions/{bobs}", token=as_role("team-lead", "team-b"))).status == 200
    spend = await c.get("/api/sessions/spend", query={"group_by": "key"}, token=as_role("team-lead", "team-a"))
    assert [row["key"] for row in spend.json()["rows"]] == ["vk-alice"]
    assert (await c.get("/api/sessions", token=as_role("viewer"))).status == 403
