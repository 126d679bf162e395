"""The loop on video frames: a detector trained on finished frames pre-annotates the frames
it queues (the model's proposals, as on any image), and the annotator's video tools work
on them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from exemplar.data.video_fixture import build_video_fixture
from exemplar.project import Project
from exemplar.project.video import finish_frames, save_keyframe, video_info
from exemplar.store.annotations import current_annotations
from exemplar.store.schema import Media, QueueEntry


def test_the_loop_proposes_boxes_on_the_frames_it_queues(tmp_path: Path) -> None:
    clip = build_video_fixture(tmp_path / "clip.mp4", n_frames=24, size=128, n_objects=2)
    with Project.init(
        tmp_path / "p",
        ["nucleus"],
        task="detection",
        oracle={"kind": "human"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet", "params": {"epochs": 2}}],
            "proposal_threshold": 0.0,
        },
        selection={"batch_size": 3, "initial_size": 4},
        stopping={"criteria": [{"name": "label_budget", "budget": 20}]},
    ) as project:
        assert project.import_(clip.path).added == 24
        with project.db.read() as s:
            media_id = int(s.scalar(select(Media.id)) or 0)
        frames = {f.frame: f.item_id for f in video_info(project, media_id).frames}
        for frame in range(0, 24, 3):  # a person boxes every third frame and finishes it
            for track in clip.tracks:
                save_keyframe(
                    project, "ann", frames[frame], label="nucleus", box=track.boxes[frame]
                )
            finish_frames(project, "ann", media_id, frame, frame)
        outcome = project.run(max_cycles=1)
        assert outcome.status == "waiting"
        with project.db.read() as s:
            queued = list(s.scalars(select(QueueEntry.item_id)))
            proposals = current_annotations(s, queued, statuses=("proposed",))
        assert len(queued) == 3
        assert all(frames_item in frames.values() for frames_item in queued)
        assert {a.item_id for a in proposals} == set(queued)  # every queued frame pre-annotated
        assert {(a.source, a.label) for a in proposals} == {("model", "nucleus")}
        assert all(
            a.model_version and not a.model_version.startswith("tracker:") for a in proposals
        )
        info = {f.item_id: f for f in video_info(project, media_id).frames}
        assert all(info[i].n_proposals > 0 and not info[i].labeled for i in queued)
