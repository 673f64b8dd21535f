"""Per-key fallback models; the route a request took.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("fallbacks", sa.JSON))
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("route", sa.String(500)))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("route")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("fallbacks")
