"""The loop with ``[selection] cost_aware = true``: once enough labels carry a time, the
select state ranks by utility per expected second (a cost model fitted on the recorded
times) and records what it learned in the cycle's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select

from exemplar.errors import ConfigError
from exemplar.project import Project
from exemplar.project.costs import label_costs
from exemplar.store.schema import Cycle, Item, ModelVersion, QueueEntry
from loop_helpers import make_project

N = 300
#: Digits drawn with more ink take longer to label: 10 s at the median ink, e-fold per 25
#: units of ink (1 s to 400 s over these digits). A cost the item's features tell,
#: whatever its class.
INK = load_digits().data[:N].sum(axis=1)
SECONDS = 10.0 * np.exp((INK - np.median(INK)) / 25.0)


def _truth(project: Project, item_id: int) -> str:
    with project.db.read() as s:
        value = s.get_one(Item, item_id).ground_truth
    assert value is not None
    return value


def _label_batch(project: Project) -> None:
    while (leased := project.next_item("ann")) is not None:
        truth = _truth(project, leased.item_id)
        seconds = float(SECONDS[leased.item_row])
        project.submit_label(leased.entry_id, "ann", truth, seconds=seconds)


def _second_batch(root: Path, **selection: Any) -> tuple[list[int], dict[str, Any], dict[str, Any]]:
    """Label the first (random) batch with ink-dependent times, run one more cycle, and
    return the second batch's feature rows, that cycle's metrics and the costs report."""
    sel = {"batch_size": 10, "initial_size": 40, "strategy": "margin", **selection}
    with make_project(root, oracle="human", n=N, budget=60, selection=sel) as project:
        assert project.run().status == "waiting"
        _label_batch(project)
        assert project.run().status == "waiting"
        with project.db.read() as s:
            cycle = s.scalars(select(Cycle).order_by(Cycle.number.desc())).first()
            assert cycle is not None
            rows = list(
                s.scalars(
                    select(Item.row)
                    .join(QueueEntry, QueueEntry.item_id == Item.id)
                    .where(QueueEntry.cycle_id == cycle.id)
                )
            )
            metrics = dict(cycle.metrics)
        report = label_costs(project)
    return rows, metrics, report


def test_cost_aware_selection_prefers_quick_items(tmp_path: Path) -> None:
    plain, plain_metrics, _ = _second_batch(tmp_path / "plain")
    costly, metrics, report = _second_batch(tmp_path / "cost", cost_aware=True, cost_min_labels=10)
    assert "cost_model" not in plain_metrics
    record = metrics["cost_model"]
    assert record["applied"] is True and record["n_timed"] == 40
    assert record["kind"] == "regression"  # the pixels tell heavy digits apart
    # The batch takes far less time to label than margin's own batch.
    assert SECONDS[costly].sum() < 0.5 * SECONDS[plain].sum()
    # The service behind `exemplar costs` and GET /api/v1/costs sees the same.
    assert report["n_timed"] == 40 and report["cost_aware"] is True
    assert set(report["per_annotator"]) == {"ann"}
    assert report["per_annotator"]["ann"]["labels"] == 40
    assert (
        report["last_cycle"]["applied"] is True and report["last_cycle"]["cycle"] == 1
    )  # cycles count from 0
    assert report["model"]["kind"] == "regression"


def test_too_few_timed_labels_leave_the_strategy_alone(tmp_path: Path) -> None:
    plain, _, _ = _second_batch(tmp_path / "plain")
    gated, metrics, report = _second_batch(tmp_path / "gated", cost_aware=True, cost_min_labels=50)
    assert sorted(gated) == sorted(plain)  # same seed and strategy: the same batch
    record = metrics["cost_model"]
    assert record["applied"] is False and "fewer than cost_min_labels=50" in record["reason"]
    assert report["last_cycle"]["applied"] is False


class _Interrupted(Exception):
    """Stands in for a kill at a crash point."""


def test_cost_model_sees_out_of_sample_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timed items are labeled, so the stored probabilities are in-sample for them;
    the cost model is fitted on cross-validated ones (3 folds of the recipe)."""
    from exemplar.loop.scoring import load_scored
    from exemplar.models.label_cost import LabelCostModel

    seen: dict[str, Any] = {}
    real_fit = LabelCostModel.fit

    def spy(self: LabelCostModel, X: Any, seconds: Any, **kw: Any) -> LabelCostModel:
        seen.update(kw, rows=np.asarray(X).shape[0])
        return real_fit(self, X, seconds, **kw)

    monkeypatch.setattr(LabelCostModel, "fit", spy)
    sel = {"batch_size": 10, "initial_size": 40, "strategy": "margin", "cost_aware": True}
    with make_project(
        tmp_path / "p", oracle="human", n=N, budget=60, selection={**sel, "cost_min_labels": 10}
    ) as project:
        project.run()
        _label_batch(project)
        project.run()
        with project.db.read() as s:
            cycle = s.scalars(select(Cycle).order_by(Cycle.number.desc())).first()
            assert cycle is not None
            metrics = dict(cycle.metrics)
            timed_rows = sorted(
                s.scalars(select(Item.row).join(QueueEntry).where(QueueEntry.cycle_id != cycle.id))
            )
            version = s.get_one(ModelVersion, cycle.model_version_id).version
        stored = load_scored(project.arrays, version)
    held = seen["proba"]
    assert held is not None and held.shape == (40, 10) and seen["rows"] == 40
    assert metrics["cost_model"]["inputs"] == ["features", "proba"]
    in_sample = np.asarray(stored.predictions.proba)[timed_rows]
    # Cross-validated probabilities are less sure than the in-sample ones on these items.
    assert held.max(axis=1).mean() < in_sample.max(axis=1).mean() - 0.05


def test_items_imported_between_score_and_select(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The features then cover more rows than the stored probabilities: the cost model
    scores the rows that were scored, and the select state does not crash."""
    import exemplar.loop.engine as engine_module

    X, y = load_digits(return_X_y=True)
    more = tmp_path / "more.npz"
    np.savez(more, X=X[N : N + 100], y=y[N : N + 100].astype(str))
    sel = {"batch_size": 10, "initial_size": 40, "strategy": "margin", "cost_aware": True}
    with make_project(
        tmp_path / "p", oracle="human", n=N, budget=60, selection={**sel, "cost_min_labels": 10}
    ) as project:
        project.run()
        _label_batch(project)

        def crash(name: str) -> None:
            if name == "enter:select:1":
                raise _Interrupted(name)

        monkeypatch.setattr(engine_module, "crash_point", crash)
        with pytest.raises(_Interrupted):
            project.run()
        monkeypatch.undo()
        project.import_(more, labels_as="ground_truth")
        assert project.run().status == "waiting"
        with project.db.read() as s:
            cycle = s.scalars(select(Cycle).order_by(Cycle.number.desc())).first()
            assert cycle is not None
            rows = list(
                s.scalars(select(Item.row).join(QueueEntry).where(QueueEntry.cycle_id == cycle.id))
            )
            record = dict(cycle.metrics)["cost_model"]
    assert record["applied"] is True and len(rows) == 10
    assert max(rows) < N  # selected on the scores saved before the import
    assert max(rows) < N  # only scored rows could be picked in this cycle


def test_cost_aware_albl_is_refused(tmp_path: Path) -> None:
    sel = {"strategy": "albl", "cost_aware": True}
    with pytest.raises(ConfigError, match="cost_aware"):
        make_project(tmp_path / "p", oracle="human", n=N, selection=sel)
