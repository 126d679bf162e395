"""Curation at its edges: merged classes, repeated proposals, resolved disagreements, the
project lock and class lists shared between processes, and the labeling page's undo."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from exemplar.errors import ProjectError
from exemplar.loop.config import CONFIG_NAME, load_config, save_config
from exemplar.loop.curate import apply_curation, label_error_operation, merge_operation
from exemplar.loop.engine import LoopEngine
from exemplar.loop.lock import project_lock
from exemplar.project import Project, curation
from exemplar.store.curation import (
    decide,
    operation_candidates,
    reject_proposal,
    verify_proposal,
    write_label_proposals,
)
from exemplar.store.labels import add_label, current_labels
from exemplar.store.queue import undo_last
from exemplar.store.schema import Item, Label, LabelSource, LabelStatus, ModelVersion
from loop_helpers import CLASSES, make_project


def _pool_items(p: Project, n: int) -> list[int]:
    with p.db.read() as s:
        labeled = {c.item_id for c in current_labels(s, verified_only=False)}
        ids = [i for i in s.scalars(select(Item.id).order_by(Item.row)) if i not in labeled]
    return ids[:n]


def test_merged_class_proposal_is_accepted_without_hard_negative_and_can_be_rejected(
    tmp_path: Path,
) -> None:
    with make_project(tmp_path / "p", budget=30) as p:
        p.run(max_cycles=2)
        a, b = _pool_items(p, 2)
        with p.db.session() as s:
            write_label_proposals(
                s,
                [(a, "7", 0.99), (b, "7", 0.99)],
                classes=CLASSES,
                model_version="m",
                cycle_id=None,
            )
            rows = {
                r.item_id: r.id for r in s.scalars(select(Label).where(Label.model_version == "m"))
            }
        op = merge_operation(p, ["1", "7"], "17")
        apply_curation(p, op.id, reviewer="rev", accept_pending=True)
        assert "7" not in p.classes
        with p.db.session() as s:
            accepted = verify_proposal(s, "label", rows[a], reviewer="rev", classes=p.classes)
            rejected = reject_proposal(s, "label", rows[b], reviewer="rev", classes=p.classes)
        with p.db.read() as s:
            row = s.get_one(Label, accepted)
            assert (row.label, row.status, bool(row.hard_negative)) == ("17", "verified", False)
            assert s.get_one(Label, rejected).status == LabelStatus.REJECTED


def test_the_same_model_never_proposes_a_rejected_item_again(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30) as p:
        (item,) = _pool_items(p, 1)
        with p.db.session() as s:
            write_label_proposals(
                s, [(item, "3", 0.9)], classes=CLASSES, model_version="m", cycle_id=None
            )
            (row,) = s.scalars(select(Label).where(Label.item_id == item))
            reject_proposal(s, "label", row.id, reviewer="rev", classes=CLASSES)
            again = write_label_proposals(
                s, [(item, "3", 0.9)], classes=CLASSES, model_version="m", cycle_id=None
            )
            newer = write_label_proposals(
                s, [(item, "5", 0.8)], classes=CLASSES, model_version="m2", cycle_id=None
            )
        assert (again, newer) == (0, 1)  # a newer model may propose it again


def test_a_resolved_disagreement_is_not_flagged_again(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30) as p:
        item = _pool_items(p, 1)[0]
        with p.db.session() as s:
            add_label(s, item, "3", classes=CLASSES, source=LabelSource.HUMAN, annotator="ann")
            add_label(s, item, "5", classes=CLASSES, source=LabelSource.HUMAN, annotator="bob")
        op = label_error_operation(p)
        assert op is not None
        with p.db.session() as s:
            (cand,) = [c for c in operation_candidates(s, op.id) if c.item_id == item]
            assert cand.reason == "annotator_disagreement"
            decide(s, op.id, {cand.id: "accepted"}, reviewer="rev", labels={cand.id: "3"})
        apply_curation(p, op.id, reviewer="rev")
        again = label_error_operation(p)
        if again is not None:
            with p.db.read() as s:
                assert item not in {c.item_id for c in operation_candidates(s, again.id)}


def test_a_class_added_after_a_merge_was_proposed_survives_its_apply(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30) as p:
        p.run(max_cycles=2)
        op = merge_operation(p, ["1", "7"], "17")
        config = load_config(p.root / CONFIG_NAME)
        config.project.classes = [*config.project.classes, "11"]
        save_config(config, p.root / CONFIG_NAME)  # another process adds a class
        assert "11" in p.classes  # read again from exemplar.toml
        apply_curation(p, op.id, reviewer="rev", accept_pending=True)
        assert "11" in load_config(p.root / CONFIG_NAME).project.classes
        assert "17" in p.classes and "1" not in p.classes


def test_a_class_change_waits_for_no_one_while_the_loop_runs(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30) as p:
        p.run(max_cycles=2)
        op = merge_operation(p, ["1", "7"], "17")
        with project_lock(p.root), pytest.raises(ProjectError, match="another"):
            apply_curation(p, op.id, reviewer="rev", accept_pending=True)
        assert "7" in load_config(p.root / CONFIG_NAME).project.classes  # nothing changed


def test_weak_labels_do_not_count_as_labels_of_the_model(tmp_path: Path) -> None:
    cur = {
        "auto": ["propose"],
        "propose_sample": 60,
        "unverified": "weak",
        "weak_min_confidence": 0.0,
    }
    with make_project(tmp_path / "p", budget=40, curation=cur) as p:
        p.run(max_cycles=3)
        with p.db.read() as s:
            verified = len(current_labels(s))
            newest = s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).first()
            weak = s.scalar(
                select(Label.id).where(Label.source == "model", Label.status == "proposed").limit(1)
            )
        assert weak is not None and newest is not None
        assert newest.n_labels <= verified  # weak rows trained on, never counted as labels


def test_undo_on_the_labeling_page_skips_a_curation_verdict(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30, oracle="human") as p:
        engine = LoopEngine(p)
        engine.run(max_cycles=1)  # cold-start batch queued for people
        leased = p.next_item("ann")
        assert leased is not None
        p.submit_label(leased.entry_id, "ann", "3")
        (item,) = _pool_items(p, 1)
        with p.db.session() as s:
            write_label_proposals(
                s, [(item, "4", 0.9)], classes=CLASSES, model_version="m", cycle_id=None
            )
            (row,) = s.scalars(select(Label).where(Label.item_id == item))
            verify_proposal(s, "label", row.id, reviewer="ann", classes=CLASSES)
        undone = undo_last(p.db, "ann", lease_seconds=60)
        assert undone is not None and undone.item_id == leased.item_id  # the queue label
        with p.db.read() as s:
            current = {c.item_id: c.label for c in current_labels(s)}
        assert current[item] == "4"  # the verdict stays


def test_status_counts_open_proposals(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=30) as p:
        ids = _pool_items(p, 3)
        with p.db.session() as s:
            write_label_proposals(
                s, [(i, "2", 0.5) for i in ids], classes=CLASSES, model_version="m", cycle_id=None
            )
        assert p.status()["curation"]["proposals_to_verify"] == 3
        assert curation.verification(p, limit=2)["total"] == 3


def test_objects_are_proposed_once_per_image_and_ground_truth_does_not_block_it(
    tmp_path: Path,
) -> None:
    from exemplar.store.annotations import current_annotations
    from exemplar.store.schema import AnnotationStatus
    from loop_helpers import make_cells_project

    p = make_cells_project(tmp_path / "cells", n=16, budget=8, model_params={"epochs": 2})
    try:
        p.run(max_cycles=2)
        first = curation.propose_now(p, sample=0)
        assert first["proposed"] > 0  # hidden ground truth on every image blocks nothing
        with p.db.read() as s:
            proposed = current_annotations(s, statuses=(AnnotationStatus.PROPOSED,))
        assert {a.model_version for a in proposed} >= {first["model_version"]}
        again = curation.propose_now(p, sample=0)
        assert again["proposed"] == 0  # images under review are not proposed again
    finally:
        p.close()


def test_object_embedding_weighs_size_beside_the_crop() -> None:
    import numpy as np

    from exemplar.loop.curate import _object_embedding

    rng = np.random.default_rng(0)
    crops = rng.random((40, 12))
    sizes = np.r_[np.full(20, np.log(2.0)), np.full(20, np.log(9.0))]
    raw = np.column_stack([crops, sizes, sizes])
    emb = _object_embedding(raw, raw)
    np.testing.assert_allclose(np.linalg.norm(emb[:, :-2], axis=1), 1.0, rtol=1e-5)
    small, large = emb[:20, -2:].mean(), emb[20:, -2:].mean()
    assert small < 0 < large  # standardized on the reference: the two sizes fall apart
