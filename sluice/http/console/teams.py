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
from sluice.storage.backends.console_queries import LogFilter, month_start


async def teams(page: Page) -> Response:
    now = datetime.now(UTC)
    objects = await page.services.store.list_objects()
    team_objs = [o for o in objects if o.kind == "team"]
    customers = [o for o in objects if o.kind == "customer"]
    caps = [o for o in objects if o.kind == "budget" and o.body.get("virtual_key_id") is None]
    states = await budget_bars.states(page.services, page.console.queries, caps, now)
    keys = await page.services.store.list_keys()
    rows: list[dict[str, Any]] = []
    for obj in team_objs:
        scope = Scope(team_id=obj.id)
        members = [k for k in keys if k.team_id == obj.id]
        use = []
        if page.allowed("spend.read", scope):
            use = await page.console.queries.spend_of("key", month_start(now), LogFilter(team_ids=(obj.id,)), 20)
        rows.append(
            {
                "id": obj.id,
                "body": obj.body,
                "caps": [s for s in states if s.scope == "team" and s.scope_id == obj.id],
                "members": len(members),
                "use": use,
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
