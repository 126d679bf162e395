"""curation: recorded operations, their candidates, and provenance of model proposals

- ``labels.model_version`` / ``labels.confidence``: which model proposed a class, and how
  sure it was (a ``proposed`` row whose ``source`` is ``model``);
- ``labels.hard_negative``: a verified label that corrects a confident model proposal (a
  confident error the model must learn; training weights it up);
- ``curation_operations``: one recorded curation operation (a prune plan, label-error
  suspects, a class split or merge), with its status (proposed, applied, dismissed,
  undone) and parameters;
- ``curation_candidates``: the items (or objects) an operation concerns, each with its
  reason, score, suggested class, the reviewer's decision and the label rows it wrote (so
  the operation can be undone by appending the rows it replaced).

Existing rows are kept; ``labels`` is copied with its data on SQLite (batch mode).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("hard_negative", sa.Boolean(), nullable=True))
    op.create_table(
        "curation_operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycles.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "curation_candidates",
        sa.Column("id", _ID, nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("object_id", _ID, nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("current_label", sa.String(length=255), nullable=True),
        sa.Column("suggested_label", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("written", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["operation_id"], ["curation_operations.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("curation_candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_curation_candidates_operation_id"), ["operation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_curation_candidates_item_id"), ["item_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("curation_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curation_candidates_item_id"))
        batch_op.drop_index(batch_op.f("ix_curation_candidates_operation_id"))
    op.drop_table("curation_candidates")
    op.drop_table("curation_operations")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("hard_negative")
        batch_op.drop_column("confidence")
        batch_op.drop_column("model_version")
