"""Who a key belongs to, the access profile it derives from, and rotation with an overlap period.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("user_id", sa.String(200)))
        batch.add_column(sa.Column("profile_id", sa.String(200)))
        batch.add_column(sa.Column("previous_key_hash", sa.String(64)))
        batch.add_column(sa.Column("previous_valid_until", sa.DateTime(timezone=True)))
        batch.create_index("ix_virtual_keys_user_id", ["user_id"])
        batch.create_index("ix_virtual_keys_profile_id", ["profile_id"])
        batch.create_unique_constraint("uq_virtual_keys_previous_key_hash", ["previous_key_hash"])


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_constraint("uq_virtual_keys_previous_key_hash", type_="unique")
        batch.drop_index("ix_virtual_keys_profile_id")
        batch.drop_index("ix_virtual_keys_user_id")
        for column in ("previous_valid_until", "previous_key_hash", "profile_id", "user_id"):
            batch.drop_column(column)
