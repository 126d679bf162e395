"""``exemplar relabel`` / :func:`exemplar.project.relabel.relabel_plan`: ActiveLab on a
project's overlap votes, and ``exemplar costs`` on the same project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.errors import ProjectError
from exemplar.project import Project
from exemplar.project.relabel import relabel_plan
from exemplar.store.accounts import User, add_user
from exemplar.store.schema import Item
from loop_helpers import make_project


def _truth(project: Project, item_id: int) -> str:
    with project.db.read() as s:
        value = s.get_one(Item, item_id).ground_truth
    assert value is not None
    return value


def _vote_all(project: Project, who: str, wrong_every: int = 0) -> None:
    """``who`` labels every slot it may take; every ``wrong_every``-th one wrongly."""
    k = 0
    while (leased := project.next_item(who)) is not None:
        label = _truth(project, leased.item_id)
        k += 1
        if wrong_every and k % wrong_every == 0:
            label = project.classes[(project.classes.index(label) + 1) % len(project.classes)]
        project.submit_label(leased.entry_id, who, label, seconds=4.0 if who == "alice" else 9.0)


@pytest.fixture
def voted(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    with make_project(
        root, oracle="human", n=200, budget=80, oracle_extra={"overlap": 2}
    ) as project:
        for name in ("alice", "bob", "carol"):  # carol has labeled nothing yet
            add_user(project.db, name, "annotator", "correct horse battery")
        assert project.run().status == "waiting"
        with pytest.raises(ProjectError, match="no human label yet"):
            relabel_plan(project)
        _vote_all(project, "alice")
        _vote_all(project, "bob", wrong_every=3)
        assert project.run().status == "waiting"
    return root


def test_the_careful_annotator_is_found_and_disputed_items_come_first(voted: Path) -> None:
    with Project.open(voted) as project:
        plan = relabel_plan(project, batch_size=10)
    alice, bob = plan["annotators"]["alice"], plan["annotators"]["bob"]
    assert alice["labels"] == bob["labels"] == 20 and plan["n_multi"] == 20
    assert alice["accuracy"] > bob["accuracy"] and alice["weight"] > bob["weight"]
    assert len(plan["relabel"]) + plan["n_new"] == 10
    # With 20 labels of 10 classes the model is unsure of every new item: ActiveLab
    # spends this batch on new items (more data is worth more than a third vote now).
    assert plan["n_new"] == 10
    # Carol can give a third label; planned over the whole pool, the items alice and
    # bob disagree on come first among the relabels.
    with Project.open(voted) as project:
        plan = relabel_plan(project, batch_size=200)
    assert len(plan["relabel"]) == 20
    disputed = [r for r in plan["relabel"] if len(set(r["votes"].values())) > 1]
    assert disputed and plan["relabel"][: len(disputed)] == disputed
    assert all(set(r["votes"]) == {"alice", "bob"} for r in plan["relabel"])
    scores = [r["score"] for r in plan["relabel"]]
    assert scores == sorted(scores)
    # With only the two of them there is no one left to relabel: all new items.
    with Project.open(voted) as project:
        with project.db.session() as s:
            s.execute(delete(User).where(User.name == "carol"))
        alone = relabel_plan(project, batch_size=10)
    assert alone["relabel"] == [] and alone["n_new"] == 10


def test_cli_relabel_and_costs(voted: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["relabel", "-p", str(voted), "--json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    assert set(plan["annotators"]) == {"alice", "bob"}
    table = runner.invoke(app, ["relabel", "-p", str(voted)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "est. accuracy" in table.output
    costs = runner.invoke(app, ["costs", "-p", str(voted), "--json"])
    assert costs.exit_code == 0, costs.output
    report = json.loads(costs.output)
    assert report["n_timed"] == 40
    assert report["per_annotator"]["alice"]["median_seconds"] == 4.0
    assert report["per_annotator"]["bob"]["median_seconds"] == 9.0
    shown = runner.invoke(app, ["costs", "-p", str(voted)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "40 timed labels" in shown.output


def test_a_model_class_the_project_no_longer_has_is_dropped(
    voted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint knows a class the project's list lacks (renamed since): its column
    is dropped, not a bare KeyError."""
    import exemplar.project.relabel as relabel_module

    real = relabel_module.checkpoint_classes

    def renamed(path: Path, recipe: str) -> list[str]:
        return ["ghost" if str(c) == "0" else str(c) for c in real(path, recipe)]

    monkeypatch.setattr(relabel_module, "checkpoint_classes", renamed)
    with Project.open(voted) as project:
        assert "0" in project.classes and "ghost" not in project.classes
        plan = relabel_plan(project, batch_size=10)
    assert plan["dropped_classes"] == ["ghost"]
    assert plan["n_new"] + len(plan["relabel"]) == 10
