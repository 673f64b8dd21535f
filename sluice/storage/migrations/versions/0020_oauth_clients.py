"""The MCP authorization server (sluice.gateway_signin.authcode): RFC 7591 registered clients, and
the authorization-code binding (client, redirect URI, PKCE challenge, resource) on a sign-in grant.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("client_name", sa.String(200), nullable=False),
        sa.Column("redirect_uris", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
    )
    op.create_index("ix_oauth_clients_address_created", "oauth_clients", ["address", "created_at"])
    with op.batch_alter_table("gateway_grants") as table:
        table.add_column(sa.Column("client_id", sa.String(64), nullable=True))
        table.add_column(sa.Column("redirect_uri", sa.String(2048), nullable=True))
        table.add_column(sa.Column("code_challenge", sa.String(128), nullable=True))
        table.add_column(sa.Column("resource", sa.String(2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_grants") as table:
        table.drop_column("resource")
        table.drop_column("code_challenge")
        table.drop_column("redirect_uri")
        table.drop_column("client_id")
    op.drop_index("ix_oauth_clients_address_created", "oauth_clients")
    op.drop_table("oauth_clients")
