"""Video commands: ``exemplar video list|info|keyframe|interpolate|track|done``.

Thin views over :mod:`exemplar.project.video`, the service the server's video API calls too
(docs/video.md): a video is imported with ``exemplar import clip.mp4`` (every
``--frame-step``-th frame an item); these commands read its frames and objects, place a
keyframe box, interpolate a track between its keyframes, follow an object with a tracker
(its boxes become proposals) and mark frames done. The CLI acts as the project's owner:
its writes may change or finish frames that annotators hold leases on (the server refuses
that to annotators).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from exemplar.cli.common import app, console, one_line_errors
from exemplar.errors import UsageError

if TYPE_CHECKING:
    from exemplar.project import Project
    from exemplar.project.video import TrackWrite

__all__ = ["video_app"]

ProjectDir = Annotated[
    Path, typer.Option("--project", "-p", help="The project folder (default: the current one).")
]
User = Annotated[
    str, typer.Option("--user", help="Your name, recorded with each box (default: login name).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
MediaId = Annotated[int, typer.Argument(help="The video's media id (see `exemplar video list`).")]

video_app = typer.Typer(
    name="video",
    help="Label a video from keyframes: interpolate tracks, propagate with a tracker, "
    "mark frames done.\n\n"
    "\b\n"
    "exemplar video list -p DIR                       the project's videos\n"
    "exemplar video info 3 -p DIR                     frames, keyframes, labeled frames\n"
    "exemplar video keyframe 3 --frame 0 --label cell --box 10,10,40,40\n"
    "exemplar video interpolate 3 TRACK               boxes between keyframes\n"
    "exemplar video track 3 --frame 0 --object 17 --frames 10   tracker proposals\n"
    "exemplar video done 3 --first 0 --last 47        frames labeled",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(video_app)


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@contextmanager
def _opened(root: Path) -> Iterator[Project]:
    from exemplar.project import Project

    with Project.open(root) as proj:
        yield proj


def _item_of(proj: Project, media_id: int, frame: int) -> int:
    from exemplar.project.video import video_info

    for f in video_info(proj, media_id).frames:
        if f.frame == frame:
            return f.item_id
    raise UsageError(f"video {media_id} has no imported frame {frame}")


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--box must be x0,y0,x1,y1 (four numbers), got {text!r}") from None
    return (x0, y0, x1, y1)


def _print_write(done: TrackWrite, as_json: bool) -> None:
    data: dict[str, Any] = {
        "track_id": done.track_id,
        "added": len(done.added),
        "revised": len(done.revised),
        "unchanged": done.unchanged,
        "kept": done.kept,
        "stopped_at": done.stopped_at,
    }
    if as_json:
        console.print_json(json.dumps(data))
        return
    line = (
        f"track {done.track_id}: {data['added']} box(es) added, {data['revised']} revised, "
        f"{done.unchanged} unchanged"
    )
    if done.kept:
        line += f", {done.kept} kept (a person's correction or decision)"
    if done.stopped_at is not None:
        line += f"; stopped at frame {done.stopped_at}"
    console.print(line, highlight=False)


@video_app.command("list")
@one_line_errors
def list_videos(project: ProjectDir = Path("."), as_json: AsJson = False) -> None:
    """The project's videos: media id, file, size, frames imported and labeled."""
    from exemplar.project.video import list_videos as video_list

    with _opened(project) as proj:
        found = [v.__dict__ for v in video_list(proj)]
    if as_json:
        console.print_json(json.dumps(found))
        return
    if not found:
        console.print("no videos: import one with `exemplar import clip.mp4`")
        return
    table = Table("media", "file", "size", "fps", "frames", "imported", "labeled")
    for v in found:
        table.add_row(
            str(v["media_id"]),
            str(v["uri"]),
            f"{v['width']}x{v['height']}",
            f"{v['fps']:g}" if v["fps"] else "-",
            str(v["n_frames"]),
            str(v["imported"]),
            str(v["labeled"]),
        )
    console.print(table)


