"""The spend ledger: one row per admitted request, the durable source of limit usage.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_ledger",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("virtual_key_id", sa.String(200), nullable=False),
        sa.Column("team_id", sa.String(200)),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("cost_pico", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_spend_key_ts", "spend_ledger", ["virtual_key_id", "ts"])
    op.create_index("ix_spend_team_ts", "spend_ledger", ["team_id", "ts"])
    op.create_index("ix_spend_customer_ts", "spend_ledger", ["customer_id", "ts"])


def downgrade() -> None:
    op.drop_table("spend_ledger")
