"""End-to-end test of the video page (/video/{media_id}) in Debian's chromium (Playwright).

The video is the fixture clip (real nuclei crops moving synthetically over a real
background, :mod:`exemplar.data.video_fixture`) imported as frames. An annotator draws a
box on two keyframes with the mouse, interpolates the track with a key, and the middle
frame gets the linear box; then the tracker proposes boxes forward. A frame the loop queued
opens from ``/annotate`` in its video (key ``o``) at that frame, and ``/videos`` links each
video to its page. Set
``EXEMPLAR_SCREENSHOTS=1`` (or a folder) to refresh ``docs/img/video.png``; normal runs
write no files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from exemplar.data.video_fixture import VideoFixture, build_video_fixture
from exemplar.project import Project
from exemplar.project.video import video_objects
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.queue import enqueue
from exemplar.store.schema import Item, Media
from uvicorn_server import serve

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
TIMEOUT_S = 20.0
ROOT = Path(__file__).resolve().parents[2]
N_FRAMES = 16


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> VideoFixture:
    return build_video_fixture(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def video_project(tmp_path_factory: pytest.TempPathFactory, clip: VideoFixture) -> Path:
    root = tmp_path_factory.mktemp("video") / "nuclei-video"
    with Project.init(
        root, ["nucleus", "debris"], name="nuclei video", task="detection", data={"image_side": 32}
    ) as project:
        assert project.import_(clip.path).added == N_FRAMES
        add_user(project.db, "tracker", "annotator", PASSWORD)
    return root


@pytest.fixture(scope="module")
def video_url(video_project: Path) -> Iterator[str]:
    with serve(create_app(video_project)) as url:
        yield url


#: The frame the loop queued in ``frame_project``.
QUEUED_FRAME = 11


@pytest.fixture(scope="module")
def frame_project(tmp_path_factory: pytest.TempPathFactory, clip: VideoFixture) -> Path:
    """The clip imported again, with one of its frames in the queue."""
    root = tmp_path_factory.mktemp("frames") / "queued-frames"
    with Project.init(
        root, ["nucleus", "debris"], name="queued frames", task="detection", data={"image_side": 32}
    ) as project:
        assert project.import_(clip.path).added == N_FRAMES
        add_user(project.db, "framer", "annotator", PASSWORD)
        with project.db.session() as s:
            item_id = s.scalar(select(Item.id).where(Item.frame == QUEUED_FRAME))
            assert item_id is not None
            enqueue(s, None, [(int(item_id), "test", 1.0)])
    return root


@pytest.fixture(scope="module")
def frame_url(frame_project: Path) -> Iterator[str]:
    with serve(create_app(frame_project)) as url:
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context; any JS dialog or page error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    problems: list[str] = []

    def dialog(d: Any) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield page
    context.close()
    assert not problems, problems


def wait_for(check: Callable[[], Any], what: str, page: Any) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what} (page: {page.inner_text('#status')!r}, "
                f"error: {page.inner_text('#error')!r})"
            )
        time.sleep(0.05)


def settle(page: Any) -> None:
    page.wait_for_function(
        "() => exemplarVideo.idle() && exemplarVideo.viewer.osd.world.getItemAt(0)"
        " && exemplarVideo.viewer.osd.world.getItemAt(0).getFullyLoaded()"
    )
    page.wait_for_timeout(350)  # the viewer's pan/zoom animation


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    sx, sy = page.evaluate("([x, y]) => exemplarVideo.viewer.toScreen(x, y)", list(start)).values()
    ex, ey = page.evaluate("([x, y]) => exemplarVideo.viewer.toScreen(x, y)", list(end)).values()
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move((sx + ex) / 2, (sy + ey) / 2, steps=5)
    page.mouse.move(ex, ey, steps=5)
    page.mouse.up()


def objects(root: Path) -> dict[int, list[Any]]:
    """frame -> the current objects on it."""
    with Project.open(root) as project:
        with project.db.read() as s:
            media_id = int(s.scalar(select(Media.id)) or 0)
        found: dict[int, list[Any]] = {}
        for o in video_objects(project, media_id):
            found.setdefault(o.frame, []).append(o.annotation)
    return found


def go_to_frame(page: Any, frame: int) -> None:
    while page.evaluate("() => exemplarVideo.frame()") < frame:
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => exemplarVideo.idle()")
    settle(page)
    assert page.evaluate("() => exemplarVideo.frame()") == frame


def screenshot(page: Any, name: str) -> None:
    target = os.environ.get("EXEMPLAR_SCREENSHOTS")
    if not target:
        return
    folder = ROOT / "docs" / "img" if target == "1" else ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_draw_two_keyframes_and_interpolate(
    page: Any, video_url: str, video_project: Path, clip: VideoFixture
) -> None:
    page.goto(f"{video_url}/video/1")
    page.wait_for_url(f"{video_url}/login")
    page.fill("input[name=name]", "tracker")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)  # /label, then /annotate
    page.goto(f"{video_url}/video/1")
    page.wait_for_function("() => window.exemplarVideo && window.exemplarVideo.loaded")
    settle(page)
    truth = clip.tracks[1].boxes

    # keyframe 1, frame 2: a new track
    go_to_frame(page, 2)
    page.keyboard.press("b")
    drag(page, truth[2][:2], truth[2][2:])
    first = wait_for(lambda: objects(video_project).get(2), "the first keyframe", page)[0]
    assert (first.keyframe, first.status, first.annotator) == (True, "verified", "tracker")
    assert np.abs(np.subtract([first.x0, first.y0, first.x1, first.y1], truth[2])).max() <= 3
    page.wait_for_function("(t) => exemplarVideo.track() === t", arg=first.track_id)
    settle(page)

    # keyframe 2, frame 8: the same track (it stays selected)
    go_to_frame(page, 8)
    page.keyboard.press("b")
    drag(page, truth[8][:2], truth[8][2:])
    second = wait_for(lambda: objects(video_project).get(8), "the second keyframe", page)[0]
    assert (second.track_id, second.keyframe) == (first.track_id, True)
    settle(page)
    assert "2, 8" in page.inner_text("#keyframe-list")

    # interpolate with a key: frames 3..7 get the linear boxes
    page.keyboard.press("i")
    found = wait_for(
        lambda: (o := objects(video_project)) and all(f in o for f in range(3, 8)) and o,
        "the interpolated boxes",
        page,
    )
    middle = found[5][0]
    want = [
        (a + b) / 2
        for a, b in zip(
            (first.x0, first.y0, first.x1, first.y1),
            (second.x0, second.y0, second.x1, second.y1),
            strict=True,
        )
    ]
    assert [middle.x0, middle.y0, middle.x1, middle.y1] == pytest.approx(want, abs=0.01)
    assert (middle.track_id, middle.keyframe, middle.status) == (first.track_id, False, "verified")
    settle(page)
    assert "interpolated" in page.inner_text("#status")

    # the tracker proposes the next frames from keyframe 2
    page.keyboard.press("t")
    tracked = wait_for(
        lambda: (o := objects(video_project)) and 9 in o and o, "the tracker's proposals", page
    )
    proposal = tracked[9][0]
    assert (proposal.status, proposal.model_version) == ("proposed", "tracker:template")
    settle(page)
    go_to_frame(page, 10)
    screenshot(page, "video")


def log_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def open_video_page(page: Any) -> None:
    page.wait_for_function("() => window.exemplarVideo && window.exemplarVideo.loaded")
    settle(page)


def test_a_queued_frame_opens_in_its_video_at_that_frame(page: Any, frame_url: str) -> None:
    log_in(page, frame_url, "framer")  # /label sends a detection project to /annotate
    page.wait_for_url(f"{frame_url}/annotate")
    page.wait_for_function("() => window.exemplarAnnotate && window.exemplarAnnotate.loaded")
    assert f"frame {QUEUED_FRAME}" in page.inner_text("#where")
    button = page.locator("#open-video")
    assert button.is_visible() and button.get_attribute("aria-keyshortcuts") == "o"
    assert button.inner_text() == f"o open frame {QUEUED_FRAME} in its video"
    page.keyboard.press("?")
    assert "open the frame in its video" in page.inner_text("#help")
    page.keyboard.press("Escape")

    page.keyboard.press("o")
    page.wait_for_url(f"{frame_url}/video/1?frame={QUEUED_FRAME}")
    open_video_page(page)
    assert page.evaluate("() => exemplarVideo.frame()") == QUEUED_FRAME
    assert page.input_value("#frame-slider") == str(QUEUED_FRAME)
    assert page.inner_text("#frame-label").startswith(f"frame {QUEUED_FRAME} of {N_FRAMES}")

    # a frame that was not imported: the nearest one, and the page says so
    page.goto(f"{frame_url}/video/1?frame=999")
    open_video_page(page)
    assert page.evaluate("() => exemplarVideo.frame()") == N_FRAMES - 1
    assert f"showing the nearest, frame {N_FRAMES - 1}" in page.inner_text("#status")


def test_the_videos_page_lists_the_video_and_links_to_it(page: Any, frame_url: str) -> None:
    log_in(page, frame_url, "framer")
    page.click("nav >> text=videos")
    page.wait_for_url(f"{frame_url}/videos")
    row = page.locator("#videos tbody tr")
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells == [
        "video 1",
        "clip.mp4",
        "256×256",
        "12",
        str(N_FRAMES),
        str(N_FRAMES),
        f"0 of {N_FRAMES}",
    ]
    row.locator("a").click()
    page.wait_for_url(f"{frame_url}/video/1")
    open_video_page(page)
    assert page.evaluate("() => exemplarVideo.frame()") == 0
