"""POST /api/policy/simulate: the admin API's `sluice policy simulate`.

The proposal is a config document in the body, validated exactly as a config file is (422 with
the same message on failure). The replay reads the whole request log, so it needs what reading
the log needs (`requests.read`) and reading the configuration (`config.read`); the read is
recorded in the audit log like every other read of the log. One simulation runs at a time per
gateway (409 otherwise), in small batches so the gateway's own requests keep flowing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from sluice.admin.service import Conflict
from sluice.auth.rbac import Scope
from sluice.http.admin.framework import ApiError, Call, Endpoint
from sluice.http.admin.schemas import Time, _In
from sluice.settings import ConfigError
from sluice.simulation import parse_proposal, simulate

_RUNNING = asyncio.Lock()
_BATCH = 1_000  # rows replayed between two turns of the event loop


class SimulationIn(_In):
    config: dict[str, Any] = Field(
        default_factory=dict, description="the proposed configuration, as a config file's document"
    )
    since: Time | None = Field(default=None, description="default: seven days ago")
    until: Time | None = None
    examples: int = Field(default=20, ge=0, le=10_000, description="request ids kept per outcome")


class TallyOut(BaseModel):
    id: str | None = None
    requests: int
    unchanged: int
    rerouted: int
    degraded: int
    refused: int
    allowed: int = Field(description="refused by the live gateway, not by the proposal")
    refused_by: dict[str, int]
    cost_before_usd: str
    cost_after_usd: str
    cost_change_usd: str


class SimulationOut(BaseModel):
    since: str
    until: str | None
    seconds: float
    total: TallyOut
    developers: list[TallyOut]
    teams: list[TallyOut]
    reroutes: dict[str, int]
    skipped: dict[str, int]
    unpriced: dict[str, int]
    warnings: list[str]
    examples: dict[str, list[str]]


async def simulate_policy(call: Call) -> SimulationOut:
    body: SimulationIn = call.body
    call.authorize(Scope())
    call.authorize(Scope(), "config.read")
    try:
        proposal = parse_proposal(body.config, source="config")
    except ConfigError as exc:
        raise ApiError(
            422, "validation_error", str(exc), [{"loc": ["body", "config"], "msg": str(exc), "type": "value_error"}]
        ) from None
    since = body.since or datetime.now(UTC) - timedelta(days=7)
    if _RUNNING.locked():
        raise Conflict("A policy simulation is running already; try again when it ends.")
    async with _RUNNING:
        report = await simulate(proposal, call.services.store, since, body.until, sample=body.examples, batch=_BATCH)
    details = {"since": since.isoformat(), "records": report.total.requests}
    await call.services.admin.data_read(call.principal.actor, "policy_simulation", details)
    return SimulationOut.model_validate(report.as_dict())


def policy_endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "POST",
            "/api/policy/simulate",
            "requests.read",
            simulate_policy,
            "Simulate a proposed configuration on the recorded traffic",
            "policy",
            SimulationOut,
            body=SimulationIn,
            errors=(409,),
            description="Replays the request log from `since` against the proposed configuration and reports, "
            "per developer and team, what would have been refused (by which rule), rerouted or degraded, and the "
            "cost difference. Read-only. See docs/policy-simulation.md.",
        )
    ]
