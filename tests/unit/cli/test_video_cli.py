"""``exemplar video``: list, info, keyframe, interpolate, track and done on an imported clip."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data.video_fixture import build_video_fixture
from exemplar.project import Project
from exemplar.project.video import video_info, video_objects
from exemplar.store.annotations import revise
from exemplar.store.queue import enqueue, lease
from exemplar.store.schema import QueueEntry

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_clip_labeled_from_the_command_line(tmp_path: Path) -> None:
    clip = build_video_fixture(tmp_path / "clip.mp4", n_frames=10)
    root = tmp_path / "p"
    with Project.init(root, ["nucleus"], task="detection", data={"image_side": 32}) as project:
        assert project.import_(clip.path).added == 10
    p = ["-p", str(root)]
    videos = json.loads(_run("video", "list", *p, "--json"))
    assert [(v["media_id"], v["imported"]) for v in videos] == [(1, 10)]
    truth = clip.tracks[0].boxes
    box = ",".join(f"{v:g}" for v in truth[0])
    first = json.loads(
        _run(
            "video",
            "keyframe",
            "1",
            "--frame",
            "0",
            "--label",
            "nucleus",
            "--box",
            box,
            *p,
            "--json",
        )
    )
    track = str(first["track_id"])
    box = ",".join(f"{v:g}" for v in truth[4])
    second = json.loads(
        _run(
            "video",
            "keyframe",
            "1",
            "--frame",
            "4",
            "--label",
            "nucleus",
            "--box",
            box,
            "--track",
            track,
            *p,
            "--json",
        )
    )
    out = _run("video", "interpolate", "1", track, *p, "--user", "ann")
    assert "3 box(es) added, 0 revised" in out
    tracked = json.loads(
        _run(
            "video",
            "track",
            "1",
            "--frame",
            "4",
            "--object",
            str(second["object_id"]),
            "--frames",
            "3",
            *p,
            "--json",
        )
    )
    assert tracked["added"] == 3
    info = json.loads(_run("video", "info", "1", *p, "--json"))
    assert [f["frame"] for f in info["frames"] if f["keyframe"]] == [0, 4]
    assert [f["n_proposals"] for f in info["frames"]][5:8] == [1, 1, 1]
    done = json.loads(
        _run("video", "done", "1", "--first", "0", "--last", "7", "--accept", *p, "--json")
    )
    assert (done["labeled"], done["accepted"]) == (8, 3)
    assert "frame" in _run("video", "info", "1", *p)
    with Project.open(root) as project:
        statuses = {o.frame: o.annotation.status for o in video_objects(project, 1)}
    assert statuses == dict.fromkeys(range(8), "verified")
    bad = runner.invoke(
        app,
        ["video", "keyframe", "1", "--frame", "99", "--label", "nucleus", "--box", "1,1,5,5", *p],
    )
    assert bad.exit_code == 2 and "no imported frame 99" in bad.output
    bad = runner.invoke(
        app, ["video", "keyframe", "1", "--frame", "1", "--label", "nucleus", "--box", "1,1", *p]
    )
    assert bad.exit_code == 2 and "x0,y0,x1,y1" in bad.output


def test_the_cli_acts_as_the_owner_on_leased_frames(tmp_path: Path) -> None:
    """The CLI may finish a frame an annotator leased (the server refuses that to other
    annotators), and says when interpolation kept a person's correction."""
    clip = build_video_fixture(tmp_path / "clip.mp4", n_frames=6)
    root = tmp_path / "p"
    with Project.init(root, ["nucleus"], task="detection", data={"image_side": 32}) as project:
        assert project.import_(clip.path).added == 6
        items = {f.frame: f.item_id for f in video_info(project, 1).frames}
        with project.db.session() as s:
            enqueue(s, None, [(items[2], "test", 0.5)])
        assert lease(project.db, "ann", lease_seconds=600) is not None
    p = ["-p", str(root), "--user", "owner"]
    first = json.loads(
        _run(
            "video",
            "keyframe",
            "1",
            "--frame",
            "0",
            "--label",
            "nucleus",
            "--box",
            "10,10,40,40",
            *p,
            "--json",
        )
    )
    track = str(first["track_id"])
    _run(
        "video",
        "keyframe",
        "1",
        "--frame",
        "4",
        "--label",
        "nucleus",
        "--box",
        "30,10,60,40",
        "--track",
        track,
        *p,
    )
    assert "3 box(es) added" in _run("video", "interpolate", "1", track, *p)
    with Project.open(root) as project:
        middle = next(o.annotation for o in video_objects(project, 1) if o.frame == 2)
        with project.db.session() as s:
            revise(s, middle.object_id, annotator="ann", box=(1, 1, 9, 9), classes=project.classes)
    _run(
        "video",
        "keyframe",
        "1",
        "--frame",
        "4",
        "--label",
        "nucleus",
        "--box",
        "32,10,62,40",
        "--track",
        track,
        *p,
    )
    out = _run("video", "interpolate", "1", track, *p)
    assert "2 revised" in out and "1 kept" in out, out
    done = json.loads(_run("video", "done", "1", "--first", "0", "--last", "5", *p, "--json"))
    assert (done["labeled"], done["closed"]) == (6, 1)
    with Project.open(root) as project, project.db.read() as s:
        assert list(s.scalars(select(QueueEntry.status))) == ["done"]
