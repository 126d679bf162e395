"""``exemplar video``: list, info, keyframe, interpolate, track and done on an imported clip."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data.video_fixture import build_video_fixture
from exemplar.project import Project
from exemplar.project.video import video_objects

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
