"""End-to-end tests of the object labeling page (/annotate) in Debian's chromium (Playwright).

The page draws with OpenSeadragon and Annotorious (vendored in ``static/vendor``); these
tests use the mouse and the keyboard as an annotator would, and check what the server
stored: the object rows (append-only history), the item's label row and its queue entry.

The images are real: crops of the slide fixture (:func:`exemplar.data.slide_fixture.
build_slide_fixture`, fluorescence images of nuclei), with the fixture's nuclei written as
model proposals of graded confidence. Each test logs in as its own user, so each leases its
own item. Set ``EXEMPLAR_SCREENSHOTS=docs/img`` (or ``=1``) to refresh the screenshots of
docs/labeling-app.md; normal runs write no files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image
from sqlalchemy import select

from exemplar.data.slide_fixture import build_slide_fixture
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationIn, add_annotations
from exemplar.store.queue import enqueue
from exemplar.store.schema import Annotation, Item, Label, QueueEntry
from uvicorn_server import serve

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
CLASSES = ["nucleus", "micronucleus"]
USERS = ("drawer", "keys", "finisher", "checker", "painter", "coder", "focus")
CROP = 384
#: Confidences given to an item's proposals in reading order (cycled).
CONFIDENCES = (0.95, 0.42, 0.88, 0.71, 0.3, 0.93, 0.55, 0.66)
TIMEOUT_S = 20.0
ROOT = Path(__file__).resolve().parents[2]


# -- the project ------------------------------------------------------------------------------


def _crops(base: Path) -> list[tuple[Path, list[tuple[float, float, float, float]]]]:
    """Crops of the slide fixture as PNG files, each with the nuclei boxes inside it."""
    fixture = build_slide_fixture(base / "slide.tif")
    level0 = tifffile.imread(fixture.path, key=0)
    crops = []
    for k, (_name, cx, cy) in enumerate(fixture.cells):
        x, y = cx + 200, cy + 150
        path = base / f"crop{k}.png"
        Image.fromarray(level0[y : y + CROP, x : x + CROP]).save(path)
        inside = [
            (float(x0 - x), float(y0 - y), float(x1 - x), float(y1 - y))
            for (x0, y0, x1, y1), label in zip(fixture.boxes, fixture.labels, strict=True)
            if label == 0 and x0 >= x and y0 >= y and x1 <= x + CROP and y1 <= y + CROP
        ]
        inside.sort(key=lambda b: (b[1], b[0]))
        crops.append((path.resolve(), inside[:8]))
    return crops


@pytest.fixture(scope="module")
def annotate_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmentation project of image crops, all queued, each with model proposals."""
    base = tmp_path_factory.mktemp("annotate")
    root = base / "nuclei"
    crops = _crops(base)
    with Project.init(
        root, CLASSES, name="nuclei", task="segmentation", oracle={"kind": "human"}
    ) as project:
        with project.db.session() as s:
            items = [
                Item(uid=f"crop{k}", row=k, uri=str(path), kind="image", width=CROP, height=CROP)
                for k, (path, _boxes) in enumerate(crops)
            ]
            s.add_all(items)
            s.flush()
            enqueue(s, None, [(item.id, "test", 1.0 - k / 100) for k, item in enumerate(items)])
            for item, (_path, boxes) in zip(items, crops, strict=True):
                add_annotations(
                    s,
                    item.id,
                    [
                        AnnotationIn("nucleus", box, confidence=CONFIDENCES[j % len(CONFIDENCES)])
                        for j, box in enumerate(boxes)
                    ],
                    status="proposed",
                    source="model",
                    model_version="v-test",
                    classes=CLASSES,
                )
        for name in USERS:
            add_user(project.db, name, "annotator", PASSWORD)
    return root


@pytest.fixture(scope="module")
def annotate_url(annotate_project: Path) -> Iterator[str]:
    with serve(create_app(annotate_project)) as url:
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context; any JS dialog or page error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 760})
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


