"""Virtual keys, request log and meta counters.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_hint", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(200)),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("grants", sa.JSON, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "request_log",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("surface", sa.String(40), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("error_kind", sa.String(64)),
        sa.Column("virtual_key_id", sa.String(200)),
        sa.Column("virtual_key_name", sa.String(200)),
        sa.Column("team_id", sa.String(200)),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("client", sa.String(300), nullable=False),
        sa.Column("session_id", sa.String(200)),
        sa.Column("user_id", sa.String(300)),
        sa.Column("provider", sa.String(100)),
        sa.Column("provider_key_name", sa.String(200)),
        sa.Column("requested_model", sa.String(300)),
        sa.Column("model", sa.String(300)),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_pico", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttfb_ms", sa.Float),
        sa.Column("attempts", sa.JSON, nullable=False),
    )
    op.create_index("ix_request_log_ts", "request_log", ["ts"])
    op.create_index("ix_request_log_key_ts", "request_log", ["virtual_key_id", "ts"])
    op.create_table(
        "sluice_meta",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sluice_meta")
    op.drop_index("ix_request_log_key_ts", "request_log")
    op.drop_index("ix_request_log_ts", "request_log")
    op.drop_table("request_log")
    op.drop_table("virtual_keys")