@video_app.command("info")
@one_line_errors
def info(media_id: MediaId, project: ProjectDir = Path("."), as_json: AsJson = False) -> None:
    """A video's properties and frames: keyframes, objects, proposals, labeled."""
    from exemplar.project.video import video_info

    with _opened(project) as proj:
        view = video_info(proj, media_id)
    if as_json:
        data = {**view.__dict__, "frames": [f.__dict__ for f in view.frames]}
        console.print_json(json.dumps(data))
        return
    console.print(
        f"video {view.media_id}: {view.uri}\n{view.width}x{view.height}, {view.n_frames} "
        f"frame(s) at {view.fps:g} fps ({view.codec}), {view.duration:.2f} s; "
        f"{len(view.frames)} imported (every {view.frame_step})",
        highlight=False,
    )
    table = Table("frame", "time", "item", "keyframe", "objects", "proposals", "labeled")
    for f in view.frames:
        table.add_row(
            str(f.frame),
            f"{f.time:.2f}",
            str(f.item_id),
            "yes" if f.keyframe else "",
            str(f.n_objects),
            str(f.n_proposals),
            "yes" if f.labeled else "",
        )
    console.print(table)


@video_app.command("keyframe")
@one_line_errors
def keyframe(
    media_id: MediaId,
    frame: Annotated[int, typer.Option(help="The frame index.")],
    label: Annotated[str, typer.Option(help="The object's class.")],
    box: Annotated[str, typer.Option(help="x0,y0,x1,y1 in pixels.")],
    track: Annotated[int | None, typer.Option(help="Add to this track (default: new).")] = None,
    project: ProjectDir = Path("."),
    user: User = "",
    as_json: AsJson = False,
) -> None:
    """Place a person's box on a keyframe (a new track, or a track's box on this frame)."""
    from exemplar.project.video import save_keyframe

    with _opened(project) as proj:
        row = save_keyframe(
            proj,
            user or _default_user(),
            _item_of(proj, media_id, frame),
            label=label,
            box=_box(box),
            track_id=track,
            may_override=True,
        )
    data = {"object_id": row.object_id, "track_id": row.track_id, "frame": frame}
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(
            f"keyframe {frame}: object {row.object_id} on track {row.track_id}", highlight=False
        )


@video_app.command("interpolate")
@one_line_errors
def interpolate(
    media_id: MediaId,
    track: Annotated[int, typer.Argument(help="The track id.")],
    project: ProjectDir = Path("."),
    user: User = "",
    as_json: AsJson = False,
) -> None:
    """Linear boxes on every imported frame between consecutive keyframes of a track."""
    from exemplar.project.video import interpolate_track

    with _opened(project) as proj:
        done = interpolate_track(proj, user or _default_user(), media_id, track, may_override=True)
    _print_write(done, as_json)


@video_app.command("track")
@one_line_errors
def track_object(
    media_id: MediaId,
    frame: Annotated[int, typer.Option(help="The frame the object is on.")],
    object_id: Annotated[int, typer.Option("--object", help="The object to follow.")],
    frames: Annotated[int, typer.Option(help="How many next frames to follow it.")] = 10,
    method: Annotated[str, typer.Option(help="template (NCC matching) or mil.")] = "template",
    min_score: Annotated[float, typer.Option(help="Stop below this match score.")] = 0.5,
    project: ProjectDir = Path("."),
    user: User = "",
    as_json: AsJson = False,
) -> None:
    """Follow an object with a tracker; its boxes on the next frames become proposals."""
    from exemplar.project.video import propagate_track

    if method not in ("template", "mil"):
        raise UsageError(f"--method must be template or mil, got {method!r}")
    with _opened(project) as proj:
        done = propagate_track(
            proj,
            user or _default_user(),
            _item_of(proj, media_id, frame),
            object_id,
            frames=frames,
            method=method,  # type: ignore[arg-type]
            min_score=min_score,
            may_override=True,
        )
    _print_write(done, as_json)


@video_app.command("done")
@one_line_errors
def done(
    media_id: MediaId,
    first: Annotated[int, typer.Option(help="The first frame done.")],
    last: Annotated[int, typer.Option(help="The last frame done (inclusive).")],
    accept: Annotated[
        bool, typer.Option(help="Accept the open proposals on them (default: reject).")
    ] = False,
    project: ProjectDir = Path("."),
    user: User = "",
    as_json: AsJson = False,
) -> None:
    """Mark frames labeled: each gets its objects label and its queue entries close."""
    from exemplar.project.video import finish_frames

    with _opened(project) as proj:
        result = finish_frames(
            proj,
            user or _default_user(),
            media_id,
            first,
            last,
            accept_proposals=accept,
            may_override=True,
        )
    if as_json:
        console.print_json(json.dumps(result.__dict__))
        return
    console.print(
        f"frames {first}..{last}: {result.frames} frame(s), {result.labeled} newly labeled, "
        f"{result.closed} queue entr{'y' if result.closed == 1 else 'ies'} closed, "
        f"{result.accepted} proposal(s) accepted, {result.rejected} rejected",
        highlight=False,
    )