# -- helpers ----------------------------------------------------------------------------------


def screenshot(page: Any, name: str) -> None:
    """Save ``<dir>/<name>.png`` when EXEMPLAR_SCREENSHOTS names a folder (``1``: docs/img)."""
    target = os.environ.get("EXEMPLAR_SCREENSHOTS")
    if not target:
        return
    folder = ROOT / "docs" / "img" if target == "1" else ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def wait_for(check: Callable[[], Any], what: str, page: Any = None) -> Any:
    """Poll ``check`` until it is truthy; on a timeout, say what the page's status line said."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            said = (
                ""
                if page is None
                else f" (page: {page.inner_text('#status')!r}, "
                + (f"error: {page.inner_text('#error')!r})")
            )
            raise AssertionError(f"timed out waiting for {what}{said}")
        time.sleep(0.05)


def open_annotate(page: Any, base: str, name: str) -> int:
    """Log in as ``name`` (``/label`` sends a segmentation project to ``/annotate``) and
    wait for the first item; return its item id."""
    page.goto(f"{base}/label")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/annotate")
    page.wait_for_function("() => window.exemplarAnnotate && window.exemplarAnnotate.loaded")
    settle(page)
    item_id: int = page.evaluate("() => exemplarAnnotate.item().item_id")
    return item_id


def settle(page: Any) -> None:
    """Wait until the page's queued actions are done and the viewer stopped animating."""
    page.wait_for_function(
        "() => exemplarAnnotate.idle() && exemplarAnnotate.viewer.osd.world.getItemAt(0)"
        " && exemplarAnnotate.viewer.osd.world.getItemAt(0).getFullyLoaded()"
    )
    page.wait_for_timeout(350)  # the viewer's pan/zoom animation (0.3 s)


