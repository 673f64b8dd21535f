"""My usage: a developer's own keys, their spend against each budget (what the gateway metered,
and beside it what their signed-in agents reported over OTLP), their agent sessions, how to
connect their agent (`sluice connect` lines to copy) and rotating their own key.

`me.read` (every role) for the page; what it shows of keys and spend is what the API's
`keys.read`/`spend.read` self grants give: the keys attached to the signed-in person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from sluice.admin.keys import public_view
from sluice.http.console import budgets as budget_bars
from sluice.http.console.keys import bar, scope_of
from sluice.http.console.web import Page
from sluice.storage.backends.console_queries import KeyVisibility, LogFilter, month_start
from sluice.storage.backends.console_rollup import Totals
from sluice.storage.records import VirtualKey

AGENTS = ("claude-code", "codex", "gemini-cli", "cursor", "opencode")


@dataclass(frozen=True, slots=True)
class MonthRow:
    """A key's month: what the gateway metered and what its signed-in agents reported (OTLP)."""

    value: str | None
    cost_pico: int
    tokens: int
    requests: int
    agent_cost_pico: int
    agent_tokens: int


def _with_agents(month: list[Totals], agents: dict[str, tuple[int, int]]) -> list[MonthRow]:
    """The metered rows with the agents' reports beside them; a key only its agents reported
    (its use never went through the gateway) is a row of its own."""
    rows = [MonthRow(t.value, t.cost_pico, t.tokens, t.requests, *agents.get(t.value or "", (0, 0))) for t in month]
    seen = {t.value for t in month}
    rows += [MonthRow(k, 0, 0, 0, cost, tokens) for k, (cost, tokens) in sorted(agents.items()) if k not in seen]
    return rows


async def my_usage(page: Page) -> Response:
    uid = page.principal.user_id
    keys: list[VirtualKey] = []
    if uid is not None:
        keys = (await page.console.queries.keys(KeyVisibility(user_id=uid), limit=200))[0]
    keys = [k for k in keys if page.allowed("keys.read", scope_of(k))]
    now = datetime.now(UTC)
    ids = {k.id for k in keys}
    objects = await page.console.queries.key_budgets(sorted(ids))
    objects += budget_bars.derived(page.services.profiles.profiles, keys)
    states = await budget_bars.states(page.services, page.console.queries, objects, now)
    spend_ok = bool(keys) and all(page.allowed("spend.read", scope_of(k)) for k in keys)
    sessions = []
    month = []
    agents: dict[str, tuple[int, int]] = {}
    if spend_ok and ids:
        flt = LogFilter(key_ids=tuple(sorted(ids)))
        sessions = await page.console.queries.sessions(flt, now - timedelta(days=2), 20)
        await page.console.queries.freshen(now)
        month = await page.console.queries.per_scope("key", sorted(ids), month_start(now), now)
        agents = await page.services.store.agent_totals(sorted(ids), month_start(now))
    base = str(page.request.base_url).rstrip("/")
    return page.render(
        "me.html",
        keys=[public_view(k, now) for k in keys],
        budgets=states,
        bar=bar,
        sessions=sessions,
        month=_with_agents(month, agents),
        spend_ok=spend_ok,
        connect=[f"sluice connect {a} --url {base} --key $SLUICE_API_KEY" for a in AGENTS],
        may_rotate={k.id: page.allowed("keys.rotate", scope_of(k)) for k in keys},
    )
