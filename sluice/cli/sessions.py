"""`sluice sessions list | show | spend`: the session ledger from the store, as a table or CSV.

The same reads and the same rendering as the admin API's /api/sessions (sluice.http.admin.sessions):
the CLI runs on the gateway's host with the store's credentials, so it sees every session; each
read is recorded in the audit log (`data_access`, actor `cli:<user>`) when an audit key is set.
"""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from sluice.settings import AuditConfig

sessions_app = typer.Typer(
    help="Agent sessions from the session ledger: cost, tokens, tools, errors.", no_args_is_help=True
)

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (default: the config's, or ./sluice.db).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config file whose store to use.")]
SinceOpt = Annotated[str, typer.Option(help="Sessions active since: 7d, 24h, 30m, or an ISO time.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="CSV instead of a table.")]


def parse_since(text: str, now: datetime) -> datetime:
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[:-1].isdigit() and text[-1:] in units:
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use e.g. 7d, 24h or 2026-12-01T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _with_store(url: str, audit: AuditConfig, action: str, work: Any) -> Any:
    from sluice.app import open_store
    from sluice.audit.log import AuditLog

    store = open_store(url)
    try:
        await store.migrate()
        result, details = await work(store)
        if audit.enabled:
            await AuditLog(audit, store).append(
                "data_access", f"cli:{getpass.getuser()}", {"action": action, **details}
            )
        return result
    finally:
        await store.close()


def _money(pico: int) -> str:
    return f"${Decimal(pico) / Decimal(10**12):.4f}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def table(items: list[Any]) -> list[str]:
    lines = [
        f"{'ID':32} {'DEVELOPER':14} {'CLIENT':18} {'REPO/BRANCH':30} {'STARTED (UTC)':16} "
        f"{'DURATION':>8} {'REQ':>5} {'ERR':>4} {'COST':>11} MODELS / MCP TOOLS"
    ]
    for s in items:
        place = "/".join(p for p in (s.repo, s.branch) if p) or "-"
        client = f"{s.client or '-'} {s.client_version or ''}".strip()
        used = ",".join(m.name for m in s.models)
        if s.mcp_tools:
            used += " / " + ",".join(f"{t.name}x{t.count}" for t in s.mcp_tools)
        lines.append(
            f"{s.id:32} {(s.developer or s.virtual_key_id)[:14]:14} {client[:18]:18} {place[:30]:30} "
            f"{s.started_at:%Y-%m-%d %H:%M} {_duration(s.duration_s):>8} {s.requests:>5} {s.errors:>4} "
            f"{_money(s.cost_pico):>11} {used}"
        )
    return lines


@sessions_app.command("list")
def sessions_list(
    since: SinceOpt = "7d",
    key: Annotated[str | None, typer.Option(help="Only this virtual key's sessions.")] = None,
    user: Annotated[str | None, typer.Option(help="Only the sessions of this developer's keys.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's sessions.")] = None,
    client: Annotated[
        str | None, typer.Option(help="Only this client (claude-cli, codex_exec, GeminiCLI ...).")
    ] = None,
    repo: Annotated[str | None, typer.Option(help="Only this repository (x-sluice-repo).")] = None,
    branch: Annotated[str | None, typer.Option(help="Only this branch (x-sluice-branch).")] = None,
    min_cost: Annotated[str | None, typer.Option(help="Only sessions that cost at least this many dollars.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    csv: CsvOpt = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Agent sessions, the most recently active first."""
    from sluice.cli.main import _audit_config, _store_url
    from sluice.http.admin.sessions import session_out, sessions_csv
    from sluice.storage.records import SessionQuery

    try:
        min_pico = int(Decimal(min_cost) * 10**12) if min_cost else None
    except ArithmeticError:
        raise typer.BadParameter(f"--min-cost {min_cost!r}: a number of dollars") from None
    query = SessionQuery(
        since=parse_since(since, datetime.now(UTC)),
        virtual_key_ids=(key,) if key else None,
        team_ids=(team,) if team else None,
        owner_user_id=user,
        client=client,
        repo=repo,
        branch=branch,
        min_cost_pico=min_pico,
        limit=limit,
    )

    async def work(s: Any) -> tuple[list[Any], dict[str, Any]]:
        items = [session_out(r) for r in await s.list_sessions(query)]
        return items, {"filters": {"since": since, "key": key, "user": user, "team": team}, "records": len(items)}

    items = asyncio.run(_with_store(_store_url(config, store), _audit_config(config), "sessions_query", work))
    if csv:
        typer.echo(sessions_csv(items), nl=False)
        return
    for line in table(items):
        typer.echo(line)


@sessions_app.command("show")
def sessions_show(
    session: Annotated[
        str, typer.Argument(help="The ledger id (from `sluice sessions list`) or the client's session id.")
    ],
    requests: Annotated[int, typer.Option(help="How many of its requests to list.", min=0, max=100_000)] = 200,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """One session: its figures, models, MCP tools, errors and requests."""
    from sluice.cli.main import _audit_config, _store_url
    from sluice.http.admin.sessions import session_out
    from sluice.storage.records import SessionQuery

    async def work(s: Any) -> tuple[tuple[Any, list[dict[str, Any]]] | list[Any], dict[str, Any]]:
        row = await s.get_session(session)
        if row is None:
            found = await s.list_sessions(SessionQuery(session_id=session[:200], limit=20))
            if len(found) != 1:
                return [session_out(r) for r in found], {"session": session[:200], "records": 0}
            row = found[0]
        log = await s.session_requests(row["virtual_key_id"], row["session_id"], requests)
        return (session_out(row), log), {"session": row["id"], "records": len(log)}

    found = asyncio.run(_with_store(_store_url(config, store), _audit_config(config), "session_read", work))
    if isinstance(found, list):
        if not found:
            typer.echo(f"error: no session {session[:200]!r}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(found)} sessions of different keys have that id; show one by its ledger id:", err=True)
        for line in table(found):
            typer.echo(line, err=True)
        raise typer.Exit(1)
    s, log = found
    for label, value in (
        ("session", f"{s.session_id} (ledger id {s.id})"),
        ("key", s.virtual_key_id),
        ("developer", s.developer or "-"),
        ("team", s.team_id or "-"),
        ("client", f"{s.client or '-'} {s.client_version or ''}  ({s.user_agent or ''})"),
        ("repository", s.repo or "-"),
        ("branch", s.branch or "-"),
        ("directory", s.cwd or "-"),
        ("started", f"{s.started_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("ended", f"{s.ended_at:%Y-%m-%d %H:%M:%S} UTC ({_duration(s.duration_s)})"),
        ("requests", f"{s.requests} ({s.errors} failed, {s.denied} refused)"),
        (
            "tokens",
            f"in {s.tokens.input}, out {s.tokens.output}, cache read {s.tokens.cache_read}, "
            f"cache write {s.tokens.cache_write}",
        ),
        ("cost", _money(s.cost_pico)),
        ("models", ", ".join(f"{m.name} x{m.count}" for m in s.models) or "-"),
        ("mcp tools", ", ".join(f"{t.name} x{t.count}" for t in s.mcp_tools) or "-"),
        ("errors", ", ".join(f"{e.name} x{e.count}" for e in s.error_kinds) or "-"),
    ):
        typer.echo(f"{label:>11}: {value}")
    typer.echo("")
    typer.echo(f"{'TIME (UTC)':19} {'STATUS':>6} {'MODEL':30} {'IN':>8} {'OUT':>7} {'COST':>11} REQUEST")
    for r in log:
        typer.echo(
            f"{r['ts']:%Y-%m-%d %H:%M:%S} {r['status']:>6} {(r['model'] or r['requested_model'] or '-')[:30]:30} "
            f"{r['input_tokens']:>8} {r['output_tokens']:>7} {_money(r['cost_pico']):>11} {r['request_id']}"
        )


@sessions_app.command("spend")
def sessions_spend(
    by: Annotated[str, typer.Option(help="Comma-separated: repo, branch, client, team, key, user.")] = "repo,branch",
    since: SinceOpt = "30d",
    team: Annotated[str | None, typer.Option(help="Only this team's sessions.")] = None,
    repo: Annotated[str | None, typer.Option(help="Only this repository.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    csv: CsvOpt = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Spend of agent sessions by repository and branch (or any of the other groupings)."""
    import csv as csv_module
    import io

    from sluice.cli.main import _audit_config, _store_url
    from sluice.http.admin.sessions import GROUPS, csv_cell
    from sluice.storage.records import SessionQuery

    groups = tuple(dict.fromkeys(g.strip() for g in by.split(",") if g.strip()))
    if not groups or any(g not in GROUPS for g in groups):
        raise typer.BadParameter(f"--by {by!r}: comma-separated names among {', '.join(GROUPS)}")
    query = SessionQuery(
        since=parse_since(since, datetime.now(UTC)), team_ids=(team,) if team else None, repo=repo, limit=limit
    )

    async def work(s: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = await s.session_spend(groups, query)
        return rows, {"group_by": ",".join(groups), "since": since, "rows": len(rows)}

    rows = asyncio.run(_with_store(_store_url(config, store), _audit_config(config), "session_spend", work))
    if csv:
        out = io.StringIO()
        writer = csv_module.writer(out)
        writer.writerow([*groups, "cost_usd", "tokens", "requests", "sessions"])
        for r in rows:
            cost = str(Decimal(r["cost_pico"]) / Decimal(10**12))
            writer.writerow([*(csv_cell(r[g] or "") for g in groups), cost, r["tokens"], r["requests"], r["sessions"]])
        typer.echo(out.getvalue(), nl=False)
        return
    width = {g: max(len(g), min(40, max((len(r[g] or "-") for r in rows), default=1))) for g in groups}
    typer.echo(
        " ".join(f"{g.upper():{width[g]}}" for g in groups) + f" {'COST':>12} {'TOKENS':>12} {'REQUESTS':>9} SESSIONS"
    )
    for r in rows:
        cells = " ".join(f"{(r[g] or '-')[:40]:{width[g]}}" for g in groups)
        typer.echo(f"{cells} {_money(r['cost_pico']):>12} {r['tokens']:>12} {r['requests']:>9} {r['sessions']}")
