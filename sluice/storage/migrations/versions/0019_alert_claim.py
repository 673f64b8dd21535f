"""Alert claims in their own table, with the claimed alert, so a claim left pending by a process
that died is raised again by another (sluice.alerts.monitor). The claims kept until now in
`sluice_meta` (`alert:<hash>`, a pending one negative: -(claim ms << 12 | 12 random bits)) are
copied over: recorded ones stay quiet, pending ones (no alert kept) are taken over by the next
check that raises the same alert, as before; kept for 400 days (their windows are unknown). The
old rows stay where they are, so replicas of the previous version, still serving during a
rolling update, keep finding the alerts they claimed (docs/observability.md, "Crashes").

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_KEEP_MS = 400 * 86_400_000


def upgrade() -> None:
    op.create_table(
        "alert_claim",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("alert_id", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("claimed_ms", sa.BigInteger, nullable=False),
        sa.Column("keep_until_ms", sa.BigInteger, nullable=False),
        sa.Column("audit_after", sa.BigInteger, nullable=False),
        sa.Column("alert", sa.JSON),
    )
    op.create_index("ix_alert_claim_state", "alert_claim", ["state", "claimed_ms"])
    now_ms = int(time.time() * 1000)
    op.execute(
        sa.text(
            "INSERT INTO alert_claim (key, alert_id, state, token, claimed_ms, keep_until_ms, audit_after) "
            "SELECT substr(name, 7), '', CASE WHEN value < 0 THEN 'pending' ELSE 'recorded' END, value, "
            "CASE WHEN value < 0 THEN (-value) / 4096 ELSE :now END, :keep, 0 "
            "FROM sluice_meta WHERE name LIKE 'alert:%'"
        ).bindparams(now=now_ms, keep=now_ms + _KEEP_MS)
    )


def downgrade() -> None:
    op.execute("DELETE FROM sluice_meta WHERE name LIKE 'alert:%'")
    op.execute(
        "INSERT INTO sluice_meta (name, value) "
        "SELECT 'alert:' || key, CASE WHEN state = 'pending' THEN -(claimed_ms * 4096) ELSE 1 END "
        "FROM alert_claim"
    )
    op.drop_index("ix_alert_claim_state", "alert_claim")
    op.drop_table("alert_claim")
