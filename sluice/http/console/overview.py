"""The overview: spend today and this month against budgets, by team, developer, model and
provider; the trend per day and per hour; top spenders and their agents; denials, rate-limit hits,
provider errors and circuit breakers.

Each section needs the admin API's read action for what it shows: spend figures `spend.read`
(restricted to the teams a lead leads, or a developer's own keys), budgets `budgets.read`. A role
that may read neither sees neither (a viewer sees the budgets' limits, not spend)."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from sluice.auth.rbac import Scope
from sluice.http.console import budgets as budget_bars
from sluice.http.console.svg import bars, budget_bar
from sluice.http.console.web import Page
from sluice.storage.backends.console_queries import (
    SCOPED_DIMS,
    Totals,
    Within,
    day_start,
    hours_ago,
    month_start,
)

PICO = Decimal(10**12)


def _dollars(pico: int) -> float:
    return float(Decimal(pico) / PICO)


async def restriction(page: Page, action: str) -> Within | None:
    """None: the whole gateway; else the share the caller may see (the teams they lead, or their
    own keys)."""
    grant = page.grant(action)
    if grant == "all":
        return None
    if grant == "team":
        return Within("team", tuple(sorted(page.principal.teams)))
    uid = page.principal.user_id
    own = await page.console.queries.key_ids_of_user(uid) if uid else []
    return Within("key", tuple(own))


async def overview(page: Page) -> Response:
    started = time.perf_counter()
    q = page.console.queries
    now = datetime.now(UTC)
    sections: dict[str, Any] = {}
    ready = True
    if page.grant("spend.read") != "none":
        within = await restriction(page, "spend.read")
        ready = await q.freshen(now)

        async def by(dim: str, since: datetime, limit: int = 10) -> list[Totals]:
            if within is not None and dim not in SCOPED_DIMS[within.kind]:
                return []  # e.g. "by team" of a developer's own keys
            return list(await q.spend_by(dim, since, now, limit, within))

        today, month = day_start(now), month_start(now)
        totals = {"today": await by("total", today), "month": await by("total", month)}
        sections["totals"] = {k: (v[0] if v else Totals(None)) for k, v in totals.items()}
        for dim in ("team", "model", "provider"):
            sections[dim] = {"today": await by(dim, today), "month": await by(dim, month)}
        month_keys = await by("key", month, 100_000)
        owners = await q.key_owners([t.value for t in month_keys if t.value])
        sections["developer"] = _by_owner(month_keys, owners)
        sections["top"] = [(t, owners.get(t.value or "", (None, None))) for t in month_keys[:10]]
        # The agents of the top spenders over the last day: the log through its (key, ts) index.
        sections["agents"] = await q.agents_of([t.value for t in month_keys[:10] if t.value], now - timedelta(days=1))
        daily = await q.trend("d", today - timedelta(days=29), within)
        hourly = await q.trend("h", hours_ago(now, 47), within)
        sections["daily"] = daily
        sections["daily_svg"] = bars(
            [(d.strftime("%m-%d"), _dollars(t.cost_pico)) for d, t in daily], title="Spend per day, last 30 days"
        )
        sections["hourly_svg"] = bars(
            [(d.strftime("%H:00"), _dollars(t.cost_pico)) for d, t in hourly], title="Spend per hour, last 48 hours"
        )
        sections["breakers"] = breakers(page.services)
    if page.grant("budgets.read") != "none":
        caps = [o for o in await q.caps() if page.allowed("budgets.read", Scope(team_id=o.body.get("team_id")))]
        states = await budget_bars.states(page.services, q, caps, now)
        sections["caps"] = states
        sections["show_spent"] = page.grant("spend.read") == "all" or page.grant("spend.read") == "team"
    return page.render(
        "overview.html",
        s=sections,
        now=now,
        restricted=page.grant("spend.read") not in ("all", "none"),
        ready=ready,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        budget_bar=budget_bars_svg,
    )


def budget_bars_svg(state: budget_bars.BudgetState) -> Any:
    return budget_bar(float(state.spent), float(state.held), float(state.limit), label=state.id)


def _by_owner(rows: list[Totals], owners: dict[str, tuple[str | None, str | None]]) -> list[tuple[str, int, int]]:
    """(developer, cost, requests) from per-key figures: a key's developer is the person it is
    attached to, else the key itself."""
    people: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in rows:
        person = owners.get(t.value or "", (None, None))[0] or f"key {t.value or '(none)'}"
        people[person][0] += t.cost_pico
        people[person][1] += t.requests
    return sorted(((p, c, r) for p, (c, r) in people.items()), key=lambda x: -x[1])[:10]


def breakers(services: Any) -> list[tuple[str, int, str]]:
    """(provider key, failures in a row, state) of the breakers this process holds."""
    return [
        (name, failures, label.replace("_", "-"))
        for name, failures, label in services.engine.breakers.table(time.monotonic())
    ]
