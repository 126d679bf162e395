"""Linear interpolation between keyframes, and the template and MIL trackers on the fixture
video (real nuclei crops moving with known boxes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from exemplar.data.video_fixture import VideoFixture
from exemplar.media.tracking import TrackingError, interpolate_boxes, track_boxes


def test_interpolation_is_exact_at_keyframes_and_midpoints() -> None:
    keys = {10: (0, 0, 10, 10), 20: (10, 20, 30, 40), 24: (10, 20, 30, 40)}
    got = interpolate_boxes(keys, range(30))
    assert sorted(got) == list(range(10, 25))  # nothing outside the keyframes' span
    assert got[10] == (0, 0, 10, 10)
    assert got[20] == (10, 20, 30, 40)
    assert got[15] == pytest.approx((5, 10, 20, 25))
    assert got[12] == pytest.approx((2, 4, 14, 16))
    assert got[22] == (10, 20, 30, 40)  # a still object stays still


def test_interpolation_only_gives_the_frames_asked_for() -> None:
    got = interpolate_boxes({0: (0, 0, 4, 4), 8: (8, 0, 12, 4)}, [2, 8, 9])
    assert got == {2: (2.0, 0.0, 6.0, 4.0), 8: (8.0, 0.0, 12.0, 4.0)}
    assert interpolate_boxes({}, [1, 2]) == {}
    assert interpolate_boxes({5: (1, 1, 2, 2)}, [4, 5, 6]) == {5: (1.0, 1.0, 2.0, 2.0)}
    with pytest.raises(TrackingError, match="keyframe 3"):
        interpolate_boxes({3: (5, 5, 1, 1)}, [3])


def test_interpolation_follows_the_fixture_between_close_keyframes(
    nuclei_video: VideoFixture,
) -> None:
    truth = nuclei_video.tracks[0].boxes
    keys = {f: truth[f] for f in range(0, 48, 4)}
    got = interpolate_boxes(keys, range(48))
    errors = [np.abs(np.subtract(got[f], truth[f])).max() for f in range(45)]
    assert max(errors) <= 4.0  # linear motion between bounces, small vertical wobble


def _errors(result: Sequence[tuple[int, tuple[float, ...], float]], truth: tuple) -> list[float]:
    return [float(np.abs(np.subtract(box, truth[i])).max()) for i, box, _ in result]


def test_template_tracker_follows_every_object(
    nuclei_video: VideoFixture, nuclei_frames: list[np.ndarray]
) -> None:
    for track in nuclei_video.tracks:
        result = track_boxes(nuclei_frames, track.boxes[0], "template", min_score=0.5)
        assert [i for i, _, _ in result] == list(range(1, 48))
        assert max(_errors(result, track.boxes)) <= 2.0
        assert all(0.5 <= s <= 1.0 for _, _, s in result)


def test_template_tracker_starts_from_any_frame(
    nuclei_video: VideoFixture, nuclei_frames: list[np.ndarray]
) -> None:
    truth = nuclei_video.tracks[1].boxes
    result = track_boxes(nuclei_frames[20:30], truth[20], "template")
    assert [i for i, _, _ in result] == list(range(1, 10))
    assert max(_errors(result, truth[20:30])) <= 2.0


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_mil_tracker_follows_an_object(
    nuclei_video: VideoFixture, nuclei_frames: list[np.ndarray]
) -> None:
    """MIL samples at random (OpenCV takes no seed for it), so its boxes vary between runs:
    over 60 runs on this object, the mean IoU with the truth was at least 0.51, the worst
    frame's IoU at least 0.17 and the median error at most 9 px. The bounds leave room."""
    track = nuclei_video.tracks[2]
    result = track_boxes(nuclei_frames[:24], track.boxes[0], "mil", min_score=-1.0)
    assert [i for i, _, _ in result] == list(range(1, 24))
    overlaps = [_iou(box, track.boxes[i]) for i, box, _ in result]
    assert min(overlaps) > 0.05 and float(np.mean(overlaps)) >= 0.35
    assert float(np.median(_errors(result, track.boxes))) <= 12.0


def test_tracking_stops_when_the_object_is_gone(
    nuclei_video: VideoFixture, nuclei_frames: list[np.ndarray]
) -> None:
    truth = nuclei_video.tracks[0].boxes
    frames = [f.copy() for f in nuclei_frames[:12]]
    for f in frames[6:]:  # the object vanishes from frame 6 on: a flat frame stays
        f[:, :, :] = np.median(nuclei_frames[0])
    result = track_boxes(frames, truth[0], "template", min_score=0.5)
    assert [i for i, _, _ in result] == [1, 2, 3, 4, 5]
    result = track_boxes(frames, truth[0], "mil", min_score=0.3)
    assert len(result) <= 5


def test_tracking_stops_at_the_frame_edge() -> None:
    frames = []
    for t in range(10):  # a textured square moving 6 px per frame towards the right edge
        frame = np.zeros((64, 64), np.uint8)
        x = 40 + 6 * t
        patch = (np.indices((12, 12)).sum(axis=0) % 5 * 50).astype(np.uint8)
        visible = max(0, min(12, 64 - x))
        frame[20:32, x : x + visible] = patch[:, :visible]
        frames.append(frame)
    result = track_boxes(frames, (40, 20, 52, 32), "template", min_score=0.5)
    assert 1 <= len(result) <= 3
    assert all(box[2] <= 64 for _, box, _ in result)


def test_bad_tracker_input_is_a_clear_error(nuclei_frames: list[np.ndarray]) -> None:
    with pytest.raises(TrackingError, match="unknown tracker"):
        track_boxes(nuclei_frames[:2], (0, 0, 10, 10), "csrt")  # type: ignore[arg-type]
    with pytest.raises(TrackingError, match="smaller than 4 px"):
        track_boxes(nuclei_frames[:2], (0, 0, 2, 10))
    with pytest.raises(TrackingError, match="not inside"):
        track_boxes(nuclei_frames[:2], (250, 0, 270, 10))
    with pytest.raises(TrackingError, match="frame 1 is"):
        track_boxes([nuclei_frames[0], nuclei_frames[1][:100]], (0, 0, 10, 10))
    assert track_boxes([], (0, 0, 10, 10)) == []
