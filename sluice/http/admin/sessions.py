"""Agent sessions from the session ledger (sluice.sessions.ledger): the list with its filters and
CSV, one session with its requests, and spend by repository and branch (or client, team, key,
user). `spend.read`, scoped like the spend report: an admin or a security auditor sees every
session, a team lead their teams' sessions, a developer the sessions of their own keys. Every read
is recorded in the audit log (who looked at what)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.responses import Response

from sluice.admin.service import NotFound
from sluice.auth.rbac import Scope
from sluice.http.admin.data import _restricted
from sluice.http.admin.framework import Call, Endpoint
from sluice.http.admin.schemas import Id, Paging, RequestOut, Time
from sluice.storage.records import SessionQuery

PICO = Decimal(10**12)
GROUPS = ("repo", "branch", "client", "team", "key", "user")


def usd(pico: int) -> str:
    return str(Decimal(pico) / PICO)


class SessionQueryIn(Paging):
    since: Time | None = Field(default=None, description="sessions active at or after this time")
    until: Time | None = Field(default=None, description="sessions that started before this time")
    key: Id | None = None
    team: Id | None = None
    user: Id | None = Field(default=None, description="the developer: the Sluice user the key belongs to")
    client: str | None = Field(default=None, max_length=100, description="e.g. claude-cli, codex_exec, GeminiCLI")
    repo: str | None = Field(default=None, max_length=300)
    branch: str | None = Field(default=None, max_length=300)
    session: str | None = Field(default=None, max_length=200, description="the session id the client sent")
    # Exact decimal dollars, below a million (its pico-dollars fit in 64 bits).
    min_cost_usd: str | None = Field(default=None, pattern=r"^[0-9]{1,6}(\.[0-9]{1,12})?$", examples=["12.50"])
    format: Literal["json", "csv"] = "json"


class Tokens(BaseModel):
    input: int
    output: int
    cache_read: int
    cache_write: int


class UsedItem(BaseModel):
    name: str
    count: int
    cost_usd: str | None = None


class SessionOut(BaseModel):
    id: str = Field(description="the ledger's id of the session (a key and the session id its client sent)")
    session_id: str
    virtual_key_id: str
    developer: str | None = Field(description="the Sluice user the key belongs to")
    team_id: str | None
    end_user: str | None = Field(description="what the client says of its user (e.g. metadata.user_id)")
    client: str | None
    client_version: str | None
    user_agent: str | None
    repo: str | None
    branch: str | None
    cwd: str | None
    started_at: datetime
    ended_at: datetime
    duration_s: float
    requests: int
    errors: int
    denied: int
    tokens: Tokens
    cost_pico: int
    cost_usd: str = Field(description="exact decimal dollars")
    models: list[UsedItem]
    mcp_tools: list[UsedItem]
    error_kinds: list[UsedItem]


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_offset: int | None


class SessionDetail(SessionOut):
    request_log: list[RequestOut]
    next_request_offset: int | None


class SessionDetailQuery(Paging):
    pass


_GROUP = "(" + "|".join(GROUPS) + ")"


class SessionSpendQuery(SessionQueryIn):
    group_by: str = Field(
        default="repo,branch",
        pattern=f"^{_GROUP}(,{_GROUP}){{0,5}}$",
        description=f"comma-separated, any of {', '.join(GROUPS)}",
    )

    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.group_by.split(",")))  # each once, in the order given


class SessionSpendRow(BaseModel):
    model_config = {"extra": "allow"}
    cost_usd: str
    cost_pico: int
    tokens: int
    requests: int
    sessions: int


class SessionSpendReport(BaseModel):
    group_by: list[str]
    rows: list[SessionSpendRow]


def session_out(row: dict[str, Any]) -> SessionOut:
    items: dict[str, list[UsedItem]] = {"model": [], "tool": [], "error": []}
    for item in row.get("items", []):
        cost = usd(item["cost_pico"]) if item["kind"] == "model" else None
        items.setdefault(item["kind"], []).append(UsedItem(name=item["name"], count=item["count"], cost_usd=cost))
    return SessionOut(
        id=row["id"],
        session_id=row["session_id"],
        virtual_key_id=row["virtual_key_id"],
        developer=row.get("owner_user_id"),
        team_id=row["team_id"],
        end_user=row["end_user"],
        client=row["client"],
        client_version=row["client_version"],
        user_agent=row["user_agent"],
        repo=row["repo"],
        branch=row["branch"],
        cwd=row["cwd"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        duration_s=round((row["ended_at"] - row["started_at"]).total_seconds(), 3),
        requests=row["requests"],
        errors=row["errors"],
        denied=row["denied"],
        tokens=Tokens(
            input=row["input_tokens"],
            output=row["output_tokens"],
            cache_read=row["cache_read_tokens"],
            cache_write=row["cache_write_tokens"],
        ),
        cost_pico=row["cost_pico"],
        cost_usd=usd(row["cost_pico"]),
        models=items["model"],
        mcp_tools=items["tool"],
        error_kinds=items["error"],
    )


def ledger_query(call: Call, q: SessionQueryIn) -> SessionQuery:
    teams, owner = _restricted(call, q.team, q.user)
    return SessionQuery(
        since=q.since,
        until=q.until,
        virtual_key_ids=(q.key,) if q.key else None,
        team_ids=teams,
        owner_user_id=owner,
        client=q.client,
        repo=q.repo,
        branch=q.branch,
        session_id=q.session,
        min_cost_pico=int(Decimal(q.min_cost_usd) * PICO) if q.min_cost_usd is not None else None,
        limit=q.limit,
        offset=q.offset,
    )


CSV_COLUMNS = (
    "id session_id virtual_key_id developer team_id client client_version repo branch cwd started_at ended_at "
    "duration_s requests errors denied input_tokens output_tokens cache_read_tokens cache_write_tokens cost_usd "
    "models mcp_tools"
).split()


def csv_cell(value: Any) -> Any:
    # A cell a spreadsheet would run as a formula (=, +, -, @ first) is quoted as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def sessions_csv(items: list[SessionOut]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for s in items:
        flat = s.model_dump()
        flat.update({f"{k}_tokens": v for k, v in flat.pop("tokens").items()})
        flat["developer"] = s.developer
        flat["started_at"], flat["ended_at"] = s.started_at.isoformat(), s.ended_at.isoformat()
        flat["models"] = " ".join(f"{m.name}:{m.count}" for m in s.models)
        flat["mcp_tools"] = " ".join(f"{t.name}:{t.count}" for t in s.mcp_tools)
        writer.writerow([csv_cell(flat.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def _csv_response(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv", headers={"content-disposition": f"attachment; filename={name}"})


async def list_sessions(call: Call) -> SessionPage | Response:
    q: SessionQueryIn = call.query
    rows = await call.services.store.list_sessions(ledger_query(call, q))
    items = [session_out(r) for r in rows]
    filters = q.model_dump(mode="json", exclude_defaults=True)
    action = "sessions_export" if q.format == "csv" else "sessions_query"
    await call.services.admin.data_read(call.principal.actor, action, {"filters": filters, "records": len(items)})
    if q.format == "csv":
        return _csv_response(sessions_csv(items), "sessions.csv")
    return SessionPage(items=items, next_offset=q.offset + len(items) if len(items) == q.limit else None)


async def get_session(call: Call) -> SessionDetail:
    q: SessionDetailQuery = call.query
    ledger_id = call.path["session_id"]
    row = await call.services.store.get_session(ledger_id)
    if row is None:
        raise NotFound(f"no session {ledger_id[:64]!r}")
    call.authorize(Scope(team_id=row["team_id"], user_id=row.get("owner_user_id")))
    log = await call.services.store.session_requests(row["virtual_key_id"], row["session_id"], q.limit, q.offset)
    await call.services.admin.data_read(
        call.principal.actor, "session_read", {"session": ledger_id, "records": len(log)}
    )
    return SessionDetail(
        **session_out(row).model_dump(),
        request_log=[RequestOut.model_validate(r) for r in log],
        next_request_offset=q.offset + len(log) if len(log) == q.limit else None,
    )


async def session_spend(call: Call) -> SessionSpendReport | Response:
    q: SessionSpendQuery = call.query
    groups = q.groups()
    rows = await call.services.store.session_spend(groups, ledger_query(call, q))
    report = SessionSpendReport(
        group_by=list(groups), rows=[SessionSpendRow(cost_usd=usd(r["cost_pico"]), **r) for r in rows]
    )
    details = {"group_by": q.group_by, "filters": q.model_dump(mode="json", exclude_defaults=True), "rows": len(rows)}
    await call.services.admin.data_read(
        call.principal.actor, "session_spend_export" if q.format == "csv" else "session_spend", details
    )
    if q.format != "csv":
        return report
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*groups, "cost_usd", "tokens", "requests", "sessions"])
    for r in rows:
        writer.writerow(
            [*(csv_cell(r[g] or "") for g in groups), usd(r["cost_pico"]), r["tokens"], r["requests"], r["sessions"]]
        )
    return _csv_response(out.getvalue(), "session-spend.csv")


def session_endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "GET",
            "/api/sessions",
            "spend.read",
            list_sessions,
            "List agent sessions",
            "usage",
            SessionPage,
            query=SessionQueryIn,
            csv=True,
            description="From the session ledger, most recently active first; ?format=csv for a file.",
        ),
        # Before /api/sessions/{session_id}: a ledger id is 32 hex digits, never "spend".
        Endpoint(
            "GET",
            "/api/sessions/spend",
            "spend.read",
            session_spend,
            "Spend by repository and branch",
            "usage",
            SessionSpendReport,
            query=SessionSpendQuery,
            csv=True,
            description="Agent sessions' cost grouped by repo and branch (or client, team, key, user).",
        ),
        Endpoint(
            "GET",
            "/api/sessions/{session_id}",
            "spend.read",
            get_session,
            "One agent session and its requests",
            "usage",
            SessionDetail,
            query=SessionDetailQuery,
            errors=(404,),
        ),
    ]
