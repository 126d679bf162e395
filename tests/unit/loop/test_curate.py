"""Curation in the loop: the cycle's ``curate`` state, class split and merge, weak labels,
hard negatives and expiry in training, and label errors found in injected noise.

Small digits projects (tests/loop_helpers.make_project) with the simulated oracle.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.loop.config import CONFIG_NAME, load_config
from exemplar.loop.curate import (
    apply_curation,
    curate_cycle,
    label_error_operation,
    merge_operation,
    split_operation,
    undo_curation,
)
from exemplar.loop.engine import LoopEngine
from exemplar.loop.tasks import ClassificationTask
from exemplar.project import Project
from exemplar.store.curation import (
    class_renames,
    list_operations,
    operation_candidates,
    verification_queue,
    verify_proposal,
)
from exemplar.store.labels import CurrentLabel, add_label, current_labels
from exemplar.store.schema import (
    CurationOperation,
    Cycle,
    CycleState,
    Item,
    Label,
    LabelSource,
    LabelStatus,
    ModelVersion,
)
from loop_helpers import CLASSES, make_project, snapshot

SAMPLE = 60
AUTO: dict[str, Any] = {"auto": ["propose", "label_errors", "prune"], "propose_sample": SAMPLE}


def curation_snapshot(project: Project) -> list[tuple[Any, ...]]:
    """Every recorded operation with its candidates, free of database ids."""
    with project.db.read() as s:
        uid = dict(s.execute(select(Item.id, Item.uid)).all())
        number = dict(s.execute(select(Cycle.id, Cycle.number)).all())
        out = []
        for op in s.scalars(select(CurationOperation).order_by(CurationOperation.id)):
            cands = sorted(
                (
                    uid[c.item_id],
                    c.reason,
                    c.current_label,
                    c.suggested_label,
                    None if c.score is None else round(c.score, 6),
                    c.decision,
                )
                for c in operation_candidates(s, op.id)
            )
            out.append((op.kind, number.get(op.cycle_id), op.status, op.summary, tuple(cands)))
    return out


class _Stop(Exception):
    """Raised from the engine's progress callback to stop a run after a given state."""


def _stop_after(message: str) -> Any:
    def on_event(msg: str) -> None:
        if msg.startswith(message):
            raise _Stop(msg)

    return on_event


# -- the curate state -------------------------------------------------------------------------


def test_curate_state_records_proposals_and_operations_per_cycle(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=40, curation=AUTO) as p:
        assert p.run().status == "stopped"
        with p.db.read() as s:
            cycles = {c.id: c for c in s.scalars(select(Cycle))}
            versions = {v.cycle_id: v.version for v in s.scalars(select(ModelVersion))}
            proposals = list(s.scalars(select(Label).where(Label.source == LabelSource.MODEL)))
            ops = list_operations(s)
            per_op = {o.id: len(operation_candidates(s, o.id)) for o in ops}
            verified = current_labels(s)
    # cycles 1 and 2 ran the curate state (cycle 0 is the cold start, without a model)
    assert proposals
    assert {cycles[r.cycle_id].number for r in proposals} == {1, 2}
    for r in proposals:
        assert r.status == LabelStatus.PROPOSED and r.strategy == "curation:propose"
        assert r.model_version == versions[r.cycle_id]  # the model of the cycle proposing
        assert r.confidence is not None and 0.0 < r.confidence <= 1.0
    per_cycle = Counter(cycles[r.cycle_id].number for r in proposals)
    assert all(0 < n <= SAMPLE for n in per_cycle.values())
    # operations carry their cycle, and the cycle's metrics name them
    assert ops and all(o.cycle_id in cycles for o in ops)
    assert {o.kind for o in ops} <= {"label_errors", "prune"}
    assert all(per_op[o.id] > 0 and o.status == "proposed" for o in ops)
    for c in cycles.values():
        recorded = sorted(o.id for o in ops if o.cycle_id == c.id)
        if c.number == 0:
            assert "curation" not in c.metrics and not recorded
            continue
        assert sorted(c.metrics["curation"]["operations"]) == recorded
        assert c.metrics["curation"]["proposed"] == per_cycle[c.number]
    # proposals are not labels: the budget of 40 bought 40 verified labels
    assert len(verified) == 40 and all(v.source == LabelSource.SIMULATED for v in verified)
    assert all("curate" in c.timings for c in cycles.values() if c.number > 0)


