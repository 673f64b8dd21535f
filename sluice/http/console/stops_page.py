"""The Stops page (the kill switch, sluice.sessions.stops): the stops in force and the recent
history, with who threw or lifted each, why and when, and the Stop and Resume forms. The Sessions
page and a session's page carry the same forms for one session.

Every list and change runs the admin API's own handlers (GET /api/stops, POST /api/stops and
/api/stops/resume), so RBAC is theirs: `stops.read` to look (a team lead sees their teams' stops
and the organisation's), `stops.write` to act (a team lead on their teams' keys and those keys'
sessions only; the organisation, or a session named without its key, is an admin's)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sluice.http.console.web import PREFIX, ConsoleError, Page
from sluice.sessions.ids import session_key

HISTORY = 100
SCOPES = ("session", "key", "team", "org")


async def stops(page: Page) -> Response:
    found = await page.admin("GET", "/api/stops", {}, query={"all": True})
    items = list(found.items)
    active = [s for s in items if s.lifted_at is None]
    lifted = sorted((s for s in items if s.lifted_at is not None), key=lambda s: s.lifted_at, reverse=True)
    return page.render(
        "stops.html",
        active=active,
        history=lifted[:HISTORY],
        scopes=SCOPES,
        can_write=page.grant("stops.write") != "none",
        done=page.request.query_params.get("done", "")[:20],
    )


def _body(page: Page) -> dict[str, Any]:
    form = page.form
    scope = form.get("scope", "").strip()
    if scope not in SCOPES:
        raise ConsoleError(422, f"scope: one of {', '.join(SCOPES)}")
    key_id = form.get("key_id", "").strip()
    return {
        "scope": scope,
        "target": form.get("target", "").strip(),
        "key_id": key_id or None,
        "reason": form.get("reason", "").strip(),
    }


def _back(page: Page, done: str) -> Response:
    """Back to the page the form was on (a console path only, never another site)."""
    nxt = page.form.get("next", "")
    if not (nxt.startswith(PREFIX + "/") and not nxt.startswith("//") and "\\" not in nxt and "?" not in nxt):
        nxt = f"{PREFIX}/stops"
    return page.redirect(f"{nxt}?done={done}")


async def throw(page: Page) -> Response:
    body = _body(page)
    if not body["reason"]:
        raise ConsoleError(422, "reason: say why (it is recorded and shown to the callers refused)")
    await page.admin("POST", "/api/stops", {}, body)
    return _back(page, "stopped")


async def resume(page: Page) -> Response:
    body = _body(page)
    if not body["reason"]:
        raise ConsoleError(422, "reason: say why (it is recorded in the audit log)")
    lifted = await page.admin("POST", "/api/stops/resume", {}, body)
    if not lifted.items:
        raise ConsoleError(404, "Nothing is stopped there.")
    return _back(page, "resumed")


async def session_stops(page: Page) -> dict[tuple[str, str | None], Any]:
    """The session stops in force the caller may see, by (canonical session id, key or None)."""
    if page.grant("stops.read") == "none":
        return {}
    found = await page.admin("GET", "/api/stops", {}, query={})
    return {(s.target, s.key_id): s for s in found.items if s.scope == "session"}


def stop_of(index: dict[tuple[str, str | None], Any], session_id: str | None, key_id: str) -> Any:
    canonical = session_key(session_id)
    if canonical is None:
        return None
    return index.get((canonical, key_id)) or index.get((canonical, None))
