"""``exemplar review`` and ``exemplar curve``: the review ranking and the learning curve
against random, from the same project services as the server's review page and dashboard."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exemplar.cli.main import app
from exemplar.project import Project
from exemplar.store.labels import add_label
from exemplar.store.schema import Item, LabelSource, ModelVersion, Split
from loop_helpers import CLASSES, make_project

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, result.output
    return result.output


def _seed_review(root: Path) -> dict[str, int]:
    """Three labeled items and a newest model (a stored proba array, pruned checkpoint).

    agree: label 1, model 1 at 0.95; conflict: label 2, model 7 at 0.9; unsure: label 5,
    model 5 at 0.4. The conflict is the riskiest (0.9 + 1 - 0.0111), then the unsure one.
    """
    with make_project(root, oracle="human", n=100) as project:
        with project.db.read() as s:
            items = list(s.scalars(select(Item).order_by(Item.row).limit(3)))
        proba = np.zeros((project.n_rows, 10))
        proba[:, 0] = 1.0
        picks = {"agree": (0, "1", 0.95), "conflict": (1, "7", 0.9), "unsure": (2, "5", 0.4)}
        for i, best, p in picks.values():
            proba[items[i].row] = (1 - p) / 9
            proba[items[i].row, int(best)] = p
        project.arrays.save("proba-fake-v1", proba)
        with project.db.session() as s:
            s.add(
                ModelVersion(
                    version="fake-v1", recipe="logreg", path="models/gone.joblib", n_labels=3
                )
            )
            kw = {"classes": CLASSES, "source": LabelSource.HUMAN, "annotator": "ann"}
            for (i, _, _), label in zip(picks.values(), ("1", "2", "5"), strict=True):
                add_label(s, items[i].id, label, **kw)
    return {name: items[i].id for name, (i, _, _) in picks.items()}


def test_review_lists_riskiest_first(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    ids = _seed_review(root)
    rows = json.loads(_ok("review", "-p", str(root), "--json"))
    assert [r["item_id"] for r in rows] == [ids["conflict"], ids["unsure"], ids["agree"]]
    assert rows[0]["reasons"] == ["model-conflict", "low-confidence"]
    assert rows[0]["proposal"]["label"] == "7" and rows[0]["label"] == "2"
    assert rows[0]["kind"] == "features" and rows[0]["text"] is None
    assert json.loads(_ok("review", "-p", str(root), "--json", "--limit", "1")) == rows[:1]

    table = _ok("review", "-p", str(root))
    lines = [line for line in table.splitlines() if f" {ids['conflict']} " in line]
    assert len(lines) == 1
    assert "7 (0.90)" in lines[0] and "model-conflict, low-confidence" in lines[0]
    assert "ann" in lines[0] and "1.89" in lines[0]
    assert table.index(f" {ids['conflict']} ") < table.index(f" {ids['agree']} ")


def test_review_without_labels(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root, oracle="human", n=60).close()
    assert "nothing to review" in _ok("review", "-p", str(root))


def test_curve_active_against_random(tmp_path: Path) -> None:
    root = tmp_path / "sim"
    with make_project(root, n=300, budget=40) as project:
        with project.db.session() as s:
            s.execute(update(Item).where(Item.row >= 250).values(split=Split.TEST))
        project.run()
    out = _ok("curve", "-p", str(root))
    assert "accuracy on the gold set (50 items)" in out
    assert "no random-control arm in this project" in out

    with Project.open(root) as project:
        with project.db.read() as s:
            pool = list(
                s.scalars(
                    select(Item).where(Item.split == Split.POOL).order_by(Item.row.desc()).limit(30)
                )
            )
        with project.db.session() as s:
            for item in pool:
                add_label(
                    s,
                    item.id,
                    item.ground_truth,
                    classes=project.classes,
                    source="simulated",
                    strategy="random-control",
                )
    data = json.loads(_ok("curve", "-p", str(root), "--json"))
    assert data["gold_size"] == 50 and data["note"] is None
    assert [p["cycle"] for p in data["active"]] == [p["cycle"] for p in data["random"]]
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in data["active"] + data["random"])
    table = _ok("curve", "-p", str(root))
    first = data["active"][0]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()]
    row = next(r for r in rows if r and r[0] == str(first["cycle"]))
    assert row[1] == str(first["n_labels"]) and row[3] == str(data["random"][0]["n_labels"])
    assert f"{first['accuracy']:.3f}" == row[2] and f"{data['random'][0]['accuracy']:.3f}" == row[4]


def test_curve_without_gold_set(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root, n=60).close()
    out = _ok("curve", "-p", str(root))
    assert "no gold set" in out and "accuracy on the gold set" not in out