def test_curate_state_run_twice_records_nothing_twice(tmp_path: Path) -> None:
    """Re-entering a cycle's curate state after it recorded (a crash before the transition)
    adds no proposal and no operation: the resumed project equals an uninterrupted one."""
    with (
        make_project(tmp_path / "ref", budget=40, curation=AUTO) as ref,
        make_project(tmp_path / "p", budget=40, curation=AUTO) as p,
    ):
        ref.run()
        with pytest.raises(_Stop):
            LoopEngine(p, on_event=_stop_after("cycle 2: curate done")).run()
        with p.db.session() as s:
            (cycle,) = s.scalars(select(Cycle).where(Cycle.number == 2))
            assert cycle.state == CycleState.SELECT
            cycle.state = CycleState.CURATE  # as if killed before the transition committed
        LoopEngine(p).run()
        assert curation_snapshot(p) == curation_snapshot(ref)
        assert snapshot(p)["labels"] == snapshot(ref)["labels"]
        assert snapshot(p)["queue"] == snapshot(ref)["queue"]


@pytest.mark.slow
def test_curate_state_run_twice_keeps_the_cycle_metrics(tmp_path: Path) -> None:
    with (
        make_project(tmp_path / "ref", budget=40, curation=AUTO) as ref,
        make_project(tmp_path / "p", budget=40, curation=AUTO) as p,
    ):
        ref.run()
        with pytest.raises(_Stop):
            LoopEngine(p, on_event=_stop_after("cycle 2: curate done")).run()
        with p.db.session() as s:
            (cycle,) = s.scalars(select(Cycle).where(Cycle.number == 2))
            cycle.state = CycleState.CURATE
        LoopEngine(p).run()
        assert snapshot(p)["cycles"] == snapshot(ref)["cycles"]


def test_curate_cycle_called_again_writes_nothing(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=40, curation=AUTO) as p:
        p.run(max_cycles=2)  # cycle 1 curated
        before = (snapshot(p)["labels"], curation_snapshot(p))
        with p.db.read() as s:
            (cycle,) = s.scalars(select(Cycle).where(Cycle.number == 1))
            s.expunge(cycle)
        recorded = cycle.metrics["curation"]
        found = curate_cycle(p, cycle, model=None, version=None, recipe=None, proba=lambda: None)
        assert (snapshot(p)["labels"], curation_snapshot(p)) == before  # nothing written
        # ... and it reports what the cycle recorded the first time, read back from the rows
        assert recorded["proposed"] > 0 and recorded["operations"]
        assert (found.proposed, found.operations) == (recorded["proposed"], recorded["operations"])


# -- split and merge ---------------------------------------------------------------------------


def _toml_classes(p: Project) -> list[str]:
    return list(load_config(p.root / CONFIG_NAME).project.classes)


def _current(p: Project) -> dict[int, str | None]:
    with p.db.read() as s:
        return {c.item_id: c.label for c in current_labels(s)}


