"""A detection project end to end: import COCO ground truth, run cycles with the simulated
oracle, and export what was labeled (issue #11)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from exemplar.data.cells import synthetic_cells
from exemplar.errors import ConfigError, ProjectError
from exemplar.formats import AnnotatedImage, ObjectRecord, read_annotations, write_annotations
from exemplar.objects import box_iou
from exemplar.project import Project
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationStatus, current_annotations
from exemplar.store.labels import current_labels
from exemplar.store.schema import Annotation, Cycle, Item, LabelSource, ModelVersion

pytest.importorskip("torch")

CLASSES = ["nucleus", "micronucleus"]


def write_cells(
    folder: Path, n: int, *, size: int = 64, seed: int = 0, polygons: bool = False
) -> Path:
    """A COCO folder of SYNTHETIC cell images (PNG files plus annotations.json); with
    ``polygons``, each object's outline is its box as a polygon (as COCO files often do)."""
    data = synthetic_cells(n, size=size, seed=seed, objects_per_image=(2, 6))
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for k, (pixels, objs) in enumerate(zip(data.images, data.objects, strict=True)):
        path = folder / f"cell{k:03d}.png"
        Image.fromarray(pixels).save(path)
        records = [
            ObjectRecord(
                data.classes[int(c)],
                tuple(float(v) for v in box),  # type: ignore[arg-type]
                polygons=[[box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]]]
                if polygons
                else None,
            )
            for box, c in zip(objs.boxes.tolist(), objs.classes, strict=True)
        ]
        images.append(AnnotatedImage(path, size, size, records))
    return write_annotations(images, data.classes, folder, "coco")


def detection_project(tmp_path: Path, **sections: dict[str, object]) -> Project:
    return Project.init(
        tmp_path / "proj",
        CLASSES,
        task="detection",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet", "params": {"epochs": 2}}],
            "proposal_threshold": 0.0,
        },
        selection={"batch_size": 4, "initial_size": 6},
        stopping={"criteria": [{"name": "label_budget", "budget": 14}]},
        **sections,
    )


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return write_cells(tmp_path / "cells", 24)


def test_import_coco_as_ground_truth_hides_the_objects(tmp_path: Path, coco: Path) -> None:
    truth = read_annotations(coco)
    with detection_project(tmp_path) as project:
        report = project.import_(coco, labels_as="ground_truth")
        assert report.added == 24
        assert report.objects == sum(len(i.objects) for i in truth.images)
        with project.db.read() as s:
            assert s.scalar(select(func.count()).select_from(Item)) == 24
            hidden = current_annotations(s, None, statuses=(AnnotationStatus.GROUND_TRUTH,))
            assert len(hidden) == report.objects
            assert not current_labels(s)  # nothing labeled: the truth is for the oracle
            sizes = set(s.execute(select(Item.width, Item.height)).all())
        assert sizes == {(64, 64)}
        assert project.feature_dim == 64 * 64


def test_import_coco_as_labels_labels_the_images(tmp_path: Path, coco: Path) -> None:
    with detection_project(tmp_path) as project:
        report = project.import_(coco)
        assert report.labeled == 24
        with project.db.read() as s:
            labels = current_labels(s)
            verified = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
        assert {c.label for c in labels} == {OBJECTS_LABEL}
        assert len(verified) == report.objects
        assert {a.source for a in verified} == {LabelSource.IMPORT.value}


def test_a_bad_object_is_reported_and_the_rest_imported(tmp_path: Path, coco: Path) -> None:
    import json

    doc = json.loads(coco.read_text())
    doc["annotations"][0]["bbox"] = [60.0, 60.0, 30.0, 30.0]  # far outside a 64 px image
    doc["annotations"][1]["category_id"] = 999  # no such class
    coco.write_text(json.dumps(doc))
    with detection_project(tmp_path) as project:
        report = project.import_(coco)
        assert report.added == 24
        assert report.objects == len(doc["annotations"]) - 2
        assert len(report.skipped) == 2
        assert all("annotations.json" in where for where, _ in report.skipped)


def test_classification_project_refuses_an_annotation_format(tmp_path: Path, coco: Path) -> None:
    with Project.init(tmp_path / "cls", CLASSES) as project, pytest.raises(ConfigError):
        project.import_(coco, annotation_format="coco")


