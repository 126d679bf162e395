"""Media rows: a slide or video is stored once, and its regions and frames point at it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exemplar.sources.base import Chunk, ProblemList, Record
from exemplar.sources.writer import BatchWriter
from exemplar.store.arrays import ArrayStore
from exemplar.store.db import open_database
from exemplar.store.media import MediaRecord, get_media, media_items
from exemplar.store.schema import Item, MediaKind

SLIDE = MediaRecord(
    uid="s" * 64,
    kind=MediaKind.SLIDE,
    uri="/data/slide.svs",
    file_id="1:2:3:4",
    width=4096,
    height=2048,
    properties={"mpp_x": 0.25, "objective_power": 40},
)


def _region(x: int, y: int) -> Record:
    return Record(
        uid=f"r{x}-{y}",
        uri=f"/data/slide.svs#region={x},{y},1024,1024",
        where=f"region {x},{y}",
        kind="image",
        label=None,
        width=512,
        height=512,
        media=SLIDE,
        origin=(x, y),
        scale=2.0,
    )


def test_regions_share_one_media_row_across_batches(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    arrays = ArrayStore(tmp_path / "arrays")
    log = ProblemList()
    writer = BatchWriter(db, arrays, ["cell"], 4, "labels", log)
    pool = None  # features are given, the pool is not used
    first = writer.write(Chunk([_region(1024, 0), _region(0, 0)], np.zeros((2, 4), "f4"), 2), pool)  # type: ignore[arg-type]
    second = writer.write(Chunk([_region(0, 1024)], np.ones((1, 4), "f4"), 3), pool)  # type: ignore[arg-type]
    assert (first.added, second.added) == (2, 1)
    with db.read() as s:
        items = s.query(Item).order_by(Item.id).all()
        media_ids = {i.media_id for i in items}
        assert len(media_ids) == 1 and None not in media_ids
        (media_id,) = media_ids
        media = get_media(s, media_id)
        assert media is not None and media.kind == "slide" and media.width == 4096
        assert media.properties["objective_power"] == 40
        ordered = [(i.origin_x, i.origin_y) for i in media_items(s, media_id)]
        assert ordered == [(0, 0), (1024, 0), (0, 1024)]  # row by row
        assert {i.scale for i in items} == {2.0}


def test_unknown_media_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown media kind"):
        MediaRecord("u", "audio", "/a.wav", None, 1, 1)
