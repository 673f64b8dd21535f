"""Reads of usage and history: spend reports, the request log, the audit log, configuration
events; plus who am I and admin API tokens. Reading logs and exporting data is recorded in the
audit log (who read what), like `sluice audit export` does."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from starlette.responses import Response

from sluice.admin.service import Conflict, NotFound, shown
from sluice.auth.admin_tokens import TOKEN_KIND, AdminToken, create_token, list_tokens
from sluice.auth.rbac import Scope, widest_grant
from sluice.http.admin.framework import Call, Endpoint
from sluice.http.admin.schemas import (
    AuditOut,
    AuditPage,
    AuditQuery,
    EventList,
    EventOut,
    EventQuery,
    Me,
    RequestOut,
    RequestPage,
    RequestQueryIn,
    SpendQuery,
    SpendReport,
    SpendRowOut,
    TokenCreate,
    TokenList,
    TokenOut,
    TokenSecret,
)
from sluice.storage.records import RequestQuery

PICO = Decimal(10**12)


async def me(call: Call) -> Me:
    p = call.principal
    return Me(
        subject=p.subject,
        actor=p.actor,
        via=p.via,
        roles=sorted(p.roles),
        teams=sorted(p.teams),
        user_id=p.user_id,
        email=p.email,
        name=p.name,
    )


def _restricted(call: Call, team: str | None, user: str | None) -> tuple[tuple[str, ...] | None, str | None]:
    """(teams, owner) the caller may see: everything, the teams they lead, or their own keys."""
    if call.allowed(Scope()):
        return ((team,) if team else None), user
    grant = widest_grant(call.principal, call.action)
    if grant == "team":
        if team is not None:
            call.authorize(Scope(team_id=team))
            return (team,), user
        return tuple(sorted(call.principal.teams)), user
    call.authorize(Scope(user_id=call.principal.user_id))  # self, or the refusal
    if user is not None and user != call.principal.user_id:
        call.authorize(Scope(user_id=user))
    return ((team,) if team else None), call.principal.user_id


async def spend(call: Call) -> SpendReport | Response:
    q: SpendQuery = call.query
    teams, owner = _restricted(call, q.team, q.user)
    since = q.since or datetime.now(UTC) - timedelta(days=30)
    query = RequestQuery(
        since=since,
        until=q.until,
        team_ids=teams,
        owner_user_id=owner,
        virtual_key_ids=(q.key,) if q.key else None,
        limit=q.limit,
        offset=q.offset,
    )
    rows = await call.services.store.spend_report(q.group_by, query)
    report = SpendReport(
        group_by=q.group_by,
        since=since,
        until=q.until,
        rows=[
            SpendRowOut(
                cost_usd=str(Decimal(r["cost_pico"]) / PICO),
                agent_cost_usd=str(Decimal(r.get("agent_cost_pico", 0)) / PICO),
                **r,
            )
            for r in rows
        ],
    )
    details = {"group_by": q.group_by, "since": since.isoformat(), "team": q.team, "user": q.user, "rows": len(rows)}
    action = "spend_export" if q.format == "csv" else "spend_report"
    await call.services.admin.data_read(call.principal.actor, action, details)
    if q.format != "csv":
        return report
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            q.group_by,
            "cost_usd",
            "tokens",
            "requests",
            "guardrail_decisions",
            "guarded_requests",
            "guardrail_blocks",
            "agent_cost_usd",
            "agent_tokens",
        ]
    )
    for row in report.rows:
        writer.writerow(
            [
                row.group or "",
                row.cost_usd,
                row.tokens,
                row.requests,
                row.guardrail_decisions,
                row.guarded_requests,
                row.guardrail_blocks,
                row.agent_cost_usd,
                row.agent_tokens,
            ]
        )
    return Response(
        out.getvalue(), media_type="text/csv", headers={"content-disposition": "attachment; filename=spend.csv"}
    )


async def requests(call: Call) -> RequestPage:
    q: RequestQueryIn = call.query
    call.authorize(Scope())
    query = RequestQuery(
        since=q.since,
        until=q.until,
        virtual_key_ids=(q.key,) if q.key else None,
        team_ids=(q.team,) if q.team else None,
        owner_user_id=q.user,
        model=q.model,
        provider=q.provider,
        decision=q.decision,
        status=q.status,
        limit=q.limit,
        offset=q.offset,
    )
    rows = await call.services.store.query_requests(query)
    filters = q.model_dump(mode="json", exclude_defaults=True)
    await call.services.admin.data_read(
        call.principal.actor, "request_log_query", {"filters": filters, "records": len(rows)}
    )
    return RequestPage(
        items=[RequestOut.model_validate(r) for r in rows],
        next_offset=q.offset + len(rows) if len(rows) == q.limit else None,
    )


async def audit(call: Call) -> AuditPage:
    q: AuditQuery = call.query
    call.authorize(Scope())
    found: list[AuditOut] = []
    last_seen = None
    async for record in call.services.store.audit_records(q.since_seq):
        last_seen = record.seq
        if (q.kind and record.kind != q.kind) or (q.actor and record.actor != q.actor):
            continue
        found.append(AuditOut(**record.body(), mac=record.mac))
        if len(found) == q.limit:
            break
    filters = q.model_dump(mode="json", exclude_defaults=True)
    await call.services.admin.data_read(
        call.principal.actor, "audit_query", {"filters": filters, "records": len(found)}
    )
    more = len(found) == q.limit and last_seen is not None
    return AuditPage(items=found, next_since_seq=last_seen + 1 if more and last_seen is not None else None)


async def events(call: Call) -> EventList:
    q: EventQuery = call.query
    call.authorize(Scope())
    found = await call.services.store.config_events(10_000 if (q.kind or q.object_id) else q.limit)
    items = [
        EventOut(
            ts=e.ts,
            actor=e.actor,
            kind=e.kind,
            object_id=e.object_id,
            action=e.action,
            before=shown(e.kind, e.before),
            after=shown(e.kind, e.after),
        )
        for e in found
        if (q.kind is None or e.kind == q.kind) and (q.object_id is None or e.object_id == q.object_id)
    ][: q.limit]
    await call.services.admin.data_read(call.principal.actor, "config_events_query", {"records": len(items)})
    return EventList(items=items)


def _token_out(token: AdminToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        roles=list(token.roles),
        teams=list(token.teams),
        user_id=token.user_id,
        hint=token.hint,
        created_by=token.created_by,
        expires_at=token.expires_at,
    )


async def tokens_list(call: Call) -> TokenList:
    call.authorize(Scope())
    return TokenList(items=[_token_out(t) for t in await list_tokens(call.services.store)])


async def tokens_create(call: Call) -> TokenSecret:
    call.authorize(Scope())
    body: TokenCreate = call.body
    actor = call.principal.actor
    try:
        token, secret, event = await create_token(
            call.services.store, body.id, body.name, body.roles, body.teams, body.user_id, actor, body.expires_at
        )
    except KeyError:
        raise Conflict(f"admin token {body.id!r} exists already") from None
    await call.services.admin.recorded([event] if event else [])
    return TokenSecret(token=_token_out(token), secret=secret)


async def tokens_delete(call: Call) -> None:
    call.authorize(Scope())
    if not any(t.id == call.path["token_id"] for t in await list_tokens(call.services.store)):
        raise NotFound(f"no admin token {call.path['token_id']!r}")
    await call.services.admin.delete(TOKEN_KIND, call.path["token_id"], call.principal.actor)


def data_endpoints() -> list[Endpoint]:
    return [
        Endpoint("GET", "/api/me", "me.read", me, "Who am I", "identity", Me),
        Endpoint(
            "GET",
            "/api/spend",
            "spend.read",
            spend,
            "Spend report",
            "usage",
            SpendReport,
            query=SpendQuery,
            csv=True,
            description="Grouped by key, user, team, model or day, from the request log; ?format=csv for a file.",
        ),
        Endpoint(
            "GET",
            "/api/requests",
            "requests.read",
            requests,
            "Query the request log",
            "usage",
            RequestPage,
            query=RequestQueryIn,
        ),
        Endpoint("GET", "/api/audit", "audit.read", audit, "Query the audit log", "audit", AuditPage, query=AuditQuery),
        Endpoint(
            "GET",
            "/api/config/events",
            "events.read",
            events,
            "Configuration events",
            "audit",
            EventList,
            query=EventQuery,
        ),
        Endpoint("GET", "/api/tokens", "tokens.manage", tokens_list, "List admin API tokens", "identity", TokenList),
        Endpoint(
            "POST",
            "/api/tokens",
            "tokens.manage",
            tokens_create,
            "Create an admin API token",
            "identity",
            TokenSecret,
            201,
            TokenCreate,
            errors=(409,),
        ),
        Endpoint(
            "DELETE",
            "/api/tokens/{token_id}",
            "tokens.manage",
            tokens_delete,
            "Revoke an admin API token",
            "identity",
            None,
            204,
            errors=(404,),
        ),
    ]
