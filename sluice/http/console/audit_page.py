"""Audit: the tamper-evident log's records, newest first with filters, and "verify now", which
walks the whole chain from the retention anchor and checks the signed checkpoints, as
`sluice audit verify` does. `audit.read` (admin, security auditor), like GET /api/audit; both the
query and the verification are themselves recorded in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response, StreamingResponse

from sluice.audit import checkpoints
from sluice.audit.verification import verify_with_checkpoints
from sluice.http.console.web import SECURITY_HEADERS, ConsoleError, Page

PAGE_SIZE = 100


async def audit(page: Page) -> Response:
    params = page.request.query_params
    kind = (params.get("kind") or "").strip()[:40] or None
    actor = (params.get("actor") or "").strip()[:300] or None
    before = params.get("before") or ""
    if before and not before.isdigit():
        raise ConsoleError(422, "before: a record number")
    records = await page.console.queries.audit_records(kind, actor, int(before) if before else None, PAGE_SIZE)
    await page.services.admin.data_read(
        page.principal.actor,
        "audit_query",
        {"filters": {"kind": kind, "actor": actor}, "records": len(records), "via": "console"},
    )
    return page.render(
        "audit.html",
        records=records,
        kind=kind or "",
        actor=actor or "",
        next_before=records[-1]["seq"] if len(records) == PAGE_SIZE else None,
        verdict=None,
    )


async def verify_now(page: Page) -> Response:
    store = page.services.store
    config = checkpoints.with_defaults(page.services.config.audit, page.services.config.store.url)
    records = [r async for r in store.audit_records()]
    verdict = verify_with_checkpoints(records, config.keys(), config, await store.audit_anchor())
    await page.services.admin.data_read(
        page.principal.actor,
        "audit_verify",
        {"ok": verdict.ok, "checked": verdict.checked, "problem": verdict.problem, "via": "console"},
    )
    latest = await page.console.queries.audit_records(None, None, None, 20)
    return page.render("audit.html", records=latest, kind="", actor="", next_before=None, verdict=verdict)


async def export(page: Page) -> Response:
    """Every record as JSON lines (what the MAC covers, plus the MAC), as `sluice audit export`
    writes them: the file verifies with `sluice audit verify --file`. Recorded as a data read."""
    store = page.services.store
    await page.services.admin.data_read(page.principal.actor, "audit_export", {"via": "console"})

    async def lines() -> AsyncIterator[bytes]:
        async for record in store.audit_records():
            yield orjson.dumps({**record.body(), "mac": record.mac}) + b"\n"

    headers = {**SECURITY_HEADERS, "content-disposition": "attachment; filename=sluice-audit.jsonl"}
    return StreamingResponse(lines(), headers=headers, media_type="application/x-ndjson")