def test_detection_cycles_train_select_propose_and_label(tmp_path: Path, coco: Path) -> None:
    with detection_project(tmp_path) as project:
        project.import_(coco, labels_as="ground_truth")
        outcome = project.run()
        assert outcome.status == "stopped", outcome
        with project.db.read() as s:
            cycles = list(s.scalars(select(Cycle).order_by(Cycle.number)))
            versions = list(s.scalars(select(ModelVersion)))
            labels = current_labels(s)
            proposals = list(
                s.scalars(select(Annotation).where(Annotation.source == LabelSource.MODEL))
            )
            verified = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
            truth = current_annotations(s, None, statuses=(AnnotationStatus.GROUND_TRUTH,))
        assert len(labels) == 14  # the budget, in images
        assert {c.label for c in labels} == {OBJECTS_LABEL}
        assert cycles[0].metrics.get("note") == "cold_start"
        trained = [v for v in versions if v.selected]
        assert trained and all("map50" in v.metrics for v in trained)
        assert all(v.metrics["n_objects"] > 0 for v in trained)
        # proposals were made for the batches picked with a model, then settled
        assert proposals, "a model picked a batch, so it proposed objects"
        # the labeled images' verified objects are exactly their ground truth
        labeled = {c.item_id for c in labels}
        for item_id in labeled:
            mine = [a for a in verified if a.item_id == item_id]
            want = [a for a in truth if a.item_id == item_id]
            assert len(mine) == len(want)
            iou = box_iou(
                np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in mine], np.float32),
                np.asarray([[a.x0, a.y0, a.x1, a.y1] for a in want], np.float32),
            )
            assert (iou.max(axis=1) > 0.999).all() if mine else True
        batch = [c for c in cycles if c.metrics.get("batch")]
        assert batch and "map50" in batch[0].metrics["batch"]


def test_budget_in_objects_stops_on_objects(tmp_path: Path, coco: Path) -> None:
    root = tmp_path / "obj"
    with Project.init(
        root,
        CLASSES,
        task="detection",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={"candidates": [{"recipe": "centernet", "params": {"epochs": 1}}]},
        selection={"batch_size": 3, "initial_size": 3},
        stopping={"criteria": [{"name": "label_budget", "budget": 20}], "budget_unit": "objects"},
    ) as project:
        project.import_(coco, labels_as="ground_truth")
        outcome = project.run()
        assert outcome.status == "stopped"
        with project.db.read() as s:
            verified = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
            labeled = current_labels(s)
        assert len(verified) >= 20
        # it stopped once the objects were spent: one batch fewer would not reach 20
        assert len(labeled) < 24


def test_export_coco_and_yolo_round_trip(tmp_path: Path, coco: Path) -> None:
    with detection_project(tmp_path) as project:
        project.import_(coco, labels_as="ground_truth")
        project.run(max_cycles=1)
        with project.db.read() as s:
            labeled = {c.item_id for c in current_labels(s)}
            verified = [
                a
                for a in current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
                if a.item_id in labeled
            ]
        for fmt in ("coco", "yolo"):
            out = project.export_objects(tmp_path / f"out-{fmt}", fmt)
            assert out.images == len(labeled)
            assert out.objects == len(verified)
            back = read_annotations(out.path, fmt)
            assert sum(len(i.objects) for i in back.images) == len(verified)


def test_export_objects_of_a_classification_project_is_refused(tmp_path: Path) -> None:
    with Project.init(tmp_path / "cls", CLASSES) as project, pytest.raises(ProjectError):
        project.export_objects(tmp_path / "x", "coco")


