"""Teams and customers: their caps as bars and their members' (keys') use this month.

Listing teams and customers needs `config.read`, like GET /api/teams; the caps' spend and the
members' use need `spend.read` on the team (a lead sees their own teams' figures)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from sluice.auth.rbac import Scope
from sluice.http.console import budgets as budget_bars
from sluice.http.console.keys import bar
from sluice.http.console.web import Page
from sluice.storage.backends.console_queries import month_start


async def teams(page: Page) -> Response:
    now = datetime.now(UTC)
    q = page.console.queries
    team_objs = await q.objects("team")
    customers = await q.objects("customer")
    states = await budget_bars.states(page.services, q, await q.caps(), now)
    members = await q.keys_per_team()
    readable = [t.id for t in team_objs if page.allowed("spend.read", Scope(team_id=t.id))]
    await q.freshen(now)
    use = await q.team_key_spend(readable, month_start(now), now)
    rows: list[dict[str, Any]] = []
    for obj in team_objs:
        scope = Scope(team_id=obj.id)
        rows.append(
            {
                "id": obj.id,
                "body": obj.body,
                "caps": [s for s in states if s.scope == "team" and s.scope_id == obj.id],
                "members": members.get(obj.id, 0),
                "use": use.get(obj.id, []),
                "spend_visible": page.allowed("spend.read", scope),
                "may_cap": page.allowed("caps.write", scope),
            }
        )
    customer_rows = [
        {
            "id": c.id,
            "body": c.body,
            "caps": [s for s in states if s.scope == "customer" and s.scope_id == c.id],
            "teams": [t.id for t in team_objs if t.body.get("customer_id") == c.id],
        }
        for c in customers
    ]
    return page.render(
        "teams.html",
        teams=rows,
        customers=customer_rows,
        bar=bar,
        spend_all=page.allowed("spend.read"),
    )
