"""Importing a video as frames: one image item per kept frame, written as a JPEG under the
project's media folder, with the video's media row; importing it again adds nothing."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exemplar.data.video_fixture import VideoFixture, build_video_fixture
from exemplar.errors import DatasetError
from exemplar.project import Project
from exemplar.sources.base import ProblemList, SourceOptions
from exemplar.sources.features import grey_features
from exemplar.sources.video import VideoSource, video_uid
from exemplar.store.media import media_items
from exemplar.store.schema import Item, Media


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> VideoFixture:
    return build_video_fixture(tmp_path_factory.mktemp("video") / "clip.mp4", n_frames=20)


def _rows(images: Sequence[np.ndarray]) -> np.ndarray:
    return grey_features(images, 8)


def test_the_source_writes_every_nth_frame_once(tmp_path: Path, video: VideoFixture) -> None:
    log = ProblemList()
    options = SourceOptions(frame_step=3, media_dir=tmp_path / "media")
    source = VideoSource(video.path, options, _rows, 64, log)
    assert source.total == 7 and source.media.kind == "video"
    assert source.media.properties == {
        "fps": 12.0,
        "n_frames": 20,
        "duration": pytest.approx(20 / 12),
        "codec": "h264",
        "frame_step": 3,
    }
    with ThreadPoolExecutor(2) as pool:
        chunks = list(source.chunks(4, pool))
        records = [r for c in chunks for r in c.records]
        assert [c.progress for c in chunks] == [4, 7]
        assert [r.frame for r in records] == [0, 3, 6, 9, 12, 15, 18]
        folder = tmp_path / "media" / f"video-{video_uid(video.path)[:12]}"
        assert sorted(p.name for p in folder.iterdir()) == [
            f"frame-{i:06d}.jpg" for i in range(0, 20, 3)
        ]
        assert all(Path(r.uri) == (folder / f"frame-{r.frame:06d}.jpg").resolve() for r in records)
        assert all((r.width, r.height, r.kind) == (256, 256, "image") for r in records)
        featurize = chunks[0].featurize
        assert featurize is not None
        done, X = featurize(chunks[0].records, pool)
        assert done == [0, 1, 2, 3] and X.shape == (4, 64) and X.dtype == np.float32
        stamps = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
        again = [
            r
            for c in VideoSource(video.path, options, _rows, 64, log).chunks(4, pool)
            for r in c.records
        ]
    assert [r.uid for r in again] == [r.uid for r in records]
    assert [r.file_id for r in again] == [r.file_id for r in records]  # files left alone
    assert stamps == {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert not log.problems
    with Image.open(records[2].uri) as im:  # the frame as decoded, JPEG at quality 95
        assert im.format == "JPEG" and im.size == (256, 256)


def test_importing_a_video_into_a_project_adds_frames_once(
    tmp_path: Path, video: VideoFixture
) -> None:
    with Project.init(
        tmp_path / "p", ["nucleus"], task="detection", data={"image_side": 64, "frame_step": 2}
    ) as project:
        report = project.import_(video.path)
        assert report.added == 10
        with project.db.read() as s:
            media = s.query(Media).one()
            frames = media_items(s, media.id)
            assert media.kind == "video" and media.uri == str(video.path.resolve())
            assert (media.width, media.height) == (256, 256)
            assert media.properties["frame_step"] == 2
            assert [i.frame for i in frames] == list(range(0, 20, 2))
            assert all(Path(i.uri).is_relative_to(project.root / "media") for i in frames)
            assert all(i.kind == "image" and i.width == 256 for i in frames)
        again = project.import_(video.path)
        assert again.added == 0 and again.duplicates == 10
        with project.db.read() as s:
            assert s.query(Item).count() == 10 and s.query(Media).count() == 1


def test_unreadable_videos_are_clear_errors(tmp_path: Path, video: VideoFixture) -> None:
    options = SourceOptions(media_dir=tmp_path / "media")
    log = ProblemList()
    with pytest.raises(DatasetError, match="cannot read the video"):
        VideoSource(tmp_path / "none.mp4", options, _rows, 64, log)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(DatasetError, match="junk.mp4"):
        VideoSource(junk, options, _rows, 64, log)
    with pytest.raises(DatasetError, match="frame_step"):
        VideoSource(video.path, SourceOptions(frame_step=0, media_dir=tmp_path), _rows, 64, log)
    with pytest.raises(DatasetError, match="folder for its frames"):
        VideoSource(video.path, SourceOptions(), _rows, 64, log)
    assert not (tmp_path / "media").exists()


def test_a_cut_off_video_keeps_the_frames_before_the_cut(
    tmp_path: Path, video: VideoFixture
) -> None:
    import av

    mkv = tmp_path / "clip.mkv"  # Matroska streams: a cut file still opens
    with av.open(str(video.path)) as inp, av.open(str(mkv), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.size:
                packet.stream = copy
                out.mux(packet)
    data = mkv.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 9 // 10])
    log = ProblemList()
    source = VideoSource(cut, SourceOptions(media_dir=tmp_path / "m"), _rows, 64, log)
    with ThreadPoolExecutor(1) as pool:
        records = [r for c in source.chunks(8, pool) for r in c.records]
    assert 0 < len(records) < 20
    assert [r.frame for r in records] == list(range(len(records)))
