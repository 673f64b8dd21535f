"""The request log: filters (key, team, model, status, decision, time, agent session), keyset
paging, a request's detail page (attempts, route, decision and reason, tokens, cost, latency, TTFB,
MCP tools, the audit record's seal) and a live tail over Server-Sent Events.

`requests.read` (admin, security auditor), like GET /api/requests; reading the log is recorded in
the audit log as the API records it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from sluice.http.console.web import SECURITY_HEADERS, ConsoleError, Page
from sluice.storage.backends.console_queries import LogFilter

PAGE_SIZE = 50
TAIL_POLL_S = 1.0
KEEP_ALIVE_POLLS = 15
TAIL_BATCH = 100  # rows per poll at most
TAIL_MAX_S = 600.0  # a tail reconnects (EventSource does so itself) rather than live for ever
_FIELDS = ("key", "team", "model", "status", "decision", "session", "since", "until")


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConsoleError(422, f"not a time: {text[:40]!r} (use e.g. 2026-12-01T09:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def log_filter(params: Any) -> tuple[LogFilter, dict[str, str]]:
    values = {name: (params.get(name) or "").strip()[:300] for name in _FIELDS}
    status = values["status"]
    if status and not status.isdigit():
        raise ConsoleError(422, "status: a number such as 200 or 429")
    flt = LogFilter(
        key_ids=(values["key"],) if values["key"] else None,
        team_ids=(values["team"],) if values["team"] else None,
        model=values["model"] or None,
        status=int(status) if status else None,
        decision=values["decision"] or None,
        session_id=values["session"] or None,
        since=_time(values["since"]),
        until=_time(values["until"]),
    )
    return flt, {k: v for k, v in values.items() if v}


def _cursor(text: str | None) -> tuple[datetime, str] | None:
    if not text:
        return None
    ts, _, rid = text.partition("~")
    moment = _time(ts)
    return (moment, rid) if moment is not None else None


async def request_log(page: Page) -> Response:
    flt, shown = log_filter(page.request.query_params)
    before = _cursor(page.request.query_params.get("before"))
    rows = await page.console.queries.requests(flt, PAGE_SIZE + 1, before)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    await page.services.admin.data_read(
        page.principal.actor, "request_log_query", {"filters": shown, "records": len(rows), "via": "console"}
    )
    query = "&".join(f"{k}={v}" for k, v in shown.items())
    nxt = f"{rows[-1]['ts'].isoformat()}~{rows[-1]['request_id']}" if more and rows else None
    return page.render("requests.html", rows=rows, filters=shown, next_cursor=nxt, query=query)


async def request_detail(page: Page) -> Response:
    request_id = page.request.path_params["request_id"]
    row = await page.console.queries.request(request_id)
    if row is None:
        raise ConsoleError(404, f"No request {request_id[:64]!r} in the log.")
    seal = await page.console.queries.audit_of_request(request_id, row["ts"], float(row.get("latency_ms") or 0))
    await page.services.admin.data_read(
        page.principal.actor, "request_log_read", {"request_id": request_id, "via": "console"}
    )
    return page.render("request.html", r=row, seal=seal, attempts=row.get("attempts") or [])


def row_event(row: dict[str, Any]) -> bytes:
    doc = {
        "id": row["request_id"],
        "ts": row["ts"].strftime("%Y-%m-%d %H:%M:%S"),
        "key": row.get("virtual_key_id") or "",
        "team": row.get("team_id") or "",
        "model": row.get("model") or row.get("requested_model") or "",
        "status": row.get("status"),
        "decision": row.get("decision"),
        "cost_pico": row.get("cost_pico") or 0,
        "latency_ms": row.get("latency_ms") or 0,
    }
    cursor = f"{row['ts'].isoformat()}~{row['request_id']}"
    return b"id: " + cursor.encode() + b"\nevent: request\ndata: " + orjson.dumps(doc) + b"\n\n"


async def tail(page: Page) -> Response:
    """New log entries as they land, polled from the log's ts index once a second: a read on the
    store, never a hook on the request path. Last-Event-ID resumes after a reconnect."""
    flt, shown = log_filter(page.request.query_params)
    queries = page.console.queries
    start = _cursor(page.request.headers.get("last-event-id")) or (datetime.now(UTC) - timedelta(seconds=2), "")
    await page.services.admin.data_read(page.principal.actor, "request_log_tail", {"filters": shown, "via": "console"})

    async def stream() -> AsyncIterator[bytes]:
        after = start
        yield b": tail of the request log\nretry: 2000\n\n"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAIL_MAX_S
        idle = 0
        while loop.time() < deadline:
            rows = await queries.requests_after(flt, after, TAIL_BATCH)
            if len(rows) == TAIL_BATCH:
                # More than a screen a second: jump to the newest rather than fall ever further
                # behind (the log itself has them all).
                rows = list(reversed(await queries.requests(flt, TAIL_BATCH)))
                yield b"event: skipped\ndata: {}\n\n"
            for row in rows:
                yield row_event(row)
                after = (row["ts"], row["request_id"])
            idle = 0 if rows else idle + 1
            if idle and idle % KEEP_ALIVE_POLLS == 0:
                yield b": keep-alive\n\n"  # proxies close connections that stay silent
            await asyncio.sleep(TAIL_POLL_S)

    headers = {**SECURITY_HEADERS, "x-accel-buffering": "no"}
    return StreamingResponse(stream(), headers=headers, media_type="text/event-stream")