def test_people_label_proposals_then_the_queue_refills_with_proposals(
    tmp_path: Path,
) -> None:
    """The human oracle: a cycle waits with proposals on its batch; an annotator verifies
    one proposal, draws one object and leaves the rest (rejected); once the batch is done,
    a refill queues stale entries that carry the newest model's proposals too."""
    from exemplar.loop.refill import refill_queue
    from exemplar.store.annotations import SubmittedObject, submit_objects
    from exemplar.store.queue import lease
    from exemplar.store.schema import QueueEntry

    labeled = write_cells(tmp_path / "labeled", 8, seed=1)
    plain = tmp_path / "plain"
    plain.mkdir()
    for k, pixels in enumerate(synthetic_cells(16, size=64, seed=2).images):
        Image.fromarray(pixels).save(plain / f"p{k:02d}.png")
    with Project.init(
        tmp_path / "human",
        CLASSES,
        task="detection",
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet", "params": {"epochs": 2}}],
            "proposal_threshold": 0.0,
        },
        selection={"batch_size": 3, "initial_size": 4},
        stopping={"criteria": [{"name": "label_budget", "budget": 20}]},
    ) as project:
        assert project.import_(labeled).labeled == 8
        assert project.import_(plain).labeled == 0
        outcome = project.run(max_cycles=1)
        assert outcome.status == "waiting"
        leased = lease(project.db, "ann", lease_seconds=60)
        assert leased is not None
        with project.db.read() as s:
            shown = current_annotations(s, [leased.item_id])
        assert shown and {a.status for a in shown} == {"proposed"}
        keep = shown[0]
        submission = submit_objects(
            project.db,
            leased.entry_id,
            "ann",
            [
                SubmittedObject(keep.object_id, keep.label, (keep.x0, keep.y0, keep.x1, keep.y1)),
                SubmittedObject(None, "nucleus", (1.0, 1.0, 9.0, 9.0)),
            ],
            classes=CLASSES,
        )
        assert (submission.verified, submission.drawn) == (1, 1)
        assert submission.rejected == len(shown) - 1
        with project.db.read() as s:
            now = {a.object_id: a for a in current_annotations(s, [leased.item_id])}
        assert now[keep.object_id].status == "verified"
        assert sum(a.status == "rejected" for a in now.values()) == len(shown) - 1
        # the rest of the batch is labeled (nothing on them); no entry is open now
        while (entry := lease(project.db, "ann", lease_seconds=60)) is not None:
            submit_objects(project.db, entry.entry_id, "ann", [], classes=CLASSES)
        refill = refill_queue(project, size=2)
        assert refill.added == 2 and refill.strategy is not None
        assert refill.strategy.startswith("stale:")
        with project.db.read() as s:
            stale = list(s.scalars(select(QueueEntry.item_id).where(QueueEntry.cycle_id.is_(None))))
            proposed = current_annotations(s, stale, statuses=("proposed",))
        assert {a.item_id for a in proposed} == set(stale)


def test_segmentation_project_trains_on_outlines_and_proposes_masks(tmp_path: Path) -> None:
    """Outlines (COCO RLE masks) go in, the segmentation detector trains on them, and the
    proposals it makes for a queued image are masks in that image's own pixels."""
    from pycocotools import mask as rle

    data = synthetic_cells(12, size=64, seed=3, objects_per_image=(2, 5))
    folder = tmp_path / "seg"
    folder.mkdir()
    images = []
    for k, (pixels, objs) in enumerate(zip(data.images, data.objects, strict=True)):
        path = folder / f"s{k:02d}.png"
        Image.fromarray(pixels).save(path)
        assert objs.masks is not None
        records = [
            ObjectRecord(
                data.classes[int(c)],
                tuple(float(v) for v in box),  # type: ignore[arg-type]
                rle=dict(m),
            )
            for box, c, m in zip(objs.boxes, objs.classes, objs.masks, strict=True)
        ]
        images.append(AnnotatedImage(path, 64, 64, records))
    coco = write_annotations(images, data.classes, folder, "coco")
    with Project.init(
        tmp_path / "segproj",
        CLASSES,
        task="segmentation",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "centernet-seg", "params": {"epochs": 2}}],
            "proposal_threshold": 0.0,
        },
        selection={"batch_size": 3, "initial_size": 5},
        stopping={"criteria": [{"name": "label_budget", "budget": 11}]},
    ) as project:
        assert project.config.model.criterion == "map50"
        project.import_(coco, labels_as="ground_truth")
        outcome = project.run()
        assert outcome.status == "stopped"
        with project.db.read() as s:
            proposals = list(
                s.scalars(select(Annotation).where(Annotation.source == LabelSource.MODEL))
            )
            verified = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
            versions = [v for v in s.scalars(select(ModelVersion)) if v.selected]
        assert versions and all("map50" in v.metrics for v in versions)
        assert proposals and {p.geometry for p in proposals} == {"mask"}
        for p in proposals:
            mask = rle.decode(p.shape["rle"])
            assert mask.shape == (64, 64)  # the image's own pixels
        assert verified and {a.geometry for a in verified} == {"mask"}


