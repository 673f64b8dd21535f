"""The Sessions page: agent sessions from the session ledger (sluice.sessions.ledger), the most
recently active first, with who, which client, where (repository, branch), span, requests, errors,
cost, models and the MCP tools each called. One indexed read of the ledger and one of the page's
items: its cost does not grow with the request log. A session's requests are the log filtered by
its key and session id.

`requests.read` (admin, security auditor), like the request log; reading it is recorded in the
audit log as the API records its reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from sluice.http.console.web import ConsoleError, Page
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
    flt = LogFilter(key_ids=(key,) if key else None, team_ids=(team,) if team else None)
    found = await page.console.queries.sessions(flt, datetime.now(UTC) - SPANS[span], PAGE_SIZE)
    shown = {k: v for k, v in (("since", span), ("key", key), ("team", team)) if v}
    await page.services.admin.data_read(
        page.principal.actor,
        "sessions_query",
        {"filters": {"sessions": span, **shown}, "records": len(found), "via": "console"},
    )
    return page.render("sessions.html", sessions=found, span=span, spans=list(SPANS), filters=shown)
