"""The MCP tools an agent session called, listed on the request log entry of its next LLM call.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("mcp_tools", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("mcp_tools")