def to_screen(page: Any, x: float, y: float) -> tuple[float, float]:
    point = page.evaluate("([x, y]) => exemplarAnnotate.viewer.toScreen(x, y)", [x, y])
    return point["x"], point["y"]


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press at ``start``, move to ``end`` in steps, release (item px)."""
    sx, sy = to_screen(page, *start)
    ex, ey = to_screen(page, *end)
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move((sx + ex) / 2, (sy + ey) / 2, steps=5)
    page.mouse.move(ex, ey, steps=5)
    page.mouse.up()


def rows_of(root: Path, item_id: int) -> list[Annotation]:
    """Every annotation row of the item, oldest first."""
    with Project.open(root) as project, project.db.read() as s:
        rows = list(
            s.scalars(
                select(Annotation).where(Annotation.item_id == item_id).order_by(Annotation.id)
            )
        )
        s.expunge_all()
    return rows


def history(root: Path, object_id: int) -> list[Annotation]:
    with Project.open(root) as project, project.db.read() as s:
        rows = list(
            s.scalars(
                select(Annotation).where(Annotation.object_id == object_id).order_by(Annotation.id)
            )
        )
        s.expunge_all()
    return rows


def wait_rows(root: Path, object_id: int, count: int) -> list[Annotation]:
    return wait_for(
        lambda: len(rows := history(root, object_id)) >= count and rows,
        f"{count} history rows of object {object_id}",
    )


def selected(page: Any) -> int:
    value = page.evaluate("() => exemplarAnnotate.viewer.selected()")
    assert value is not None
    return int(value)


def status_line(page: Any) -> str:
    text: str = page.inner_text("#status")
    return text


def box_close(box: list[float], want: tuple[float, ...], tol: float = 3.0) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(box, want, strict=True))


# -- the tests --------------------------------------------------------------------------------


def test_draw_a_box_then_move_it(page: Any, annotate_url: str, annotate_project: Path) -> None:
    item_id = open_annotate(page, annotate_url, "drawer")
    before = {r.object_id for r in rows_of(annotate_project, item_id)}
    page.keyboard.press("Escape")  # clear the selection of the first proposal
    page.keyboard.press("b")
    drag(page, (30, 300), (90, 350))
    drawn = wait_for(
        lambda: [r for r in rows_of(annotate_project, item_id) if r.object_id not in before],
        "the drawn box",
        page,
    )
    [row] = drawn
    assert (row.label, row.geometry, row.status, row.source) == (
        "nucleus",
        "box",
        "verified",
        "human",
    )
    assert row.annotator == "drawer"
    assert box_close([row.x0, row.y0, row.x1, row.y1], (30, 300, 90, 350))
    page.wait_for_function("(id) => exemplarAnnotate.viewer.selected() === id", arg=row.object_id)
    settle(page)
    # Drag the selected box by its middle: a move, written as a new history row.
    drag(page, (60, 325), (80, 335))
    rows = wait_rows(annotate_project, row.object_id, 2)
    moved = rows[-1]
    assert box_close([moved.x0, moved.y0, moved.x1, moved.y1], (50, 310, 110, 360))
    assert (moved.status, moved.annotator) == ("verified", "drawer")
    assert "moved nucleus" in status_line(page)
    # Delete removes it (a "deleted" row); the overlay no longer draws it
    page.keyboard.press("Delete")
    rows = wait_rows(annotate_project, row.object_id, 3)
    assert (rows[-1].status, rows[-1].annotator) == ("deleted", "drawer")
    page.wait_for_function(
        "(id) => !document.querySelector(`.exemplar-overlay g.object[data-object-id='${id}']`)",
        arg=row.object_id,
    )


def test_accept_reject_relabel_and_undo_with_keys(
    page: Any, annotate_url: str, annotate_project: Path
) -> None:
    open_annotate(page, annotate_url, "keys")
    first = selected(page)  # the first proposal (reading order) is selected on load
    page.keyboard.press("a")
    [_, accepted] = wait_rows(annotate_project, first, 2)
    assert (accepted.status, accepted.annotator, accepted.label) == ("verified", "keys", "nucleus")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('accepted nucleus 0.')"
    )
    second = selected(page)  # moved on to the next open proposal
    assert second != first
    page.keyboard.press("x")
    [_, rejected] = wait_rows(annotate_project, second, 2)
    assert (rejected.status, rejected.annotator) == ("rejected", "keys")
    third = selected(page)
    page.keyboard.press("h")
    [_, negative] = wait_rows(annotate_project, third, 2)
    assert negative.status == "hard_negative"
    # n walks to the next object; a digit changes its class
    page.keyboard.press("n")
    fourth = selected(page)
    assert fourth not in (first, second, third)
    page.keyboard.press("2")
    [_, relabeled] = wait_rows(annotate_project, fourth, 2)
    assert (relabeled.label, relabeled.status) == ("micronucleus", "proposed")
    # The overlay draws each status differently, with text beside the colour.
    overlay = page.locator(".exemplar-overlay")
    assert overlay.locator(f"g.object.verified[data-object-id='{first}']").count() == 1
    assert overlay.locator(f"g.object.rejected[data-object-id='{second}'] line").count() == 2
    label = overlay.locator(f"text[data-object-id='{first}']").text_content() or ""
    assert label.endswith("✓")
    proposed = overlay.locator("g.object.proposed polygon[stroke-dasharray='6 4']")
    assert proposed.count() >= 1
    screenshot(page, "annotate-boxes")
    # u undoes the class change: a new row restores the state before it
    page.keyboard.press("u")
    rows = wait_rows(annotate_project, fourth, 3)
    assert (rows[-1].label, rows[-1].status) == ("nucleus", "proposed")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('undone')"
    )


def test_threshold_slider_hides_low_proposals(page: Any, annotate_url: str) -> None:
    open_annotate(page, annotate_url, "coder")
    shown = "() => document.querySelectorAll('.exemplar-overlay g.object.proposed').length"
    confidences: list[float] = page.evaluate(
        "() => exemplarAnnotate.objects().filter(o => o.status === 'proposed').map(o => o.confidence)"
    )
    assert page.evaluate(shown) == sum(c >= 0.5 for c in confidences)
    slider = page.get_by_label("Hide proposals below confidence")  # a labelled control
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")  # 0.5 -> 0.7 with the keyboard
    assert page.inner_text("#threshold-value") == "0.70"
    page.wait_for_function(f"() => ({shown})() === {sum(c >= 0.7 - 1e-9 for c in confidences)}")
    slider.focus()
    page.keyboard.press("Home")
    page.wait_for_function(f"() => ({shown})() === {len(confidences)}")


def test_finish_the_item(page: Any, annotate_url: str, annotate_project: Path) -> None:
    item_id = open_annotate(page, annotate_url, "finisher")
    proposals = {
        o["object_id"]: o
        for o in page.evaluate("() => exemplarAnnotate.objects()")
        if o["status"] == "proposed"
    }
    first = selected(page)
    page.keyboard.press("x")  # one proposal rejected by hand; the others left untouched
    wait_rows(annotate_project, first, 2)
    page.keyboard.press("f")
    label = wait_for(lambda: _objects_label(annotate_project, item_id), "the item's label row")
    assert (label.label, label.annotator) == (OBJECTS_LABEL, "finisher")
    assert _entry_status(annotate_project, item_id) == "done"
    now = {r.object_id: r for r in rows_of(annotate_project, item_id)}  # the newest rows
    for object_id, o in proposals.items():
        # untouched proposals: accepted at or above the slider (0.5), rejected below it
        want = "rejected" if object_id == first or o["confidence"] < 0.5 else "verified"
        assert now[object_id].status == want, o
    # the next item is on the page
    page.wait_for_function(
        "(old) => exemplarAnnotate.item() && exemplarAnnotate.item().item_id !== old", arg=item_id
    )
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('finished item')"
    )


def _objects_label(root: Path, item_id: int) -> Label | None:
    with Project.open(root) as project, project.db.read() as s:
        row = s.scalar(select(Label).where(Label.item_id == item_id, Label.annotator == "finisher"))
        if row is not None:
            s.expunge(row)
    return row


def _entry_status(root: Path, item_id: int) -> str:
    with Project.open(root) as project, project.db.read() as s:
        status = s.scalars(
            select(QueueEntry.status)
            .where(QueueEntry.item_id == item_id)
            .order_by(QueueEntry.id.desc())
        ).first()
    assert status is not None
    return status


def test_verification_mode_accepts_and_rejects(
    page: Any, annotate_url: str, annotate_project: Path
) -> None:
    open_annotate(page, annotate_url, "checker")
    page.keyboard.press("v")
    page.wait_for_function(
        "() => exemplarAnnotate.mode() === 'verify' && exemplarAnnotate.proposal()"
    )
    settle(page)
    first = page.evaluate("() => exemplarAnnotate.proposal()")
    assert page.inner_text("#status").startswith("verify: nucleus")
    # zoomed on the object: it fills a good part of the view, with its surroundings
    width = page.evaluate(
        "(b) => { const a = exemplarAnnotate.viewer.toScreen(b[0], b[1]);"
        " const c = exemplarAnnotate.viewer.toScreen(b[2], b[3]); return c.x - a.x; }",
        first["box"],
    )
    view = page.evaluate("() => document.getElementById('viewer').getBoundingClientRect().width")
    assert view / 6 < width < view
    screenshot(page, "annotate-verify")
    page.keyboard.press("a")
    rows = wait_rows(annotate_project, first["id"], 2)
    assert (rows[-1].status, rows[-1].annotator) == ("verified", "checker")
    page.wait_for_function(
        "(id) => exemplarAnnotate.proposal() && exemplarAnnotate.proposal().id !== id",
        arg=first["id"],
    )
    second = page.evaluate("() => exemplarAnnotate.proposal()")
    page.keyboard.press("x")
    rows = wait_rows(annotate_project, second["id"], 2)
    assert (rows[-1].status, rows[-1].annotator) == ("rejected", "checker")
    page.wait_for_function(
        "(id) => exemplarAnnotate.proposal() && exemplarAnnotate.proposal().id !== id",
        arg=second["id"],
    )
    # a digit, then a: accepted as that class
    third = page.evaluate("() => exemplarAnnotate.proposal()")
    page.keyboard.press("2")
    page.keyboard.press("a")
    rows = wait_rows(annotate_project, third["id"], 2)
    assert (rows[-1].status, rows[-1].label) == ("verified", "micronucleus")


def test_polygon_and_brush_mask(page: Any, annotate_url: str, annotate_project: Path) -> None:
    from pycocotools import mask as mask_utils

    item_id = open_annotate(page, annotate_url, "painter")
    before = {r.object_id for r in rows_of(annotate_project, item_id)}
    page.keyboard.press("Escape")
    page.keyboard.press("g")
    corners = [(200, 20), (260, 30), (250, 80), (205, 70)]
    for x, y in corners:
        sx, sy = to_screen(page, x, y)
        page.mouse.click(sx, sy)
        page.wait_for_timeout(80)
    sx, sy = to_screen(page, *corners[0])
    page.mouse.click(sx, sy)  # back on the first corner closes the polygon
    [polygon] = wait_for(
        lambda: [r for r in rows_of(annotate_project, item_id) if r.object_id not in before],
        "the polygon",
    )
    assert (polygon.geometry, polygon.status, polygon.source) == ("polygon", "verified", "human")
    [ring] = polygon.shape["polygons"]
    points = list(zip(ring[0::2], ring[1::2], strict=True))
    assert len(points) == 4
    for (x, y), (px, py) in zip(corners, points, strict=True):
        assert abs(x - px) <= 3 and abs(y - py) <= 3
    before.add(polygon.object_id)
    settle(page)
    # the brush: paint a stroke, make it bigger, keep it with Enter
    page.keyboard.press("Escape")
    page.keyboard.press("m")
    page.wait_for_selector("#brush-info", state="visible")
    page.keyboard.press("]")
    page.keyboard.press("]")
    size = int(page.inner_text("#brush-size"))
    assert size == 10
    drag(page, (100, 200), (160, 200))
    page.keyboard.press("Enter")
    [mask_row] = wait_for(
        lambda: [r for r in rows_of(annotate_project, item_id) if r.object_id not in before],
        "the mask",
    )
    assert (mask_row.geometry, mask_row.status) == ("mask", "verified")
    rle = mask_row.shape["rle"]
    assert rle["size"] == [CROP, CROP]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert decoded[200, 100] == decoded[200, 160] == decoded[200, 130] == 1
    assert decoded[200, 80] == 0 and decoded[230, 130] == 0
    ys, xs = np.nonzero(decoded)
    assert box_close(
        [mask_row.x0, mask_row.y0, mask_row.x1, mask_row.y1],
        (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1),
        0.01,
    )
    settle(page)
    screenshot(page, "annotate-polygon")
    # m on the selected mask repaints it: one more dab, kept with m, is a new row of it
    page.wait_for_function(
        "(id) => exemplarAnnotate.viewer.selected() === id", arg=mask_row.object_id
    )
    page.keyboard.press("m")
    drag(page, (130, 240), (131, 241))
    page.keyboard.press("m")
    rows = wait_rows(annotate_project, mask_row.object_id, 2)
    grown = mask_utils.decode(
        {"size": rle["size"], "counts": rows[-1].shape["rle"]["counts"].encode()}
    )
    assert grown[240, 130] == 1 and grown[200, 100] == 1  # the new dab and the old stroke
    assert rows[-1].y1 > mask_row.y1


def test_rle_encoding_matches_pycocotools(page: Any, annotate_url: str) -> None:
    """The page's COCO RLE encoder and decoder agree with pycocotools on random masks."""
    from pycocotools import mask as mask_utils

    open_annotate(page, annotate_url, "coder")
    rng = np.random.default_rng(7)
    for h, w, density in (
        (5, 7, 0.5),
        (64, 48, 0.05),
        (31, 200, 0.9),
        (300, 257, 0.01),
        (3, 3, 0.0),
    ):
        mask = (rng.random((h, w)) < density).astype(np.uint8)
        mask[h // 2 : h // 2 + 2, : w // 3] = 1  # long runs (multi-character counts)
        want = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
        got = page.evaluate(
            "([flat, h, w]) => ExemplarViewer.rle.encode(Uint8Array.from(flat), h, w)",
            [mask.ravel().tolist(), h, w],
        )
        assert got == {"size": [h, w], "counts": want}
        back = page.evaluate(
            "(rle) => Array.from(ExemplarViewer.rle.decode(rle))", {"size": [h, w], "counts": want}
        )
        assert np.array_equal(np.asarray(back, np.uint8).reshape(h, w), mask)


# -- a slide region -----------------------------------------------------------------------------

#: Regions are cut at 5x from the 20x fixture slide: 256 item px cover 1024 slide px (scale 4).
SLIDE_MAGNIFICATION = 5
SLIDE_REGION = 256


@pytest.fixture(scope="module")
def slide_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A detection project of the fixture slide's regions; the region with the most nuclei
    is queued with the nuclei inside it as model proposals. Returns the root and its item."""
    base = tmp_path_factory.mktemp("slide")
    fixture = build_slide_fixture(base / "slides" / "nuclei.tif")
    root = base / "slide-proj"
    with Project.init(
        root, CLASSES, name="slide", task="detection", oracle={"kind": "human"}
    ) as project:
        project.import_(fixture.path, magnification=SLIDE_MAGNIFICATION, region_size=SLIDE_REGION)
        with project.db.session() as s:
            regions = list(s.scalars(select(Item).where(Item.media_id.is_not(None))))
            assert regions, "the slide import made no regions"

            def inside(item: Item) -> list[tuple[float, ...]]:
                assert item.origin_x is not None and item.origin_y is not None and item.scale
                side = SLIDE_REGION * item.scale
                return [
                    tuple(
                        (v - o) / item.scale
                        for v, o in zip(box, (item.origin_x, item.origin_y) * 2, strict=True)
                    )
                    for box, label in zip(fixture.boxes.tolist(), fixture.labels, strict=True)
                    if label == 0
                    and box[0] >= item.origin_x
                    and box[1] >= item.origin_y
                    and box[2] <= item.origin_x + side
                    and box[3] <= item.origin_y + side
                ]

            region = max(regions, key=lambda item: len(inside(item)))
            found = inside(region)
            boxes = found[:: max(1, len(found) // 12)][:12]  # spread over the region
            enqueue(s, None, [(region.id, "test", 1.0)])
            add_annotations(
                s,
                region.id,
                [
                    AnnotationIn("nucleus", box, confidence=CONFIDENCES[j % len(CONFIDENCES)])
                    for j, box in enumerate(boxes)
                ],
                status="proposed",
                source="model",
                model_version="v-test",
                classes=CLASSES,
            )
            region_id = region.id
        add_user(project.db, "pathologist", "annotator", PASSWORD)
    return root, region_id


@pytest.fixture(scope="module")
def slide_url(slide_project: tuple[Path, int]) -> Iterator[str]:
    with serve(create_app(slide_project[0])) as url:
        yield url


def _tile_levels(requests: list[str]) -> list[int]:
    """The Deep Zoom levels of the slide tiles among the requested URLs."""
    levels = []
    for url in requests:
        if "/api/v1/slides/" in url and "_files/" in url:
            levels.append(int(url.split("_files/", 1)[1].split("/", 1)[0]))
    return levels


def _zoom_until_deeper(page: Any, requests: list[str], zoom: Callable[[], None]) -> None:
    """Zoom in step by step until a tile deeper than the fitted view's is requested."""
    fitted = max(_tile_levels(requests))
    for _ in range(5):
        zoom()
        settle(page)
        if max(_tile_levels(requests)) > fitted:
            return
    raise AssertionError(f"no tile deeper than level {fitted} was requested: {requests[-5:]}")


def _open_slide(browser: Any, base: str) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1000, "height": 640})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_annotate(page, base, "pathologist")
    return context, page, requests


