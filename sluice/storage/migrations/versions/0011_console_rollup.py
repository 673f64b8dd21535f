"""The console's reads: spend rolled up per hour and per day, and indexes for the request log's
filters, so its pages never scan the log.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_rollup",
        sa.Column("grain", sa.String(1), primary_key=True),  # h (hour) | d (day)
        sa.Column("dim", sa.String(16), primary_key=True),  # [team:|key:](total | team | key | model | provider)
        sa.Column("scope", sa.String(200), primary_key=True),  # '' (the whole gateway), else the team or key id
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("value", sa.String(300), primary_key=True),  # '' for none
        sa.Column("cost_pico", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("denied", sa.Integer, nullable=False),
        sa.Column("rate_limited", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
    )
    op.create_index("ix_request_log_team_ts", "request_log", ["team_id", "ts"])
    op.create_index("ix_request_log_model_ts", "request_log", ["model", "ts"])
    op.create_index("ix_request_log_session_ts", "request_log", ["session_id", "ts"])
    op.create_index("ix_request_log_decision_ts", "request_log", ["decision", "ts"])
    op.create_index("ix_request_log_status_ts", "request_log", ["status", "ts"])


def downgrade() -> None:
    for name in ("team", "model", "session", "decision", "status"):
        op.drop_index(f"ix_request_log_{name}_ts", "request_log")
    op.drop_table("console_rollup")