def test_split_apply_and_undo_change_classes_and_labels(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=60, n=400) as p:
        p.run(max_cycles=3)  # 40 labels
        labels = _current(p)
        big = Counter(labels.values()).most_common(1)[0][0]
        assert big is not None
        members = {i for i, lab in labels.items() if lab == big}
        assert len(members) >= 4
        op = split_operation(p, big, names=[f"{big}a", f"{big}b"], created_by="lead")
        assert sorted(c.item_id for c in _candidates(p, op.id)) == sorted(members)
        report = apply_curation(p, op.id, reviewer="rev", accept_pending=True)
        assert report.written == len(members) and not report.skipped
        at = CLASSES.index(big)  # the new classes take the old one's place
        after = [*CLASSES[:at], f"{big}a", f"{big}b", *CLASSES[at + 1 :]]
        assert p.classes == after and _toml_classes(p) == after
        now = _current(p)
        assert {now[i] for i in members} == {f"{big}a", f"{big}b"}  # both new classes used
        assert big not in now.values()
        assert {i: lab for i, lab in now.items() if i not in members} == {
            i: lab for i, lab in labels.items() if i not in members
        }
        with Project.open(p.root) as again:  # the project opens with the new classes
            assert again.classes == after
        undone = undo_curation(p, op.id, reviewer="rev")
        assert undone.written == len(members) and not undone.skipped
        assert p.classes == CLASSES and _toml_classes(p) == CLASSES
        assert _current(p) == labels
        with p.db.read() as s:  # history kept: original, split, restored
            for i in members:
                rows = list(
                    s.scalars(select(Label.label).where(Label.item_id == i).order_by(Label.id))
                )
                assert rows[-3] == big and rows[-2] in (f"{big}a", f"{big}b") and rows[-1] == big


def _candidates(p: Project, op_id: int) -> list[Any]:
    with p.db.read() as s:
        return operation_candidates(s, op_id)


def test_split_rejects_unknown_or_clashing_classes(tmp_path: Path) -> None:
    from exemplar.store.curation import CurationError

    with make_project(tmp_path / "p", budget=60, n=300) as p:
        p.run(max_cycles=3)
        big = str(Counter(_current(p).values()).most_common(1)[0][0])
        other = next(c for c in CLASSES if c != big)
        with pytest.raises(CurationError, match="unknown class 'x'"):
            split_operation(p, "x", names=["y", "z"])
        with pytest.raises(CurationError, match=f"distinct and new: {other}"):
            split_operation(p, big, names=[other, "new"])
        with pytest.raises(CurationError, match="distinct and new: repeated"):
            split_operation(p, big, names=["new", "new"])
        small = [c for c, n in Counter(_current(p).values()).items() if n < 4]
        if small:
            with pytest.raises(CurationError, match="a split needs at least 4"):
                split_operation(p, str(small[0]), names=["y", "z"])
        with p.db.read() as s:
            assert list_operations(s) == []  # nothing recorded by refused requests


def test_applying_a_split_twice_says_it_is_applied(tmp_path: Path) -> None:
    from exemplar.store.curation import CurationError

    with make_project(tmp_path / "p", budget=60, n=300) as p:
        p.run(max_cycles=3)
        big = str(Counter(_current(p).values()).most_common(1)[0][0])
        op = split_operation(p, big, names=["new_a", "new_b"])
        apply_curation(p, op.id, reviewer="rev", accept_pending=True)
        with pytest.raises(CurationError, match=f"cannot apply operation {op.id}: it is applied"):
            apply_curation(p, op.id, reviewer="rev", accept_pending=True)


def test_merge_then_the_simulated_oracle_answers_the_merged_name(tmp_path: Path) -> None:
    with make_project(tmp_path / "p", budget=200, n=400) as p:
        p.run(max_cycles=2)  # 30 labels
        before = _current(p)
        op = merge_operation(p, ["1", "7"], "17")
        report = apply_curation(p, op.id, reviewer="rev", accept_pending=True)
        merged = [i for i, lab in before.items() if lab in ("1", "7")]
        assert report.written == len(merged) > 0
        assert "1" not in p.classes and "7" not in p.classes and "17" in p.classes
        assert _toml_classes(p) == p.classes
        with p.db.read() as s:
            assert class_renames(s) == {"1": "17", "7": "17"}
            seen = {r.id for r in s.scalars(select(Label))}
        assert p.run(max_cycles=2).status == "max_cycles"  # two further cycles
        with p.db.read() as s:
            truth = dict(s.execute(select(Item.id, Item.ground_truth)).all())
            new = [
                r
                for r in s.scalars(select(Label).where(Label.source == LabelSource.SIMULATED))
                if r.id not in seen
            ]
        assert len(new) == 20
        assert all(
            r.label == {"1": "17", "7": "17"}.get(truth[r.item_id], truth[r.item_id]) for r in new
        )
        assert any(r.label == "17" for r in new)
        assert {r.label for r in new} <= set(p.classes)


