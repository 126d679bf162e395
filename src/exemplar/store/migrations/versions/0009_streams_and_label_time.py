"""streams and labeling time: a decision per streamed item; seconds spent per label

- ``stream_decisions``: one row per item that arrived in stream mode, written when
  exemplar decided whether to ask for its label: the stream position (``seq``), the budget
  manager, the item's utility and the threshold it was held against, the decision
  (``asked``), the manager's budget state after the decision, and the model version that
  scored the item;
- ``labels.seconds``: how long a person spent on the label (from the labeling app's
  timer, or from the queue lease to the answer), the data of cost-aware selection.

Existing rows are kept (``labels.seconds`` is null for labels written before).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stream_decisions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("seq", _ID, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("manager", sa.String(length=64), nullable=False),
        sa.Column("utility", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("asked", sa.Boolean(), nullable=False),
        sa.Column("budget_state", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index(
        op.f("ix_stream_decisions_item_id"), "stream_decisions", ["item_id"], unique=False
    )
    op.add_column("labels", sa.Column("seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("seconds")
    op.drop_index(op.f("ix_stream_decisions_item_id"), table_name="stream_decisions")
    op.drop_table("stream_decisions")
