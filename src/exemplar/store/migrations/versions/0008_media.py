"""media: slides cut into regions and videos cut into frames; video tracks

- ``media``: one whole-slide image or video whose parts are items, with its size and
  what the file says of itself (``properties``: microns per pixel, objective power, levels;
  frames per second, frame count, codec);
- ``items.media_id`` / ``origin_x`` / ``origin_y`` / ``scale`` / ``frame``: where a
  region lies in its slide (level-0 pixels, and level-0 pixels per item pixel) or which
  frame of its video an item is;
- ``annotations.track_id`` / ``keyframe``: the objects of one video track share a track
  id; a box a person placed on a keyframe is marked as such (interpolated and tracked
  boxes are not).

Existing rows are kept (new columns are null); ``items`` and ``annotations`` are altered
in place (``ALTER TABLE ... ADD COLUMN``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("file_id", sa.String(length=64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
    )
    # Plain ALTER TABLE, not batch mode: SQLite's batch mode copies ``items``, which every
    # label, annotation and queue row references (their foreign keys would refuse it).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE items ADD COLUMN media_id INTEGER REFERENCES media (id)")
    else:
        op.add_column("items", sa.Column("media_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_items_media_id_media", "items", "media", ["media_id"], ["id"])
    op.add_column("items", sa.Column("origin_x", sa.Integer(), nullable=True))
    op.add_column("items", sa.Column("origin_y", sa.Integer(), nullable=True))
    op.add_column("items", sa.Column("scale", sa.Float(), nullable=True))
    op.add_column("items", sa.Column("frame", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_items_media_id"), "items", ["media_id"], unique=False)
    op.add_column("annotations", sa.Column("track_id", _ID, nullable=True))
    op.add_column("annotations", sa.Column("keyframe", sa.Boolean(), nullable=True))
    op.create_index(op.f("ix_annotations_track_id"), "annotations", ["track_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_annotations_track_id"), table_name="annotations")
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_column("keyframe")
        batch_op.drop_column("track_id")
    op.drop_index(op.f("ix_items_media_id"), table_name="items")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_items_media_id_media", "items", type_="foreignkey")
    with op.batch_alter_table("items", schema=None) as batch_op:
        for column in ("frame", "scale", "origin_y", "origin_x", "media_id"):
            batch_op.drop_column(column)
    op.drop_table("media")
