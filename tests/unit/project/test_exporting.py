"""``export_labels``: CSV and JSON round trips with provenance, history, ground truth.

Runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from exemplar.errors import DatasetError
from exemplar.project.exporting import EXPORT_COLUMNS, export_labels
from exemplar.project.importing import import_path
from exemplar.project.project import Project
from exemplar.store.labels import add_label
from exemplar.store.schema import Cycle, Item, LabelSource, LabelStatus

CLASSES = ["a", "b", "c"]


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Iterator[Project]:
    """Four feature items: rows 0-1 imported with labels, 2 relabeled by a human, 3 unlabeled."""
    proj = Project.init(tmp_path / "p", CLASSES, database_url=database_url)
    data = tmp_path / "d.csv"
    data.write_text("f1,f2,label,truth\n1,2,a,a\n3,4,b,b\n5,6,,c\n7,8,,a\n", encoding="utf-8")
    import_path(proj, data)
    with proj.db.session() as s:
        cycle = Cycle(number=3, seed=7, strategy="margin", batch_size=10)
        s.add(cycle)
        s.flush()
        item2 = s.scalar(select(Item).where(Item.row == 2))
        item1 = s.scalar(select(Item).where(Item.row == 1))
        assert item1 is not None and item2 is not None
        item2.ground_truth = "c"
        add_label(
            s,
            item2.id,
            "c",
            classes=CLASSES,
            source=LabelSource.HUMAN,
            annotator="ada",
            cycle_id=cycle.id,
            strategy="margin",
            score=0.125,
        )
        add_label(
            s,
            item1.id,
            "a",
            classes=CLASSES,
            source=LabelSource.MODEL,
            status=LabelStatus.PROPOSED,
            cycle_id=cycle.id,
            strategy="margin",
            score=0.5,
        )
    yield proj
    proj.close()


def parse_utc(text: str) -> datetime:
    assert text.endswith("Z")
    value = datetime.fromisoformat(text)
    assert value.utcoffset() == timedelta(0)
    return value


def test_csv_current_labels_with_provenance(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "out" / "labels.csv"
    before = datetime.now(UTC) - timedelta(minutes=5)
    assert export_labels(project, out) == 3
    with out.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == EXPORT_COLUMNS
        rows = list(reader)
    assert [r["label"] for r in rows] == ["a", "a", "c"]  # rows 0, 1 (proposal), 2
    first, second, third = rows
    assert (first["source"], first["status"], first["cycle"], first["score"]) == (
        "import",
        "verified",
        "",
        "",
    )
    assert (second["source"], second["status"], second["score"]) == ("model", "proposed", "0.5")
    assert third["annotator"] == "ada" and third["cycle"] == "3"
    assert third["strategy"] == "margin" and float(third["score"]) == 0.125
    assert third["source"] == "human" and third["status"] == "verified"
    assert third["uri"].endswith("d.csv#L4") and third["kind"] == "features"
    with project.db.session() as s:
        item = s.scalar(select(Item).where(Item.row == 2))
        assert item is not None
        assert third["uid"] == item.uid and int(third["item_id"]) == item.id
    for row in rows:
        assert before < parse_utc(row["created_at"]) < datetime.now(UTC) + timedelta(minutes=5)
    assert "ground_truth" not in rows[0]


def test_json_history_with_ground_truth(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "labels.json"
    n = export_labels(project, out, history=True, include_ground_truth=True)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert n == len(rows) == 4  # two imports, the human label, the model proposal
    assert [r["label_id"] for r in rows] == sorted(r["label_id"] for r in rows)
    assert [(r["label"], r["source"]) for r in rows] == [
        ("a", "import"),
        ("b", "import"),
        ("c", "human"),
        ("a", "model"),
    ]
    assert set(rows[0]) == {*EXPORT_COLUMNS, "ground_truth"}
    assert rows[0]["cycle"] is None and rows[0]["score"] is None
    assert rows[2]["cycle"] == 3 and rows[2]["score"] == 0.125
    assert rows[2]["ground_truth"] == "c"
    for row in rows:
        parse_utc(row["created_at"])


def test_format_from_suffix_or_argument(project: Project, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot tell the export format"):
        export_labels(project, tmp_path / "labels.txt")
    with pytest.raises(DatasetError, match="unknown export format"):
        export_labels(project, tmp_path / "x.csv", fmt="xml")  # type: ignore[arg-type]
    out = tmp_path / "labels.txt"
    assert export_labels(project, out, fmt="json") == 3
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 3


def test_write_is_atomic_and_replaces(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    out.write_text("old contents\n", encoding="utf-8")
    export_labels(project, out)
    assert out.read_text(encoding="utf-8").startswith("label_id,")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_empty_project_exports_header_only(tmp_path: Path, database_url: str) -> None:
    with Project.init(tmp_path / "e", CLASSES, database_url=database_url) as proj:
        assert export_labels(proj, tmp_path / "e.csv") == 0
        assert (tmp_path / "e.csv").read_text(encoding="utf-8") == ",".join(EXPORT_COLUMNS) + "\n"
        assert export_labels(proj, tmp_path / "e.json") == 0
        assert json.loads((tmp_path / "e.json").read_text(encoding="utf-8")) == []
