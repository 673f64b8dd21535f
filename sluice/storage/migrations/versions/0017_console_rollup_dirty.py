"""The console roll-up exact for late request-log rows: on PostgreSQL every insert into the log
marks its hour dirty in `console_rollup_dirty` (a trigger, in the inserting transaction), and the
console's refresh re-aggregates exactly the marked hours, however old
(sluice/storage/backends/console_rollup.py). SQLite needs no trigger: it has one writer at a time
and numbers rows in insertion order (rowid), so the refresh reads the rows above the last rowid it
saw (a trigger there costs each insert about 35 µs of CPU, bench/console_marks.py).

A mark is `(hour, claimed)`: at most one unclaimed mark per hour (a partial unique index), so a
busy hour costs one row, not one per request. The refresh claims the unclaimed marks in a short
transaction, re-reads their hours and then deletes the claimed marks. On PostgreSQL the trigger
holds a share lock on the unclaimed mark it relies on until its transaction ends, so the claim
waits for every writer that skipped inserting a mark because one was there: their rows are
committed, hence visible, before the hours are re-read. (On SQLite the table stays empty.) The
previous refresh could miss rows landing more than two hours late; its watermark is dropped here
so the roll-up is rebuilt once from the log (in the background on a large log), after which it
is exact.

Revision ID: 0017
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION console_rollup_mark() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    h timestamp := date_trunc('hour', timezone('UTC', NEW.ts));
BEGIN
    LOOP
        -- Held until this transaction ends: a refresh claiming this mark waits for our rows.
        PERFORM 1 FROM console_rollup_dirty WHERE hour = h AND claimed = 0 FOR SHARE;
        EXIT WHEN FOUND;
        INSERT INTO console_rollup_dirty (hour, claimed) VALUES (h, 0)
            ON CONFLICT (hour) WHERE claimed = 0 DO NOTHING;
        EXIT WHEN FOUND;  -- our own mark, invisible to a refresh until we commit
    END LOOP;
    RETURN NULL;
END $$;
"""
_PG_TRIGGER = (
    "CREATE TRIGGER console_rollup_mark AFTER INSERT ON request_log FOR EACH ROW EXECUTE FUNCTION console_rollup_mark()"
)


def upgrade() -> None:
    op.create_table(
        "console_rollup_dirty",
        sa.Column("hour", sa.DateTime(timezone=False), nullable=False),  # UTC
        sa.Column("claimed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index(
        "ux_console_rollup_dirty_open",
        "console_rollup_dirty",
        ["hour"],
        unique=True,
        sqlite_where=sa.text("claimed = 0"),
        postgresql_where=sa.text("claimed = 0"),
    )
    if _pg():
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    op.execute("DELETE FROM sluice_meta WHERE name = 'console_rollup_until'")  # rebuild once, exactly


def downgrade() -> None:
    if _pg():
        op.execute("DROP TRIGGER IF EXISTS console_rollup_mark ON request_log")
        op.execute("DROP FUNCTION IF EXISTS console_rollup_mark()")
    op.drop_index("ux_console_rollup_dirty_open", "console_rollup_dirty")
    op.drop_table("console_rollup_dirty")


def _pg() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")