# -- weak labels, hard negatives, expiry -------------------------------------------------------


def _proposal_rows(p: Project) -> dict[int, CurrentLabel]:
    """Every item's newest row where it is an open proposal."""
    with p.db.read() as s:
        rows = current_labels(s, verified_only=False)
    return {
        r.item_id: r
        for r in rows
        if r.source == LabelSource.MODEL and r.status == LabelStatus.PROPOSED
    }


@pytest.mark.parametrize(("weak_weight", "verified_repeats"), [(0.5, 2), (0.3, 3)])
def test_weak_mode_trains_on_confident_proposals_untrusted(
    tmp_path: Path, weak_weight: float, verified_repeats: int
) -> None:
    cur = {
        "auto": ["propose"],
        "propose_sample": 80,
        "unverified": "weak",
        "weak_weight": weak_weight,
        "weak_min_confidence": 0.6,
    }
    with make_project(tmp_path / "p", budget=200, n=300, curation=cur) as p:
        p.run(max_cycles=2)
        open_rows = _proposal_rows(p)
        confident = {i for i, r in open_rows.items() if (r.confidence or 0) >= 0.6}
        assert confident and len(confident) < len(open_rows)  # the threshold splits them
        verified = set(_current(p))
        got = ClassificationTask().labeled(p, for_training=True)
        assert got.repeats is not None and got.trusted is not None
        by_item = {
            int(i): (int(r), bool(t), str(y))
            for i, r, t, y in zip(got.item_ids, got.repeats, got.trusted, got.y, strict=True)
        }
        assert set(by_item) == verified | confident
        assert all(by_item[i][:2] == (verified_repeats, True) for i in verified)
        assert all(by_item[i] == (1, False, open_rows[i].label) for i in confident)
        # without for_training: the verified set only, once each
        plain = ClassificationTask().labeled(p)
        assert set(plain.item_ids.tolist()) == verified and plain.repeats is None


def _verify_wrong(p: Project, n: int) -> list[int]:
    """Correct the ``n`` most confident open proposals to another class (hard negatives)."""
    with p.db.read() as s:
        views, _ = verification_queue(s, order="confident", limit=n)
    with p.db.session() as s:
        for v in views:
            other = next(c for c in p.classes if c != v.label)
            verify_proposal(s, "label", v.id, reviewer="rev", classes=p.classes, label=other)
    return [v.item_id for v in views]


def test_hard_negatives_count_hard_negative_weight_times(tmp_path: Path) -> None:
    cur = {"auto": ["propose"], "propose_sample": 50, "hard_negative_weight": 3}
    with make_project(tmp_path / "p", budget=200, n=300, curation=cur) as p:
        p.run(max_cycles=2)
        plain = ClassificationTask().labeled(p, for_training=True)
        assert plain.repeats is None and plain.trusted is None  # drop mode, nothing weighed
        assert not set(plain.item_ids.tolist()) & set(_proposal_rows(p))  # proposals dropped
        hard = _verify_wrong(p, 3)
        got = ClassificationTask().labeled(p, for_training=True)
        assert got.repeats is not None
        repeats = dict(zip(got.item_ids.tolist(), got.repeats.tolist(), strict=True))
        assert all(repeats[i] == 3 for i in hard)
        assert all(r == 1 for i, r in repeats.items() if i not in hard)
        # the next cycle trains with them (and counts them once as labels)
        assert p.run(max_cycles=1).status == "max_cycles"
        with p.db.read() as s:
            newest = s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).first()
        assert newest is not None and newest.n_labels == len(repeats)


