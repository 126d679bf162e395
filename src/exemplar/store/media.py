"""Media rows: the slides and videos whose parts (regions, frames) are items.

A slide or a video is too large to be one item: an import cuts it into items (regions at a
chosen magnification, or frames) and records the file once in ``media``; each part points
at it (``items.media_id``) and says where it lies (``origin_x``/``origin_y``/``scale`` for
a region, ``frame`` for a frame). The labeling app reads this to show a region with the
slide around it, or a frame within its video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from exemplar.store.schema import Item, Media, MediaKind, utcnow

__all__ = ["MediaRecord", "ensure_media", "get_media", "media_items"]


@dataclass(frozen=True)
class MediaRecord:
    """A slide or video as an import found it, before it has a row.

    ``uid`` is its content hash, ``uri`` its path, ``file_id`` the real file's identity
    (:func:`exemplar.sources.images.file_id`), ``width``/``height`` the slide's level-0 or
    the video's frame size in pixels, ``properties`` what the file says of itself.
    """

    uid: str
    kind: str
    uri: str
    file_id: str | None
    width: int
    height: int
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in {k.value for k in MediaKind}:
            raise ValueError(f"unknown media kind {self.kind!r}: slide or video")


def ensure_media(s: Session, rec: MediaRecord) -> int:
    """The id of the media row of ``rec.uid``, inserting it when it is new."""
    found = s.scalar(select(Media.id).where(Media.uid == rec.uid))
    if found is not None:
        return int(found)
    done = s.execute(
        insert(Media).returning(Media.id),
        [
            {
                "uid": rec.uid,
                "kind": rec.kind,
                "uri": rec.uri,
                "file_id": rec.file_id,
                "width": int(rec.width),
                "height": int(rec.height),
                "properties": dict(rec.properties),
                "created_at": utcnow(),
            }
        ],
    )
    return int(done.scalar_one())


def get_media(s: Session, media_id: int) -> Media | None:
    """The media row ``media_id``, or None."""
    return s.get(Media, media_id)


def media_items(s: Session, media_id: int) -> list[Item]:
    """The items cut from media ``media_id``: frames in order, regions row by row."""
    return list(
        s.scalars(
            select(Item)
            .where(Item.media_id == media_id)
            .order_by(Item.frame, Item.origin_y, Item.origin_x, Item.id)
        )
    )