@pytest.mark.parametrize(
    "strategy",
    ["box_committee", "localization_stability", "expected_count", "box_uncertain_diverse"],
)
def test_every_object_strategy_selects_in_a_project(tmp_path: Path, strategy: str) -> None:
    """Scoring asks the detector for what each strategy reads (stochastic passes,
    augmented views, embeddings), and the selection queues a batch from it."""
    coco = write_cells(tmp_path / "few", 12, seed=4)
    with Project.init(
        tmp_path / "p",
        CLASSES,
        task="detection",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={"candidates": [{"recipe": "centernet", "params": {"epochs": 1}}]},
        selection={"strategy": strategy, "batch_size": 3, "initial_size": 4},
        stopping={"criteria": [{"name": "label_budget", "budget": 10}]},
    ) as project:
        project.import_(coco, labels_as="ground_truth")
        project.run(max_cycles=2)
        with project.db.read() as s:
            cycle = s.scalar(select(Cycle).where(Cycle.number == 1))
            from exemplar.store.schema import QueueEntry

            picked = list(s.scalars(select(QueueEntry).where(QueueEntry.cycle_id == cycle.id)))
        assert cycle.model_version_id is not None
        assert len(picked) == 3
        assert {e.strategy for e in picked} == {strategy}
        assert all(e.score is not None for e in picked)


def test_an_external_trainer_runs_the_detection_loop(tmp_path: Path) -> None:
    """Recipe "external": the loop writes the labeled images as a YOLO folder, runs the
    user's train and predict commands (a small script here) and reads the predictions back
    into the same cycle: validation mAP, scores, proposals, labels."""
    import sys

    trainer = Path(__file__).resolve().parents[2] / "fixtures" / "external_trainer.py"
    train = [
        sys.executable,
        str(trainer),
        "train",
        "--data",
        "{data_yaml}",
        "--weights",
        "{weights}",
    ]
    predict = [
        sys.executable,
        str(trainer),
        "predict",
        "--weights",
        "{weights}",
        "--images",
        "{pool}",
        "--out",
        "{predictions}",
    ]
    coco = write_cells(tmp_path / "ext", 14, seed=5)
    with Project.init(
        tmp_path / "extproj",
        CLASSES,
        task="detection",
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [{"recipe": "external", "params": {"train": train, "predict": predict}}],
            "proposal_threshold": 0.0,
            "keep_checkpoints": 1,
        },
        selection={"batch_size": 3, "initial_size": 6},
        stopping={"criteria": [{"name": "label_budget", "budget": 12}]},
    ) as project:
        project.import_(coco, labels_as="ground_truth")
        orphan = project.root / "external" / "run-interrupted"  # a fit killed before its record
        orphan.mkdir(parents=True)
        outcome = project.run()
        assert outcome.status == "stopped"
        assert not orphan.exists()  # swept: no checkpoint names it
        with project.db.read() as s:
            versions = [v for v in s.scalars(select(ModelVersion)) if v.selected]
            labels = current_labels(s)
            proposals = list(
                s.scalars(select(Annotation).where(Annotation.source == LabelSource.MODEL))
            )
        assert len(labels) == 12
        assert versions and all(v.recipe == "external" for v in versions)
        assert all("map50" in v.metrics for v in versions)
        assert all(v.path.endswith(".json") for v in versions)
        assert proposals  # the script's blobs, proposed on the queued images
        runs = [p for p in (project.root / "external").iterdir() if p.is_dir()]
        assert len(runs) < len(versions)  # older runs were pruned with their checkpoints
        # the runs live in the project; pruned checkpoints take their run folders along
        kept = {
            json.loads((project.root / v.path).read_text())["run_dir"] for v in s_versions(project)
        }
        assert {str(p.resolve()) for p in runs} == {str(Path(k).resolve()) for k in kept}


def s_versions(project: Project) -> list[ModelVersion]:
    """The model versions whose checkpoint is still on disk."""
    with project.db.read() as s:
        return [v for v in s.scalars(select(ModelVersion)) if (project.root / v.path).exists()]