def test_hard_negatives_and_weak_weight_multiply(tmp_path: Path) -> None:
    cur = {
        "auto": ["propose"],
        "propose_sample": 50,
        "unverified": "weak",
        "weak_weight": 0.5,
        "hard_negative_weight": 3,
    }
    with make_project(tmp_path / "p", budget=200, n=300, curation=cur) as p:
        p.run(max_cycles=2)
        hard = _verify_wrong(p, 2)
        got = ClassificationTask().labeled(p, for_training=True)
        assert got.repeats is not None
        repeats = dict(zip(got.item_ids.tolist(), got.repeats.tolist(), strict=True))
        assert all(repeats[i] == 6 for i in hard)


def test_expire_mode_withdraws_old_proposals(tmp_path: Path) -> None:
    cur = {"auto": ["propose"], "propose_sample": 60, "unverified": "expire", "expire_after": 1}
    with make_project(tmp_path / "p", budget=200, n=300, curation=cur) as p:
        p.run(max_cycles=3)  # proposals in cycles 1 and 2; cycle 2 expires cycle 1's
        with p.db.read() as s:
            number = dict(s.execute(select(Cycle.id, Cycle.number)).all())
            expired = list(s.scalars(select(Label).where(Label.strategy == "curation:expired")))
            metrics = {c.number: c.metrics for c in s.scalars(select(Cycle))}
        open_rows = _proposal_rows(p)
        assert open_rows and {number[r.cycle_id] for r in open_rows.values()} == {2}
        # recorded by the cycle that withdrew them; they were cycle 1's model's proposals
        assert expired and {number[r.cycle_id] for r in expired} == {2}
        assert {r.model_version for r in expired} == {"c0001-m0"}
        assert all(r.status == LabelStatus.REJECTED and r.source == "model" for r in expired)
        assert metrics[2]["curation"]["expired"] == len(expired)
        assert metrics[1]["curation"]["expired"] == 0
        # expired items stay in the pool (no person labeled them)
        from exemplar.store.pool import free_pool, pool_items

        with p.db.read() as s:
            rows, ids = pool_items(s)
            free = set(free_pool(s, rows, ids, p.n_rows)[1].tolist())
        assert {r.item_id for r in expired} <= free | set(_current(p))


# -- label errors in injected noise ------------------------------------------------------------


def test_label_errors_find_injected_noise_within_twice_the_budget(tmp_path: Path) -> None:
    """Flip 10% of 300 verified digits; confident learning (Northcutt et al. 2021) on
    out-of-fold probabilities must bring most of them up within 2x their number."""
    n_labeled, n_flipped = 300, 30
    cur = {"review_budget": 2 * n_flipped}
    with make_project(tmp_path / "p", budget=400, n=400, curation=cur) as p:
        rng = np.random.default_rng(0)
        with p.db.session() as s:
            items = list(s.scalars(select(Item).order_by(Item.row).limit(n_labeled)))
            truth = {it.id: str(it.ground_truth) for it in items}
            for it in items:
                add_label(s, it.id, truth[it.id], classes=CLASSES, source=LabelSource.SIMULATED)
            flipped = rng.choice([it.id for it in items], n_flipped, replace=False).tolist()
            for i in flipped:
                wrong = str(rng.choice([c for c in CLASSES if c != truth[i]]))
                add_label(s, i, wrong, classes=CLASSES, source=LabelSource.HUMAN, annotator="x")
        op = label_error_operation(p, seed=0)
        assert op is not None and op.kind == "label_errors"
        cands = _candidates(p, op.id)
        assert len(cands) <= 2 * n_flipped
        found = {c.item_id for c in cands if c.reason == "confident_learning"} & set(flipped)
        recall = len(found) / n_flipped
        assert recall >= 0.7, f"recall {recall:.2f} in the top {2 * n_flipped}"
        fixed = [c for c in cands if c.item_id in found]
        right = sum(c.suggested_label == truth[c.item_id] for c in fixed)
        assert right / len(fixed) >= 0.8  # the suggested class is mostly the true one
        # a second call proposes nothing already pending
        assert label_error_operation(p, seed=0) is None