def test_a_slide_region_opens_in_deep_zoom(
    browser: Any, slide_url: str, slide_project: tuple[Path, int]
) -> None:
    root, region_id = slide_project
    context, page, requests = _open_slide(browser, slide_url)
    try:
        info = page.evaluate(
            "() => fetch('/api/v1/items/' + exemplarAnnotate.item().item_id + '/viewer').then(r => r.json())"
        )
        assert info["item_id"] == region_id and info["kind"] == "region"
        assert any(url.endswith(info["dzi_url"]) for url in requests)  # the slide's pyramid
        assert _tile_levels(requests)
        # the region is outlined in slide px, with the slide around it in view
        outline = page.locator(".exemplar-overlay rect.region")
        assert [
            float(outline.get_attribute(k) or "nan") for k in ("x", "y", "width", "height")
        ] == [info["region"][k] for k in ("x", "y", "width", "height")]
        viewer_box = page.locator("#viewer").bounding_box()
        region_box = outline.bounding_box()
        assert viewer_box is not None and region_box is not None
        assert (
            region_box["width"] < viewer_box["width"]
            and region_box["height"] < viewer_box["height"]
        )
        assert "region at" in page.inner_text("#where")
        # the model's nuclei are on it; accepting one writes a history row
        assert page.locator(".exemplar-overlay g.object.proposed").count() >= 3
        screenshot(page, "annotate-slide")
        first = selected(page)
        page.keyboard.press("a")
        rows = wait_rows(root, first, 2)
        assert (rows[-1].status, rows[-1].annotator) == ("verified", "pathologist")
        # the + key zooms in: deeper tiles are requested
        _zoom_until_deeper(page, requests, lambda: page.keyboard.press("+"))
    finally:
        context.close()
    # the mouse wheel too (a fresh browser, so no tile is cached yet)
    context, page, requests = _open_slide(browser, slide_url)
    try:
        box = page.locator("#viewer").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        _zoom_until_deeper(page, requests, lambda: page.mouse.wheel(0, -240))
    finally:
        context.close()


