"""The video service: keyframes, interpolation, tracker proposals and finished frames, on a
project that imported the fixture video (real nuclei crops moving with known boxes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from exemplar.data.video_fixture import VideoFixture, build_video_fixture
from exemplar.errors import ExemplarError
from exemplar.project import Project
from exemplar.project.video import (
    INTERPOLATION_VERSION,
    VideoError,
    VideoLeaseError,
    finish_frames,
    interpolate_track,
    propagate_track,
    save_keyframe,
    video_info,
    video_objects,
)
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationError, object_history, revise
from exemplar.store.labels import UnknownClassError
from exemplar.store.queue import enqueue, lease
from exemplar.store.schema import Annotation, Label, Media, QueueEntry, utcnow

N_FRAMES = 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> VideoFixture:
    return build_video_fixture(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=N_FRAMES)


@pytest.fixture
def project(tmp_path: Path, clip: VideoFixture) -> Iterator[Project]:
    with Project.init(
        tmp_path / "p", ["nucleus", "debris"], task="detection", data={"image_side": 32}
    ) as project:
        assert project.import_(clip.path).added == N_FRAMES
        yield project


def _media_id(project: Project) -> int:
    with project.db.read() as s:
        return int(s.scalar(select(Media.id)) or 0)


def _items(project: Project) -> dict[int, int]:
    """frame -> item id"""
    return {f.frame: f.item_id for f in video_info(project, _media_id(project)).frames}


def _rows(project: Project) -> int:
    with project.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Annotation)) or 0)


def test_video_info_lists_the_frames(project: Project) -> None:
    info = video_info(project, _media_id(project))
    assert (info.width, info.height, info.fps, info.n_frames, info.codec) == (
        256,
        256,
        12.0,
        N_FRAMES,
        "h264",
    )
    assert [f.frame for f in info.frames] == list(range(N_FRAMES))
    assert info.frames[6].time == pytest.approx(0.5)
    assert not any(f.labeled or f.keyframe or f.n_objects for f in info.frames)
    with pytest.raises(VideoError, match="no video 999"):
        video_info(project, 999)


def test_keyframes_then_interpolation_box_the_middle_frames(
    project: Project, clip: VideoFixture
) -> None:
    media, items = _media_id(project), _items(project)
    truth = clip.tracks[0].boxes
    first = save_keyframe(project, "ann", items[4], label="nucleus", box=truth[4])
    track = first.track_id
    assert track == first.object_id and first.keyframe is True
    assert (first.status, first.source, first.annotator) == ("verified", "human", "ann")
    second = save_keyframe(project, "ann", items[8], label="nucleus", box=truth[8], track_id=track)
    assert second.track_id == track and second.object_id != first.object_id

    done = interpolate_track(project, "ann", media, track)
    assert (len(done.added), len(done.revised), done.unchanged) == (3, 0, 0)
    by_frame = {o.frame: o.annotation for o in video_objects(project, media)}
    assert sorted(by_frame) == [4, 5, 6, 7, 8]
    middle = by_frame[6]
    expected = (np.add(truth[4], truth[8]) / 2).tolist()
    assert [middle.x0, middle.y0, middle.x1, middle.y1] == pytest.approx(expected)
    assert (middle.status, middle.source, middle.keyframe, middle.track_id) == (
        "verified",
        "human",
        False,
        track,
    )
    # the interpolated boxes follow the real motion between close keyframes
    for frame in (5, 6, 7):
        row = by_frame[frame]
        assert np.abs(np.subtract([row.x0, row.y0, row.x1, row.y1], truth[frame])).max() <= 4
    info = video_info(project, media)
    assert [f.frame for f in info.frames if f.keyframe] == [4, 8]
    assert info.frames[6].n_objects == 1

    # nothing changed: interpolating again writes nothing
    rows = _rows(project)
    again = interpolate_track(project, "ann", media, track)
    assert (len(again.added), len(again.revised), again.unchanged) == (0, 0, 3)
    assert _rows(project) == rows

    # a moved keyframe: the middle objects are revised, never duplicated
    moved = tuple(v + 8 for v in truth[8])
    save_keyframe(project, "ann", items[8], label="nucleus", box=moved, track_id=track)
    third = interpolate_track(project, "ann", media, track)
    assert (len(third.added), len(third.revised)) == (0, 3)
    objects = [o for o in video_objects(project, media) if o.track_id == track]
    assert sorted(o.frame for o in objects) == [4, 5, 6, 7, 8]  # one object per frame
    middle = next(o.annotation for o in objects if o.frame == 6)
    expected = (np.add(truth[4], moved) / 2).tolist()
    assert [middle.x0, middle.y0, middle.x1, middle.y1] == pytest.approx(expected)
    with project.db.read() as s:
        history = object_history(s, middle.object_id)
    assert len(history) == 2 and all(r.track_id == track for r in history)


def test_a_keyframe_by_object_id_moves_that_object(project: Project) -> None:
    items = _items(project)
    first = save_keyframe(project, "ann", items[2], label="nucleus", box=(10, 10, 40, 40))
    moved = save_keyframe(
        project, "ann", items[2], label="debris", box=(12, 10, 42, 40), object_id=first.object_id
    )
    assert moved.object_id == first.object_id and moved.track_id == first.track_id
    assert moved.label == "debris" and moved.keyframe
    with pytest.raises(VideoError, match="belongs to track"):
        save_keyframe(
            project,
            "ann",
            items[2],
            label="nucleus",
            box=(1, 1, 5, 5),
            object_id=first.object_id,
            track_id=first.object_id + 100,
        )


def test_a_retried_keyframe_is_written_once(project: Project) -> None:
    items = _items(project)
    a = save_keyframe(
        project, "ann", items[3], label="nucleus", box=(1, 1, 20, 20), idempotency_key="k-1"
    )
    b = save_keyframe(
        project, "ann", items[3], label="nucleus", box=(1, 1, 20, 20), idempotency_key="k-1"
    )
    assert a.id == b.id and _rows(project) == 1


def test_bad_input_writes_nothing(project: Project) -> None:
    media, items = _media_id(project), _items(project)
    save_keyframe(project, "ann", items[0], label="nucleus", box=(0, 0, 20, 20))
    rows = _rows(project)
    with pytest.raises(UnknownClassError):
        save_keyframe(project, "ann", items[1], label="cat", box=(0, 0, 20, 20))
    with pytest.raises(AnnotationError, match="outside"):
        save_keyframe(project, "ann", items[1], label="nucleus", box=(200, 0, 300, 20))
    with pytest.raises(VideoError, match="no track 4242"):
        save_keyframe(project, "ann", items[1], label="nucleus", box=(0, 0, 9, 9), track_id=4242)
    with pytest.raises(VideoError, match="no track 4242"):
        interpolate_track(project, "ann", media, 4242)
    with pytest.raises(VideoError, match="no object 777"):
        save_keyframe(project, "ann", items[1], label="nucleus", box=(0, 0, 9, 9), object_id=777)
    with pytest.raises(VideoError, match="no item"):
        save_keyframe(project, "ann", 10**6, label="nucleus", box=(0, 0, 9, 9))
    with pytest.raises(VideoError, match="unknown tracker"):
        propagate_track(project, "ann", items[0], 1, frames=3, method="kcf")  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="empty range"):
        finish_frames(project, "ann", media, 5, 2)
    assert _rows(project) == rows
    assert all(isinstance(e, ExemplarError) for e in (VideoError("x"), AnnotationError("y")))


def test_propagate_writes_tracker_proposals(project: Project, clip: VideoFixture) -> None:
    media, items = _media_id(project), _items(project)
    truth = clip.tracks[1].boxes
    start = save_keyframe(project, "ann", items[0], label="nucleus", box=truth[0])
    done = propagate_track(project, "ann", items[0], start.object_id, frames=10, method="template")
    assert len(done.added) == 10 and done.stopped_at is None
    for row in done.added:
        assert (row.status, row.source, row.model_version) == (
            "proposed",
            "model",
            "tracker:template",
        )
        assert row.track_id == start.track_id and row.keyframe is False
        assert row.confidence is not None and 0.5 <= row.confidence <= 1.0
    by_frame = {o.frame: o.annotation for o in video_objects(project, media)}
    for frame in range(1, 11):
        row = by_frame[frame]
        assert np.abs(np.subtract([row.x0, row.y0, row.x1, row.y1], truth[frame])).max() <= 2
    # again: the same boxes, nothing new
    rows = _rows(project)
    again = propagate_track(project, "ann", items[0], start.object_id, frames=10)
    assert (len(again.added), len(again.revised), again.unchanged) == (0, 0, 10)
    assert _rows(project) == rows
    # a person's keyframe on frame 5 stops the tracker there
    save_keyframe(project, "ann", items[5], label="nucleus", box=truth[5], track_id=start.track_id)
    stopped = propagate_track(project, "ann", items[0], start.object_id, frames=10, method="mil")
    assert stopped.stopped_at is not None and stopped.stopped_at <= 5
    assert all(
        items_frame < 5 for items_frame in [_frame_of(project, r.item_id) for r in stopped.revised]
    )


def _frame_of(project: Project, item_id: int) -> int:
    return next(
        f.frame for f in video_info(project, _media_id(project)).frames if f.item_id == item_id
    )


def test_finish_frames_labels_them_and_closes_their_queue_entries(project: Project) -> None:
    media, items = _media_id(project), _items(project)
    with project.db.session() as s:
        enqueue(s, None, [(items[f], "uncertainty", 0.5) for f in (2, 3, 9)])
    leased = lease(project.db, "ann", lease_seconds=600)
    assert leased is not None
    start = save_keyframe(project, "ann", items[1], label="nucleus", box=(100, 100, 130, 125))
    proposals = propagate_track(project, "ann", items[1], start.object_id, frames=3)
    done = finish_frames(project, "ann", media, 0, 4)
    assert (done.frames, done.labeled, done.closed) == (5, 5, 2)
    assert done.rejected == len(proposals.added) and done.accepted == 0
    info = video_info(project, media)
    assert [f.frame for f in info.frames if f.labeled] == [0, 1, 2, 3, 4]
    with project.db.read() as s:
        statuses = dict(s.execute(select(QueueEntry.item_id, QueueEntry.status)).all())
        labels = list(s.scalars(select(Label).order_by(Label.id)))
    assert statuses == {items[2]: "done", items[3]: "done", items[9]: "pending"}
    assert {lab.label for lab in labels} == {OBJECTS_LABEL}
    assert {(lab.source, lab.status, lab.annotator) for lab in labels} == {
        ("human", "verified", "ann")
    }
    assert {lab.strategy for lab in labels if lab.item_id in (items[2], items[3])} == {
        "uncertainty"
    }
    # idempotent
    rows = _rows(project)
    again = finish_frames(project, "ann", media, 0, 4)
    assert (again.labeled, again.closed, again.rejected) == (0, 0, 0)
    assert _rows(project) == rows
    with project.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 5
    with pytest.raises(VideoError, match="no imported frame"):
        finish_frames(project, "ann", media, 500, 600)


def test_finish_frames_can_accept_the_proposals(project: Project) -> None:
    media, items = _media_id(project), _items(project)
    start = save_keyframe(project, "ann", items[10], label="nucleus", box=(100, 100, 130, 125))
    proposals = propagate_track(project, "ann", items[10], start.object_id, frames=2, min_score=-1)
    done = finish_frames(project, "ann", media, 10, 12, accept_proposals=True)
    assert done.accepted == len(proposals.added) == 2
    objects = [o.annotation for o in video_objects(project, media) if 10 < o.frame <= 12]
    assert {(a.status, a.source, a.track_id) for a in objects} == {
        ("verified", "human", start.track_id)
    }


def test_a_track_survives_revisions_that_do_not_repeat_it(project: Project) -> None:
    """A verify through the objects API writes a row without track_id or keyframe: the
    object stays in its track, and interpolation keeps the box a person moved."""
    media, items = _media_id(project), _items(project)
    a = save_keyframe(project, "ann", items[0], label="nucleus", box=(10, 10, 40, 40))
    save_keyframe(
        project, "ann", items[4], label="nucleus", box=(50, 10, 80, 40), track_id=a.track_id
    )
    interpolate_track(project, "ann", media, a.object_id)
    middle = next(o.annotation for o in video_objects(project, media) if o.frame == 2)
    with project.db.session() as s:
        revise(s, middle.object_id, annotator="rev", box=(31, 10, 61, 40), classes=project.classes)
        revise(s, a.object_id, annotator="rev", status="verified", classes=project.classes)
    objects = {o.frame: o for o in video_objects(project, media)}
    assert objects[2].track_id == a.track_id and objects[2].annotation.keyframe is False
    assert objects[0].annotation.keyframe is True
    again = interpolate_track(project, "ann", media, a.track_id)  # type: ignore[arg-type]
    assert (len(again.added), len(again.revised), again.unchanged, again.kept) == (0, 0, 2, 1)
    track = {
        o.frame: o.annotation for o in video_objects(project, media) if o.track_id == a.track_id
    }
    assert len(track) == 5
    assert (track[2].x0, track[2].annotator) == (31, "rev")


def _history(project: Project, object_id: int) -> list[int]:
    """The ids of the object's rows, oldest first."""
    with project.db.read() as s:
        return [r.id for r in object_history(s, object_id)]


