"""Sign-ins through the gateway sign-in protocol (device code, approval, refresh token): one row
each, for sluice.gateway_signin; and the agents' own OTLP metrics, per person.

Revision ID: 0016
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_grants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("device_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_code", sa.String(16), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("surface", sa.String(64)),
        sa.Column("last_poll", sa.Float),
        sa.Column("user_id", sa.String(200)),
        sa.Column("key_id", sa.String(200)),
        sa.Column("refresh_hash", sa.String(64), unique=True),
        sa.Column("revoked_at", sa.Float),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_gateway_grants_user_id", "gateway_grants", ["user_id"])
    op.create_table(
        "agent_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(200)),
        sa.Column("virtual_key_id", sa.String(200), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(50), nullable=False),
    )
    op.create_index("ix_agent_metrics_user_ts", "agent_metrics", ["user_id", "ts"])


def downgrade() -> None:
    op.drop_index("ix_agent_metrics_user_ts", "agent_metrics")
    op.drop_table("agent_metrics")
    op.drop_index("ix_gateway_grants_user_id", "gateway_grants")
    op.drop_table("gateway_grants")
