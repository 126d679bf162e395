"""queue rank index ends with the id: the next entry is the first of an ordered index walk

Leases take the waiting entry with the lowest ``(rank, id)``. SQLite appends the rowid to
every index, so ``(status, rank)`` already served that order there; PostgreSQL sorted every
pending entry instead (2 ms per lease with 1,450 pending entries).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_status_rank")
        batch_op.create_index("ix_queue_status_rank", ["status", "rank", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("queue", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_status_rank")
        batch_op.create_index("ix_queue_status_rank", ["status", "rank"], unique=False)