def test_reinterpolation_keeps_a_persons_corrections_and_decisions(
    project: Project, clip: VideoFixture
) -> None:
    """Interpolation revises only its own boxes and open proposals: a box a person moved,
    relabeled, verified, rejected or marked a hard negative since stays as they left it."""
    media, items = _media_id(project), _items(project)
    truth = clip.tracks[0].boxes
    k0 = save_keyframe(project, "ann", items[4], label="nucleus", box=truth[4])
    track = k0.track_id
    assert track is not None
    save_keyframe(project, "ann", items[10], label="nucleus", box=truth[10], track_id=track)
    first = interpolate_track(project, "ann", media, track)
    assert (len(first.added), first.kept) == (5, 0)
    assert {r.model_version for r in first.added} == {INTERPOLATION_VERSION}
    by_frame = {_frame_of(project, r.item_id): r for r in first.added}
    with project.db.session() as s:
        # frame 5 rejected, 6 moved and relabeled, 7 verified as it is, 8 a hard negative
        revise(
            s, by_frame[5].object_id, annotator="ann2", status="rejected", classes=project.classes
        )
        revise(
            s,
            by_frame[6].object_id,
            annotator="ann2",
            status="verified",
            label="debris",
            box=(1.0, 1.0, 20.0, 20.0),
            classes=project.classes,
        )
        revise(
            s, by_frame[7].object_id, annotator="rev", status="verified", classes=project.classes
        )
        revise(
            s,
            by_frame[8].object_id,
            annotator="rev",
            status="hard_negative",
            classes=project.classes,
        )
    # the first keyframe moves; re-interpolating revises only frame 9 (still its own box)
    save_keyframe(
        project,
        "ann",
        items[4],
        label="nucleus",
        box=tuple(v + 2 for v in truth[4]),
        object_id=k0.object_id,
    )
    before = {f: _history(project, by_frame[f].object_id) for f in (5, 6, 7, 8)}
    again = interpolate_track(project, "ann", media, track)
    assert (len(again.added), len(again.revised), again.unchanged, again.kept) == (0, 1, 0, 4)
    assert _frame_of(project, again.revised[0].item_id) == 9
    assert again.revised[0].model_version == INTERPOLATION_VERSION
    for frame, history in before.items():
        assert _history(project, by_frame[frame].object_id) == history, frame
    now = {o.frame: o.annotation for o in video_objects(project, media) if o.track_id == track}
    assert now[5].status == "rejected" and now[8].status == "hard_negative"
    assert (now[6].label, now[6].x0, now[6].annotator) == ("debris", 1.0, "ann2")
    assert (now[7].status, now[7].annotator) == ("verified", "rev")
    # a third time: frame 9 is already right, the person's four are kept again
    third = interpolate_track(project, "ann", media, track)
    assert (len(third.added), len(third.revised), third.unchanged, third.kept) == (0, 0, 1, 4)


