"""Reading videos with PyAV: properties, frames by step and by index, and unreadable files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from exemplar.data.video_fixture import VideoFixture, build_video_fixture
from exemplar.errors import DatasetError
from exemplar.media.video import iter_frames, probe, read_frames


def test_probe_reports_the_fixture_properties(nuclei_video: VideoFixture) -> None:
    info = probe(nuclei_video.path)
    assert (info.width, info.height, info.n_frames) == (256, 256, 48)
    assert info.fps == pytest.approx(12.0)
    assert info.duration == pytest.approx(4.0)
    assert info.codec == "h264"


def test_iter_frames_steps_and_stops(nuclei_video: VideoFixture) -> None:
    got = list(iter_frames(nuclei_video.path, step=5))
    assert [i for i, _, _ in got] == list(range(0, 48, 5))
    assert [t for _, t, _ in got] == pytest.approx([i / 12 for i in range(0, 48, 5)])
    assert all(rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8 for _, _, rgb in got)
    assert [i for i, _, _ in iter_frames(nuclei_video.path, step=3, max_frames=4)] == [0, 3, 6, 9]


def test_read_frames_gives_the_same_pictures_as_iter_frames(
    nuclei_video: VideoFixture, nuclei_frames: list[np.ndarray]
) -> None:
    got = read_frames(nuclei_video.path, [30, 2, 30, 47])
    assert sorted(got) == [2, 30, 47]
    for index, rgb in got.items():
        assert np.array_equal(rgb, nuclei_frames[index])


def test_decoded_frames_show_the_objects_at_their_ground_truth_boxes(
    nuclei_video: VideoFixture, nuclei_frames: list[np.ndarray]
) -> None:
    for track in nuclei_video.tracks:
        for frame in (0, 20, 47):
            x0, y0, x1, y1 = (int(v) for v in track.boxes[frame])
            grey = nuclei_frames[frame][..., 0].astype(float)
            inside = grey[y0:y1, x0:x1].mean()
            ring = np.concatenate(
                [grey[max(y0 - 6, 0) : y0, x0:x1].ravel(), grey[y1 : y1 + 6, x0:x1].ravel()]
            )
            assert inside > ring.mean() + 40  # a bright nucleus on the dark background


def test_a_frame_past_the_end_is_a_clear_error(nuclei_video: VideoFixture) -> None:
    with pytest.raises(DatasetError, match="no frame 48: it has 48 frames"):
        read_frames(nuclei_video.path, [3, 48])
    with pytest.raises(DatasetError, match="start at 0"):
        read_frames(nuclei_video.path, [-1])


def test_unreadable_files_raise_dataset_error(tmp_path: Path, nuclei_video: VideoFixture) -> None:
    missing = tmp_path / "none.mp4"
    with pytest.raises(DatasetError, match="cannot read the video"):
        probe(missing)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(DatasetError, match="junk.mp4"):
        probe(junk)
    with pytest.raises(DatasetError, match="junk.mp4"):
        list(iter_frames(junk))
    image = tmp_path / "still.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    info = probe(image)  # FFmpeg reads a PNG as a one-frame video
    assert info.n_frames >= 1
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(nuclei_video.path.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="cut.mp4"):
        list(iter_frames(truncated))


def test_the_fixture_is_reproducible_and_documented(tmp_path: Path) -> None:
    a = build_video_fixture(tmp_path / "a.mp4", n_frames=6, objects="synthetic")
    b = build_video_fixture(tmp_path / "b.mp4", n_frames=6, objects="synthetic")
    digest = [hashlib.sha256(v.path.read_bytes()).hexdigest() for v in (a, b)]
    assert digest[0] == digest[1]
    assert a.description.startswith("synthetic blobs")
    assert len(a.tracks) == 3 and all(len(t.boxes) == 6 for t in a.tracks)
    mpeg4 = build_video_fixture(tmp_path / "m.mp4", n_frames=4, codec="mpeg4")
    assert probe(mpeg4.path).codec == "mpeg4"
    assert mpeg4.description == (
        "synthetic motion of real nuclei crops over a real background (mnfinder)"
    )
    with pytest.raises(DatasetError, match="even"):
        build_video_fixture(tmp_path / "x.mp4", size=255)


def _remux(src: Path, dst: Path) -> None:
    """The same stream in another container (Matroska keeps no frame count in its header)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.size:
                packet.stream = copy
                out.mux(packet)


def test_a_container_without_a_frame_count_is_counted(
    tmp_path: Path, nuclei_video: VideoFixture
) -> None:
    mkv = tmp_path / "clip.mkv"
    _remux(nuclei_video.path, mkv)
    info = probe(mkv)
    assert info.n_frames == 48 and info.fps == pytest.approx(12.0)
    assert len(list(iter_frames(mkv))) == 48
