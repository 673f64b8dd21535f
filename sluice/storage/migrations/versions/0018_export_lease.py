"""Audit exporters and alert sinks: a delivery lease per sink, so one process delivers at a time.

Revision ID: 0018
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_export_state") as table:
        table.add_column(sa.Column("lease_holder", sa.String(100), nullable=True))
        table.add_column(sa.Column("lease_until", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_export_state") as table:
        table.drop_column("lease_until")
        table.drop_column("lease_holder")