def test_interpolation_replaces_the_trackers_open_proposals(project: Project) -> None:
    media, items = _media_id(project), _items(project)
    start = save_keyframe(project, "ann", items[12], label="nucleus", box=(100, 100, 130, 125))
    proposed = propagate_track(project, "ann", items[12], start.object_id, frames=2, min_score=-1)
    assert len(proposed.added) == 2
    track = start.track_id
    assert track is not None
    save_keyframe(
        project, "ann", items[16], label="nucleus", box=(112, 100, 142, 125), track_id=track
    )
    done = interpolate_track(project, "ann", media, track)
    assert (len(done.added), len(done.revised), done.kept) == (1, 2, 0)
    rows = {o.frame: o.annotation for o in video_objects(project, media) if o.track_id == track}
    assert [(rows[f].status, rows[f].source, rows[f].x0) for f in (13, 14)] == [
        ("verified", "human", 103.0),
        ("verified", "human", 106.0),
    ]


def _lease_frame(project: Project, item_id: int, annotator: str) -> int:
    """Queue ``item_id`` and lease it to ``annotator``; its queue entry id."""
    with project.db.session() as s:
        enqueue(s, None, [(item_id, "uncertainty", 0.9)])
    leased = lease(project.db, annotator, lease_seconds=600)
    assert leased is not None and leased.item_id == item_id
    return leased.entry_id


