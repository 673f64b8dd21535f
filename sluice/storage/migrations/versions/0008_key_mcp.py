"""The MCP tools and tool groups a virtual key may use.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("mcp", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("mcp")
