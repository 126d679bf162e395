"""Labeling time is recorded with each label (``labels.seconds``): the page's timer when it
sends one, else the time from the lease to the answer; ``GET /api/v1/costs`` reports it.

On SQLite and on PostgreSQL (the async hot path while the app runs; the ``database_url``
fixture of tests/conftest.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
import server_helpers
from server_helpers import Served, ground_truth
from sqlalchemy import select

from exemplar.errors import QueueError
from exemplar.project import Project
from exemplar.store.schema import Item, Label
from loop_helpers import make_project

project_root = server_helpers.project_root
served = server_helpers.served

NEXT, LABELS = "/api/v1/items/next", "/api/v1/labels"


def _seconds(root: Path, label_id: int) -> float | None:
    with Project.open(root) as project, project.db.read() as s:
        return s.get_one(Label, label_id).seconds


def test_the_pages_timer_is_recorded_else_the_lease_to_the_answer(served: Served) -> None:
    client = served.login("ann")
    item = client.get(NEXT).json()
    body = {"entry_id": item["entry_id"], "label": ground_truth(served.root, item["item_id"])}
    timed = client.post(LABELS, json={**body, "seconds": 12.25, "idempotency_key": "key-0001"})
    assert timed.status_code == 200, timed.text
    assert _seconds(served.root, timed.json()["label_id"]) == pytest.approx(12.25)

    item = client.get(NEXT).json()
    time.sleep(0.2)
    untimed = client.post(
        LABELS,
        json={"entry_id": item["entry_id"], "label": ground_truth(served.root, item["item_id"])},
    )
    assert untimed.status_code == 200, untimed.text
    waited = _seconds(served.root, untimed.json()["label_id"])
    assert waited is not None and 0.2 <= waited < 30  # the lease to the answer

    # Every annotator's times: reviewers and admins only.
    assert client.get("/api/v1/costs").status_code == 403
    costs = served.login("rev").get("/api/v1/costs")
    assert costs.status_code == 200, costs.text
    assert served.login("boss").get("/api/v1/costs").json() == costs.json()
    report = costs.json()
    assert report["n_timed"] == 2
    assert report["median_seconds"] == pytest.approx((12.25 + waited) / 2)
    assert sum(g["labels"] for g in report["per_class"].values()) == 2
    assert report["per_annotator"]["ann"]["labels"] == 2
    assert report["model"]["kind"] == "median"  # 2 labels: fewer than cost_min_labels


def test_overlap_votes_record_each_annotators_time(tmp_path: Path, database_url: str) -> None:
    """With two annotators per item every vote is a label row with its own time (on
    PostgreSQL a vote leaves the one-statement submit for the transaction path)."""
    with make_project(
        tmp_path / "p",
        database_url=database_url,
        oracle="human",
        n=200,
        oracle_extra={"overlap": 2},
    ) as project:
        assert project.run().status == "waiting"
        for who, seconds in (("alice", 4.0), ("bob", None)):
            leased = project.next_item(who)
            assert leased is not None
            with project.db.read() as s:
                truth = s.get_one(Item, leased.item_id).ground_truth
            assert truth is not None
            project.submit_label(leased.entry_id, who, truth, seconds=seconds)
        with project.db.read() as s:
            votes = dict(s.execute(select(Label.annotator, Label.seconds)).all())
        assert votes["alice"] == 4.0
        assert votes["bob"] is not None and 0 < votes["bob"] < 30  # lease to answer


@pytest.mark.parametrize("bad", [0, -1.5, 86_400.5, "soon", math.inf])
def test_bad_seconds_are_a_422_and_write_nothing(served: Served, bad: object) -> None:
    client = served.login("ann")
    item = client.get(NEXT).json()
    truth = ground_truth(served.root, item["item_id"])
    payload = f'{{"entry_id": {item["entry_id"]}, "label": "{truth}", "seconds": '
    payload += "Infinity" if bad == math.inf else f'"{bad}"' if isinstance(bad, str) else str(bad)
    response = client.post(
        LABELS, content=payload + "}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert any("seconds" in e["loc"] for e in response.json()["detail"])
    with Project.open(served.root) as project, project.db.read() as s:
        assert s.scalars(select(Label)).first() is None


def test_the_python_api_checks_and_records_seconds(project_root: Path) -> None:
    with Project.open(project_root) as project:
        leased = project.next_item("ann")
        assert leased is not None
        truth = ground_truth(project_root, leased.item_id)
        with pytest.raises(QueueError, match="seconds must be over 0"):
            project.submit_label(leased.entry_id, "ann", truth, seconds=0.0)
        with pytest.raises(QueueError, match="seconds must be over 0"):
            project.submit_label(leased.entry_id, "ann", truth, seconds=float("nan"))
        project.submit_label(leased.entry_id, "ann", truth, seconds=7.5)
        with project.db.read() as s:
            rows = list(s.scalars(select(Label)))
        assert [r.seconds for r in rows] == [7.5]


def test_the_costs_report_is_cached_until_a_label_changes(
    project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exemplar.project.costs as costs_module

    fits = []
    real = costs_module.LabelCostModel.fit

    def counting(self: Any, *args: Any, **kw: Any) -> Any:
        fits.append(1)
        assert kw.get("proba") is None  # features only: no in-sample probabilities
        return real(self, *args, **kw)

    monkeypatch.setattr(costs_module.LabelCostModel, "fit", counting)
    with Project.open(project_root) as project:
        for k in range(2):
            leased = project.next_item("ann")
            assert leased is not None
            truth = ground_truth(project_root, leased.item_id)
            project.submit_label(leased.entry_id, "ann", truth, seconds=5.0 + k)
            first = costs_module.label_costs(project)
            assert costs_module.label_costs(project) == first  # no refit
            assert len(fits) == k + 1 and first["n_timed"] == k + 1
