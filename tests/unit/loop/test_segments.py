"""Active learning over video frames: one frame per segment in a batch while segments last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exemplar.errors import StrategyError
from exemplar.loop.segments import frame_segments, one_per_segment, spread_picks
from exemplar.loop.selection import pick_batch
from exemplar.predictions import Predictions
from exemplar.project import Project
from exemplar.store.schema import Item, Media
from exemplar.strategies.registry import get_strategy


def test_one_per_segment_takes_each_segments_best_first() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.5])
    segments = np.array([0, 0, 0, 1, 2, 2])
    assert one_per_segment(scores, segments, 3).tolist() == [0, 4, 3]
    # then fills with the best of the rest
    assert one_per_segment(scores, segments, 5).tolist() == [0, 4, 3, 1, 2]
    assert one_per_segment(scores, segments, 99).tolist() == [0, 4, 3, 1, 2, 5]
    assert one_per_segment(scores, segments, 0).tolist() == []


def test_one_per_segment_ranks_nan_last_and_keeps_ties_in_order() -> None:
    scores = np.array([np.nan, 0.5, 0.5, 0.1])
    segments = np.array([7, 8, 9, 7])
    assert one_per_segment(scores, segments, 4).tolist() == [1, 2, 3, 0]
    with pytest.raises(StrategyError, match="aligned"):
        one_per_segment(scores, segments[:2], 2)


def test_spread_picks_keeps_the_strategys_order_where_segments_allow() -> None:
    pool = np.array([10, 11, 12, 13, 14, 15])
    segments = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.3, 0.2])
    # the strategy picked rows 11, 12, 13 (two of segment 0)
    rows = spread_picks(np.array([11, 12, 13]), pool, scores, segments, 3)
    assert rows.tolist() == [11, 13, 15]


def test_pick_batch_with_segments_spreads_a_run_of_similar_frames() -> None:
    n = 40
    pool = np.arange(n)
    # uncertainty peaks on frames 10-19 of one video: without segments they fill the batch
    p = np.full(n, 0.95)
    p[10:20] = np.linspace(0.5, 0.6, 10)
    proba = np.stack([p, 1 - p], axis=1)
    predictions = Predictions(proba=proba)
    strategy = get_strategy("least_confidence")
    plain = pick_batch(
        predictions, strategy, pool, np.array([], np.int64), None, batch_size=4, seed=0
    )
    assert all(10 <= p.row < 20 for p in plain)
    segments = pool // 5  # segments of five frames
    spread = pick_batch(
        predictions,
        strategy,
        pool,
        np.array([], np.int64),
        None,
        batch_size=4,
        seed=0,
        segments=segments,
    )
    rows = [p.row for p in spread]
    assert len({r // 5 for r in rows}) == 4
    assert rows[:2] == [10, 15]  # the best frame of each uncertain segment first
    assert all(p.strategy == "least_confidence" and p.score is not None for p in spread)


def test_frame_segments_reads_media_and_frames(tmp_path: Path) -> None:
    with Project.init(tmp_path / "p", ["a", "b"]) as project:
        with project.db.session() as s:
            s.add(Media(id=1, uid="v1", kind="video", uri="/v.mp4", width=8, height=8))
            s.add(Media(id=2, uid="v2", kind="video", uri="/w.mp4", width=8, height=8))
            s.flush()
            for i, (media, frame) in enumerate([(1, 0), (1, 9), (1, 10), (2, 3), (None, None)]):
                s.add(
                    Item(
                        id=i + 1,
                        uid=f"u{i}",
                        row=i,
                        uri=f"/f{i}.jpg",
                        kind="image",
                        media_id=media,
                        frame=frame,
                    )
                )
        with project.db.read() as s:
            segments = frame_segments(s, [1, 2, 3, 4, 5], 10)
            with pytest.raises(StrategyError, match="at least 1"):
                frame_segments(s, [1], 0)
    assert segments[0] == segments[1] != segments[2]
    assert segments[3] not in segments[:3] and segments[4] < 0