def test_help_and_focus(page: Any, annotate_url: str) -> None:
    """? shows every key (and what finishing does); focus moves in page order and shows."""
    open_annotate(page, annotate_url, "focus")
    assert not page.is_visible("#help")
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="visible")
    help_text = page.inner_text("#help")
    for words in ("accept the selected proposal", "hard negative", "brush mask", "undo", "skip"):
        assert words in help_text
    assert "accepted if its confidence is at or above the slider" in help_text
    page.keyboard.press("Escape")
    page.wait_for_selector("#help", state="hidden")
    # every action button names its key; focus order: the image, then the actions
    for button in page.locator("#tools button").all():
        assert button.locator("kbd").count() == 1 and button.get_attribute("aria-keyshortcuts")
    # On the image, Tab walks its objects; after the last one it moves on (no trap).
    visible = page.evaluate("() => exemplarAnnotate.viewer.visibleObjects().map(o => o.object_id)")
    page.locator("#viewer").focus()
    page.keyboard.press("Escape")  # clear the selection
    for object_id in visible:
        page.keyboard.press("Tab")
        page.wait_for_function("(id) => exemplarAnnotate.viewer.selected() === id", arg=object_id)
        assert page.evaluate("() => document.activeElement.id") == "viewer"
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.outerHTML.slice(0, 80)")
    assert page.evaluate("() => document.activeElement.dataset.action") == "accept", focused
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
    assert page.get_attribute("#status", "aria-live") == "polite"
