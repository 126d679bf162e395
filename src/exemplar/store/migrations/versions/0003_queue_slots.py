"""queue slots: up to N annotators per item and cycle (overlap)

Existing entries become slot 0, so a project labeled before keeps its queue as it was.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_queue_item_cycle", type_="unique")
        batch_op.create_unique_constraint(
            "uq_queue_item_cycle_slot", ["item_id", "cycle_id", "slot"]
        )


def downgrade() -> None:
    # Only slot 0 survives: the old schema holds one entry per item and cycle.
    op.execute(sa.text("DELETE FROM queue WHERE slot <> 0"))
    with op.batch_alter_table("queue", schema=None) as batch_op:
        batch_op.drop_constraint("uq_queue_item_cycle_slot", type_="unique")
        batch_op.create_unique_constraint("uq_queue_item_cycle", ["item_id", "cycle_id"])
        batch_op.drop_column("slot")
