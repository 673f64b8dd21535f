"""Developers and keys: every key the caller may read with its owner, team, profile, allowed
models, MCP grants and budget bars; issue (the secret shown once), rotate, revoke, change a budget.

Every change runs the admin API's own handler (`Page.admin`), so the rules are the API's: RBAC on
the key's team and owner, a team lead kept inside their team (sluice/admin/team_scope.py) and under
the team's cap, and the configuration event and audit record the use case writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from sluice.admin.keys import public_view
from sluice.auth.rbac import Scope
from sluice.http.console import budgets as budget_bars
from sluice.http.console.rate_limits import RateUse, rate_use
from sluice.http.console.svg import budget_bar
from sluice.http.console.web import ConsoleError, Page
from sluice.storage.backends.console_queries import LogFilter
from sluice.storage.records import VirtualKey

PAGE_SIZE = 50
_LIST = re.compile(r"[\s,]+")


def scope_of(key: VirtualKey) -> Scope:
    return Scope(team_id=key.team_id, user_id=key.user_id)


def bar(state: budget_bars.BudgetState | RateUse) -> Any:
    if isinstance(state, RateUse):
        return budget_bar(state.used, state.held, state.limit, label=state.id, unit=state.unit)
    return budget_bar(float(state.spent), float(state.held), float(state.limit), label=state.id)


async def _key_budgets(page: Page, keys: list[VirtualKey]) -> dict[str, list[budget_bars.BudgetState]]:
    objects = await page.console.queries.key_budgets([k.id for k in keys])
    objects += budget_bars.derived(page.services.profiles.profiles, keys)
    found: dict[str, list[budget_bars.BudgetState]] = {}
    for state in await budget_bars.states(page.services, page.console.queries, objects):
        found.setdefault(state.scope_id, []).append(state)
    return found


async def list_keys(page: Page) -> Response:
    params = page.request.query_params
    search = (params.get("q") or "").strip().lower()[:200]
    try:
        number = max(1, min(int(params.get("page") or 1), 10_000))
    except ValueError:
        number = 1
    found, total = await page.console.queries.keys(
        page.key_visibility("keys.read"), search, PAGE_SIZE, (number - 1) * PAGE_SIZE
    )
    shown = [k for k in found if page.allowed("keys.read", scope_of(k))]  # the store's filter, checked again
    limited = [k for k in shown if page.allowed("budgets.read", scope_of(k))]
    budgets = await _key_budgets(page, limited)
    rates = await rate_use(getattr(page.services, "limits", None), limited)
    now = datetime.now(UTC)
    return page.render(
        "keys.html",
        keys=[(public_view(k, now), k) for k in shown],
        budgets=budgets,
        rates=rates,
        spend_visible={k.id: page.allowed("spend.read", scope_of(k)) for k in shown},
        bar=bar,
        search=search,
        number=number,
        pages=max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE),
        total=total,
        may_issue=page.grant("keys.create") != "none",
        teams=sorted(page.principal.teams) if page.grant("keys.create") == "team" else [],
    )


async def key_detail(page: Page) -> Response:
    key = await page.services.store.key_by_id(page.request.path_params["key_id"])
    if key is None:
        raise ConsoleError(404, "No such virtual key.")
    page.authorize("keys.read", scope_of(key))  # as GET /api/keys/{key_id} answers
    limited = [key] if page.allowed("budgets.read", scope_of(key)) else []
    budgets = (await _key_budgets(page, limited)).get(key.id, [])
    rates = (await rate_use(getattr(page.services, "limits", None), limited)).get(key.id, [])
    recent: list[dict[str, Any]] = []
    if page.allowed("requests.read"):
        recent = await page.console.queries.requests(LogFilter(key_ids=(key.id,)), limit=20)
    key_stop = None
    if page.grant("stops.read") != "none":
        found = await page.admin("GET", "/api/stops", {}, query={})
        key_stop = next((s for s in found.items if s.scope == "key" and s.target == key.id), None)
    return page.render(
        "key.html",
        key=public_view(key),
        key_stop=key_stop,
        may_stop=page.allowed("stops.write", scope_of(key)),
        budgets=budgets,
        rates=rates,
        bar=bar,
        recent=recent,
        spend_visible=page.allowed("spend.read", scope_of(key)),
        may_rotate=page.allowed("keys.rotate", scope_of(key)) and key.revoked_at is None,
        may_revoke=page.allowed("keys.revoke", scope_of(key)) and key.revoked_at is None,
        may_budget=page.allowed("budgets.write", scope_of(key)),
        done=page.request.query_params.get("done", "")[:40],
    )


def _words(text: str) -> list[str]:
    return [w for w in _LIST.split(text.strip()) if w]


async def issue_key(page: Page) -> Response:
    f = page.form
    body: dict[str, Any] = {"id": f.get("id", "").strip()}
    for name in ("name", "team_id", "user_id", "description", "profile_id"):
        if f.get(name, "").strip():
            body[name] = f[name].strip()
    if f.get("provider", "").strip():
        body["grants"] = [{"provider": f["provider"].strip(), "allowed_models": _words(f.get("models", ""))}]
    result = await page.admin("POST", "/api/keys", {}, body)
    return page.render("secret.html", key=result.key, secret=result.secret, action="issued")


async def rotate_key(page: Page) -> Response:
    key_id = page.request.path_params["key_id"]
    try:
        overlap = max(0, min(int(page.form.get("overlap_seconds") or 0), 30 * 86400))
    except ValueError:
        raise ConsoleError(422, "overlap_seconds: a whole number of seconds") from None
    result = await page.admin("POST", "/api/keys/{key_id}/rotate", {"key_id": key_id}, {"overlap_seconds": overlap})
    return page.render("secret.html", key=result.key, secret=result.secret, action="rotated")


async def revoke_key(page: Page) -> Response:
    key_id = page.request.path_params["key_id"]
    await page.admin("POST", "/api/keys/{key_id}/revoke", {"key_id": key_id})
    return page.redirect(f"/console/keys/{key_id}?done=revoked")


async def change_budget(page: Page) -> Response:
    """Replaces a budget's limit and reset period through PUT /api/budgets/{id} (which checks the
    team's cap for a lead), then shows the configuration event that change wrote."""
    budget_id = page.request.path_params["budget_id"]
    current = await page.admin("GET", "/api/budgets/{object_id}", {"object_id": budget_id})
    body = dict(current.body)
    body["max_limit"] = page.form.get("max_limit", "").strip()
    if page.form.get("reset_duration", "").strip():
        body["reset_duration"] = page.form["reset_duration"].strip()
    after = await page.admin("PUT", "/api/budgets/{object_id}", {"object_id": budget_id}, body)
    return page.render(
        "changed.html",
        kind="budget",
        object_id=budget_id,
        before=current.body,
        after=after.body,
        actor=page.principal.actor,
        back=f"/console/keys/{body['virtual_key_id']}" if body.get("virtual_key_id") else "/console/teams",
    )


async def add_budget(page: Page) -> Response:
    key_id = page.request.path_params["key_id"]
    f = page.form
    body = {
        "id": f.get("id", "").strip() or f"{key_id}-budget",
        "virtual_key_id": key_id,
        "max_limit": f.get("max_limit", "").strip(),
        "reset_duration": f.get("reset_duration", "").strip() or "1M",
    }
    after = await page.admin("POST", "/api/budgets", {}, body)
    return page.render(
        "changed.html",
        kind="budget",
        object_id=after.id,
        before=None,
        after=after.body,
        actor=page.principal.actor,
        back=f"/console/keys/{key_id}",
    )
