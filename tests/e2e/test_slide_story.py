"""The pathologist's story, end to end: a slide in, the loop's regions out, verified in the
browser with the keyboard.

A real detection cycle runs first: the fixture slide (a pyramidal TIFF built from real
microscopy tiles, :mod:`exemplar.data.slide_fixture`) is imported as regions at 10x, a few
regions are labeled with the slide's nuclei (as a person would have), and one cycle trains
the detector, scores every other region and queues the best ones with the model's proposed
nuclei. Then, in Debian's chromium, a pathologist opens the labeling app, lands on a region
the loop chose (deep zoom, the slide around it), accepts a proposed nucleus with one key,
draws one the model missed, finishes the region and is moved to the next region the loop
chose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_annotate_browser import (
    PASSWORD,
    drag,
    open_annotate,
    rows_of,
    settle,
    wait_for,
)

from exemplar.data.slide_fixture import build_slide_fixture
from exemplar.formats.base import ObjectRecord
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.sources.slide_objects import region_objects
from exemplar.store.accounts import add_user
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationIn, add_annotations
from exemplar.store.labels import add_labels
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus, QueueEntry
from uvicorn_server import serve

pytestmark = pytest.mark.e2e
pytest.importorskip("openslide")
pytest.importorskip("torch")

REGION = 160  # item px at 10x: 320 level-0 px of the 20x fixture
SEEDED = 6  # regions labeled before the first cycle


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A detection project whose first cycle queued regions with the model's proposals;
    returns the project and the queued region ids."""
    base = tmp_path_factory.mktemp("story")
    slide = build_slide_fixture(base / "case-17.tif", grid=(2, 1), blank=())
    truth = [
        ObjectRecord(slide.classes[int(c)], tuple(float(v) for v in box))
        for box, c in zip(slide.boxes.tolist(), slide.labels, strict=True)
    ]
    root = base / "pathology"
    with Project.init(
        root,
        slide.classes,
        name="pathology",
        task="detection",
        oracle={"kind": "human"},
        data={"image_side": 128},
        model={
            "candidates": [{"recipe": "centernet", "params": {"epochs": 3}}],
            "proposal_threshold": 0.05,
        },
        selection={"batch_size": 4, "initial_size": 4},
        stopping={"criteria": [{"name": "label_budget", "budget": 12}]},
    ) as project:
        report = project.import_(slide.path, magnification=10.0, region_size=REGION)
        assert report.added > SEEDED + 4
        with project.db.session() as s:
            regions = list(s.scalars(select(Item).order_by(Item.id)))[:SEEDED]
            for region in regions:
                assert region.origin_x is not None and region.origin_y is not None
                assert region.scale is not None
                found = region_objects(
                    truth, (region.origin_x, region.origin_y), region.scale, REGION
                )
                add_annotations(
                    s,
                    region.id,
                    [AnnotationIn(o.label, o.box) for o in found],
                    status="verified",
                    source="human",
                    annotator="earlier",
                    classes=slide.classes,
                )
            add_labels(
                s,
                [(region.id, OBJECTS_LABEL) for region in regions],
                classes=[OBJECTS_LABEL],
                source=LabelSource.HUMAN,
                status=LabelStatus.VERIFIED,
            )
        outcome = project.run(max_cycles=1)
        assert outcome.status == "waiting", outcome  # the regions wait for a person
        with project.db.read() as s:
            queued = [e.item_id for e in s.scalars(select(QueueEntry).order_by(QueueEntry.rank))]
        add_user(project.db, "pathologist", "annotator", PASSWORD)
    assert len(queued) == 4
    return root, queued


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context; a page error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def story_url(story: tuple[Path, list[int]]) -> Iterator[str]:
    with serve(create_app(story[0])) as url:
        yield url


def _free_spot(
    boxes: list[list[float]], size: float = 20.0, margin: float = 6.0
) -> tuple[float, float]:
    """The top-left corner of a ``size`` square in the region that no box comes near."""
    for y in range(10, REGION - 30, 5):
        for x in range(10, REGION - 30, 5):
            if all(
                x + size + margin < b[0]
                or b[2] < x - margin
                or y + size + margin < b[1]
                or b[3] < y - margin
                for b in boxes
            ):
                return float(x), float(y)
    raise AssertionError("the model proposed objects all over the region")


def _label(root: Path, item_id: int) -> Label | None:
    with Project.open(root) as project, project.db.read() as s:
        row = s.scalar(select(Label).where(Label.item_id == item_id).order_by(Label.id.desc()))
        if row is not None:
            s.expunge(row)
    return row


def test_a_pathologist_verifies_the_regions_the_loop_chose(
    page: Any, story: tuple[Path, list[int]], story_url: str
) -> None:
    root, queued = story
    item_id = open_annotate(page, story_url, "pathologist")
    assert item_id in queued  # a region the loop chose
    info = page.evaluate(f"() => fetch('/api/v1/items/{item_id}/viewer').then(r => r.json())")
    assert info["kind"] == "region" and info["dzi_url"].endswith(".dzi")
    assert info["region"]["width"] == REGION * info["scale"]
    # the slide around the region is open in deep zoom, not just the region's pixels
    source_url = page.evaluate(
        "() => exemplarAnnotate.viewer.osd.world.getItemAt(0).source.tilesUrl || ''"
    )
    assert "_files" in source_url
    proposals = [o for o in page.evaluate("() => exemplarAnnotate.objects()")]
    proposals = [o for o in proposals if o["status"] == "proposed"]
    assert proposals and {o["source"] for o in proposals} == {"model"}  # the model's nuclei
    slider = page.get_by_label("Hide proposals below confidence")
    slider.focus()
    page.keyboard.press("Home")  # show every proposal, however unsure
    page.locator("#viewer").focus()
    page.keyboard.press("n")
    first = page.evaluate("() => exemplarAnnotate.viewer.selected()")
    assert first in {o["object_id"] for o in proposals}
    page.keyboard.press("a")  # accept the proposed nucleus
    wait_for(
        lambda: any(
            r.object_id == first and r.status == "verified" and r.annotator == "pathologist"
            for r in rows_of(root, item_id)
        ),
        "the accepted nucleus",
        page,
    )
    settle(page)
    before = {r.object_id for r in rows_of(root, item_id)}
    page.keyboard.press("Escape")
    page.keyboard.press("0")  # the whole region in view again
    settle(page)
    page.keyboard.press("b")  # draw a nucleus the model missed, where it proposed nothing
    x0, y0 = _free_spot([o["box"] for o in page.evaluate("() => exemplarAnnotate.objects()")])
    drag(page, (x0, y0), (x0 + 20, y0 + 18))
    drawn = wait_for(
        lambda: [r for r in rows_of(root, item_id) if r.object_id not in before],
        "the drawn nucleus",
        page,
    )
    assert [(r.status, r.source, r.annotator) for r in drawn] == [
        ("verified", "human", "pathologist")
    ]
    settle(page)
    page.keyboard.press("f")  # the region is done
    label = wait_for(lambda: _label(root, item_id), "the region's label row", page)
    assert (label.label, label.annotator) == (OBJECTS_LABEL, "pathologist")
    # ... and the next region the loop chose is on the screen
    page.wait_for_function(
        "(old) => exemplarAnnotate.item() && exemplarAnnotate.item().item_id !== old",
        arg=item_id,
    )
    following = page.evaluate("() => exemplarAnnotate.item().item_id")
    assert following in queued and following != item_id
