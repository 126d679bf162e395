"""The loop on video frames with ``[data] segment_frames``: a batch takes one frame per
segment while segments last, and a queued frame keeps a person's tracker proposals."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from exemplar.project import Project
from exemplar.store.schema import Item, QueueEntry

pytest.importorskip("av")


def test_a_batch_takes_one_frame_per_segment(tmp_path: Path) -> None:
    from exemplar.data.video_fixture import build_video_fixture

    clip = build_video_fixture(tmp_path / "clip.mp4", n_frames=24, size=96, n_objects=1)
    with Project.init(
        tmp_path / "p",
        ["nucleus"],
        task="detection",
        oracle={"kind": "human"},
        data={"image_side": 32, "segment_frames": 6},
        selection={"batch_size": 4, "initial_size": 4},
        stopping={"criteria": [{"name": "label_budget", "budget": 20}]},
    ) as project:
        assert project.import_(clip.path).added == 24
        assert project.run(max_cycles=1).status == "waiting"
        with project.db.read() as s:
            frames = sorted(
                int(f)
                for f in s.scalars(
                    select(Item.frame).join(QueueEntry, QueueEntry.item_id == Item.id)
                )
            )
    assert len(frames) == 4 and sorted(f // 6 for f in frames) == [0, 1, 2, 3], frames
