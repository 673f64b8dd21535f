"""POST /api/policy/simulate: who may run it, what it answers, and a proposal that does not
validate answered as a config that does not validate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sluice.app import Services
from sluice.storage.records import RequestLogEntry
from tests.admin.conftest import Client, as_role


def entry(n: int, at: datetime) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"r-{n}",
        ts=at + timedelta(seconds=n),
        path="/v1/chat/completions",
        surface="openai_chat",
        status=200,
        decision="allow",
        virtual_key_id="vk-api",
        team_id="team-api",
        provider="fake",
        requested_model="echo",
        model="echo",
        input_tokens=100_000,
        output_tokens=100_000,
        cost_pico=600_000_000_000,  # $0.60 at the test price of echo ($1 in, $5 out per million)
    )


PROPOSAL = {
    "providers": {"fake": {}},
    "pricing": {"overrides": {"echo": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 5}}},
    "teams": [{"id": "team-api"}],
    "virtual_keys": [{"id": "vk-api", "team_id": "team-api", "provider_configs": [{"provider": "fake"}]}],
    "budgets": [{"id": "team-cap", "team_id": "team-api", "max_limit": 1, "reset_duration": "1d"}],
}


async def test_an_admin_simulates_and_others_may_not(admin: tuple[Services, Client]) -> None:
    services, c = admin
    at = datetime.now(UTC) - timedelta(hours=1)
    await services.store.insert_requests([entry(n, at) for n in range(3)])
    body = {"config": PROPOSAL, "since": (at - timedelta(minutes=1)).isoformat()}
    reply = await c.post("/api/policy/simulate", json=body)
    assert reply.status == 200, reply.body
    out = reply.json()
    assert out["total"]["requests"] == 3
    assert out["total"]["refused_by"] == {"team-cap": 2}  # $1 a day holds one request of $0.60
    assert out["teams"][0]["id"] == "team-api" and out["teams"][0]["refused"] == 2
    assert out["examples"]["refused"] == ["r-1", "r-2"]
    assert out["total"]["cost_change_usd"] == "-1.2000"
    for role in ("developer", "team-lead", "viewer"):
        denied = await c.post("/api/policy/simulate", json=body, token=as_role(role, "team-api", "u"))
        assert denied.status == 403, (role, denied.body)
    audited = [r async for r in services.store.audit_records() if r.kind == "data_access"]
    assert any(r.data.get("action") == "policy_simulation" for r in audited)


async def test_a_proposal_that_does_not_validate_is_a_422_with_the_reason(admin: tuple[Services, Client]) -> None:
    _, c = admin
    bad = {**PROPOSAL, "budgets": [{"id": "b", "team_id": "team-api", "max_limit": -5, "reset_duration": "1d"}]}
    reply = await c.post("/api/policy/simulate", json={"config": bad})
    assert reply.status == 422
    assert "budgets.0.max_limit" in reply.json()["error"]["message"]
    reply = await c.post("/api/policy/simulate", json={"config": {**PROPOSAL, "store": {"uri": "x"}}})
    assert reply.status == 422 and "store.uri: unknown key" in reply.json()["error"]["message"]
