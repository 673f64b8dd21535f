"""The Sessions page: agent sessions from the session ledger (sluice.sessions.ledger), the most
recently active first, with who, which client, where (repository, branch), span, requests, errors,
cost, models and the MCP tools each called, and a Stop or Resume form for each (the kill switch,
through the admin API's /api/stops). One indexed read of the ledger and one of the page's items:
its cost does not grow with the request log. A session's page shows it with its requests, through
GET /api/sessions/{id}.

`spend.read`, scoped as /api/sessions is: an admin or a security auditor sees every session, a
team lead their teams' sessions, a developer the sessions of their own keys. Reading it is
recorded in the audit log as the API records its reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from sluice.auth.rbac import Scope
from sluice.http.admin.data import _restricted
from sluice.http.admin.framework import ApiError, Call
from sluice.http.console.stops_page import session_stops, stop_of
from sluice.http.console.web import PREFIX, ConsoleError, Page
from sluice.storage.backends.console_queries import LogFilter

SPANS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE_SIZE = 100


async def sessions(page: Page) -> Response:
    params = page.request.query_params
    span = params.get("since") or "24h"
    if span not in SPANS:
        raise ConsoleError(422, f"since: one of {', '.join(SPANS)}")
    key = (params.get("key") or "").strip()[:200]
    team = (params.get("team") or "").strip()[:200]
    call = Call(page.principal, "spend.read", {}, None, None, page.services)
    try:
        teams, owner = _restricted(call, team or None, None)
    except ApiError as err:
        raise ConsoleError(err.status, err.message) from None
    flt = LogFilter(key_ids=(key,) if key else None, team_ids=teams)
    found = await page.console.queries.sessions(flt, datetime.now(UTC) - SPANS[span], PAGE_SIZE, owner)
    shown = {k: v for k, v in (("since", span), ("key", key), ("team", team)) if v}
    await page.services.admin.data_read(
        page.principal.actor,
        "sessions_query",
        {"filters": {"sessions": span, **shown}, "records": len(found), "via": "console"},
    )
    stopped = await session_stops(page)
    for s in found:
        s["stop"] = stop_of(stopped, s["session_id"], s["virtual_key_id"])
        s["can_stop"] = page.allowed("stops.write", Scope(team_id=s.get("team_id"), user_id=s.get("owner_user_id")))
    return page.render(
        "sessions.html",
        sessions=found,
        span=span,
        spans=list(SPANS),
        filters=shown,
        back=f"{PREFIX}/sessions",
        done=params.get("done", "")[:20],
    )


async def session_detail(page: Page) -> Response:
    ledger_id = page.request.path_params["session_id"][:64]
    s = await page.admin("GET", "/api/sessions/{session_id}", {"session_id": ledger_id}, query={})
    stop = stop_of(await session_stops(page), s.session_id, s.virtual_key_id)
    can_stop = page.allowed("stops.write", Scope(team_id=s.team_id, user_id=s.developer))
    return page.render(
        "session.html",
        s=s,
        stop=stop,
        can_stop=can_stop,
        back=f"{PREFIX}/sessions/{s.id}",
        done=page.request.query_params.get("done", "")[:20],
        requests_visible=page.allowed("requests.read"),
    )