def test_new_proposals_withdraw_an_older_models_open_ones(tmp_path: Path, coco: Path) -> None:
    """An item queued again (its stale entry was dropped unseen) shows one model's
    proposals: the older open ones are withdrawn (deleted), with their history kept."""
    from exemplar.loop.tasks import write_proposals
    from exemplar.objects import Objects
    from exemplar.store.annotations import AnnotationIn, add_annotations

    with detection_project(tmp_path) as project:
        project.import_(coco, labels_as="ground_truth")
        with project.db.read() as s:
            item_id = s.scalar(select(Item.id).limit(1))
        first = Objects([[1, 1, 9, 9], [20, 20, 30, 30]], [0, 1], [0.9, 0.8])
        second = Objects([[2, 2, 10, 10]], [0], [0.7])
        with project.db.session() as s:  # another tool's pre-annotation: it stays
            add_annotations(
                s,
                item_id,
                [AnnotationIn("nucleus", (40.0, 40.0, 50.0, 50.0), confidence=0.6)],
                status="proposed",
                source="import",
                classes=CLASSES,
            )
            # a tracker's box from a person's video work (source model): it stays too
            add_annotations(
                s,
                item_id,
                [AnnotationIn("nucleus", (30.0, 40.0, 38.0, 50.0), confidence=0.8)],
                status="proposed",
                source="model",
                model_version="tracker:template",
                classes=CLASSES,
            )
        with project.db.session() as s:
            assert (
                write_proposals(s, {item_id: first}, project, model_version="a", cycle_id=None) == 2
            )
        with project.db.session() as s:
            assert (
                write_proposals(s, {item_id: second}, project, model_version="b", cycle_id=None)
                == 1
            )
        with project.db.read() as s:
            shown = current_annotations(s, [item_id], statuses=("proposed",))
            withdrawn = current_annotations(s, [item_id], statuses=("deleted",))
        assert sorted((a.source, a.model_version or "") for a in shown) == [
            ("import", ""),
            ("model", "b"),
            ("model", "tracker:template"),
        ]
        assert len(withdrawn) == 2 and {a.model_version for a in withdrawn} == {"a"}


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_polygon_truth_settles_box_and_mask_proposals(tmp_path: Path, task: str) -> None:
    """COCO truth with polygons: the simulated expert verifies a box proposal onto the true
    box, a mask proposal onto the true outline as a mask, and draws the rest as polygons."""
    coco = write_cells(tmp_path / "poly", 12, seed=6, polygons=True)
    recipe = "centernet-seg" if task == "segmentation" else "centernet"
    with Project.init(
        tmp_path / "p",
        CLASSES,
        task=task,
        oracle={"kind": "simulated"},
        data={"image_side": 64},
        model={
            "candidates": [
                {"recipe": recipe, "params": {"epochs": 2, "batch_size": 2, "lr": 0.01}}
            ],
            "proposal_threshold": 0.0,
        },
        selection={"strategy": "box_entropy", "batch_size": 3, "initial_size": 5},
        stopping={"criteria": [{"name": "label_budget", "budget": 11}]},
    ) as project:
        project.import_(coco, labels_as="ground_truth")
        assert project.run().status == "stopped"
        with project.db.read() as s:
            verified = current_annotations(s, None, statuses=(AnnotationStatus.VERIFIED,))
            truth = current_annotations(s, None, statuses=(AnnotationStatus.GROUND_TRUTH,))
        labeled = {a.item_id for a in verified}
        want = [t for t in truth if t.item_id in labeled]
        assert len(verified) == len(want)  # every true object, once, on labeled images
        kinds = {a.geometry for a in verified}
        assert kinds <= {"polygon", "box" if task == "detection" else "mask"}
        assert "polygon" in kinds  # objects no proposal found are drawn as the truth is
        with project.db.read() as s:
            proposed_ids = set(
                s.scalars(
                    select(Annotation.object_id).where(Annotation.source == LabelSource.MODEL)
                )
            )
        matched = [a for a in verified if a.object_id in proposed_ids]
        assert matched, "some proposals matched the truth and were verified"
        assert {a.geometry for a in matched} == {"box" if task == "detection" else "mask"}
