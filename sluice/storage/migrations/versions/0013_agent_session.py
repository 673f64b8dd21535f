"""The session ledger: one row per agent session (`agent_session`) and what it used
(`agent_session_item`), kept by the request-log writer; where an agent works (repository, branch,
working directory) on each request log entry. The sessions already in the log are summed into it.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from sluice.sessions.ledger import SessionDelta, fold
from sluice.storage.records import RequestLogEntry

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_PAGE = 20_000


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("repo", sa.String(300)))
        batch.add_column(sa.Column("branch", sa.String(300)))
        batch.add_column(sa.Column("cwd", sa.String(500)))
    sessions = op.create_table(
        "agent_session",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("virtual_key_id", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("team_id", sa.String(200)),
        sa.Column("end_user", sa.String(300)),
        sa.Column("client", sa.String(100)),
        sa.Column("client_version", sa.String(100)),
        sa.Column("user_agent", sa.String(300)),
        sa.Column("repo", sa.String(300)),
        sa.Column("branch", sa.String(300)),
        sa.Column("cwd", sa.String(500)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("denied", sa.Integer, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_pico", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_agent_session_ended", "agent_session", ["ended_at"])
    op.create_index("ix_agent_session_key_ended", "agent_session", ["virtual_key_id", "ended_at"])
    op.create_index("ix_agent_session_team_ended", "agent_session", ["team_id", "ended_at"])
    items = op.create_table(
        "agent_session_item",
        sa.Column("session", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),  # model | tool | error
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("cost_pico", sa.BigInteger, nullable=False),
    )
    _backfill(sessions, items)


def _backfill(sessions: sa.Table, items: sa.Table) -> None:
    """Sums the sessions already in the log, a page of it at a time, with the writer's own fold."""
    conn = op.get_bind()
    log = sa.table(
        "request_log",
        *(
            sa.column(name)
            for name in (
                "request_id path surface status decision error_kind virtual_key_id team_id client session_id "
                "user_id requested_model model input_tokens output_tokens cache_read_tokens cache_write_tokens "
                "cost_pico latency_ms"
            ).split()
        ),
        sa.column("ts", sa.DateTime(timezone=True)),
        sa.column("mcp_tools", sa.JSON),
    )
    found: dict[str, SessionDelta] = {}
    after: tuple[Any, str] | None = None
    base = sa.select(log).where(log.c.session_id.is_not(None), log.c.virtual_key_id.is_not(None))
    while True:
        stmt = base
        if after is not None:
            stmt = stmt.where(sa.or_(log.c.ts > after[0], sa.and_(log.c.ts == after[0], log.c.request_id > after[1])))
        rows = conn.execute(stmt.order_by(log.c.ts, log.c.request_id).limit(_PAGE)).all()
        if not rows:
            break
        fold((_entry(r._mapping) for r in rows), found)
        after = (rows[-1].ts, rows[-1].request_id)
    deltas = list(found.values())
    for i in range(0, len(deltas), 1000):
        chunk = deltas[i : i + 1000]
        conn.execute(sa.insert(sessions), [_session(d) for d in chunk])
        rows_of_items = [
            {"session": d.id, "kind": kind, "name": name, "count": count, "cost_pico": cost}
            for d in chunk
            for (kind, name), (count, cost) in d.items.items()
        ]
        if rows_of_items:
            conn.execute(sa.insert(items), rows_of_items)


def _entry(row: Any) -> RequestLogEntry:
    ts = row["ts"]
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return RequestLogEntry(
        request_id=row["request_id"],
        ts=ts if ts.tzinfo else ts.replace(tzinfo=UTC),
        path=row["path"],
        surface=row["surface"],
        status=row["status"],
        decision=row["decision"],
        error_kind=row["error_kind"],
        virtual_key_id=row["virtual_key_id"],
        team_id=row["team_id"],
        client=row["client"] or "",
        session_id=row["session_id"],
        user_id=row["user_id"],
        requested_model=row["requested_model"],
        model=row["model"],
        input_tokens=row["input_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
        cache_read_tokens=row["cache_read_tokens"] or 0,
        cache_write_tokens=row["cache_write_tokens"] or 0,
        cost_pico=row["cost_pico"] or 0,
        latency_ms=row["latency_ms"] or 0.0,
        mcp_tools=tuple(row["mcp_tools"] or ()),
    )


def _session(d: SessionDelta) -> dict[str, Any]:
    return {
        "id": d.id,
        "virtual_key_id": d.virtual_key_id,
        "session_id": d.session_id,
        "team_id": d.team_id,
        "end_user": d.end_user,
        "client": d.client,
        "client_version": d.client_version,
        "user_agent": d.user_agent,
        "repo": d.repo,
        "branch": d.branch,
        "cwd": d.cwd,
        "started_at": d.started_at,
        "ended_at": d.ended_at,
        "requests": d.requests,
        "errors": d.errors,
        "denied": d.denied,
        "input_tokens": d.input_tokens,
        "output_tokens": d.output_tokens,
        "cache_read_tokens": d.cache_read_tokens,
        "cache_write_tokens": d.cache_write_tokens,
        "cost_pico": d.cost_pico,
    }


def downgrade() -> None:
    op.drop_table("agent_session_item")
    for name in ("ended", "key_ended", "team_ended"):
        op.drop_index(f"ix_agent_session_{name}", "agent_session")
    op.drop_table("agent_session")
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("cwd")
        batch.drop_column("branch")
        batch.drop_column("repo")