def _entries(project: Project) -> dict[int, tuple[str, str | None]]:
    with project.db.read() as s:
        return {
            int(i): (str(st), a)
            for i, st, a in s.execute(
                select(QueueEntry.item_id, QueueEntry.status, QueueEntry.annotator)
            )
        }


def test_writes_refuse_frames_leased_to_another_annotator(project: Project) -> None:
    media, items = _media_id(project), _items(project)
    mine = save_keyframe(project, "ann", items[3], label="nucleus", box=(10, 10, 40, 40))
    _lease_frame(project, items[3], "ann")
    with project.db.session() as s:
        enqueue(s, None, [(items[4], "uncertainty", 0.1)])  # pending: anyone's to label
    a = save_keyframe(project, "ann2", items[1], label="nucleus", box=(10, 10, 40, 40))
    assert a.track_id is not None
    rows, entries = _rows(project), _entries(project)

    refused = "'ann2' may not change objects on frames leased to another annotator: frame 3"
    with pytest.raises(VideoLeaseError, match=refused):
        save_keyframe(project, "ann2", items[3], label="debris", box=(0, 0, 5, 5))
    with pytest.raises(VideoLeaseError, match=refused):
        save_keyframe(
            project,
            "ann2",
            items[3],
            label="debris",
            box=(0, 0, 5, 5),
            object_id=mine.object_id,
        )
    with pytest.raises(VideoLeaseError, match=rf"{refused} \(item {items[3]}\) to 'ann'"):
        propagate_track(project, "ann2", items[1], a.object_id, frames=4, min_score=-1)
    assert _rows(project) == rows
    save_keyframe(
        project, "ann2", items[5], label="nucleus", box=(20, 10, 50, 40), track_id=a.track_id
    )
    rows = _rows(project)
    with pytest.raises(VideoLeaseError, match=refused):
        interpolate_track(project, "ann2", media, a.track_id)
    with pytest.raises(VideoLeaseError, match="may not finish frames .* frame 3 .* to 'ann'"):
        finish_frames(project, "ann2", media, 0, 6)
    assert _rows(project) == rows and _entries(project) == entries
    assert not any(f.labeled for f in video_info(project, media).frames)

    # the holder may, and so may a reviewer or admin (may_override)
    assert (
        save_keyframe(
            project,
            "ann",
            items[3],
            label="nucleus",
            box=(11, 10, 41, 40),
            object_id=mine.object_id,
        ).annotator
        == "ann"
    )
    done = interpolate_track(project, "rev", media, a.track_id, may_override=True)
    assert len(done.added) == 3
    # a frame only queued (pending) is labeled and closed by anyone; the lease stays open
    save_keyframe(project, "ann2", items[4], label="nucleus", box=(30, 30, 60, 60))
    finished = finish_frames(project, "ann2", media, 4, 6)
    assert (finished.labeled, finished.closed) == (3, 1)
    assert _entries(project) == {items[3]: ("leased", "ann"), items[4]: ("done", None)}
    # the holder finishes its own frame
    own = finish_frames(project, "ann", media, 3, 3)
    assert (own.labeled, own.closed) == (1, 1)
    assert _entries(project)[items[3]] == ("done", "ann")


def test_an_expired_lease_refuses_nothing(project: Project) -> None:
    media, items = _media_id(project), _items(project)
    entry = _lease_frame(project, items[2], "ann")
    with project.db.session() as s:
        row = s.get(QueueEntry, entry)
        assert row is not None
        row.lease_expires = utcnow() - timedelta(seconds=1)
    done = finish_frames(project, "ann2", media, 2, 2)
    assert (done.labeled, done.closed) == (1, 1)
