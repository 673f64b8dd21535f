"""The kill switch's stops (sluice.sessions.stops): who stopped which session, key, team or the
organisation, why, and who lifted it.

Revision ID: 0014
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stops",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True)),
        sa.Column("lifted_by", sa.String(300)),
        sa.Column("lift_reason", sa.Text),
    )
    op.create_index("ix_stops_active", "stops", ["lifted_at"])


def downgrade() -> None:
    op.drop_index("ix_stops_active", "stops")
    op.drop_table("stops")
