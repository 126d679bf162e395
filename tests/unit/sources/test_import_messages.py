"""Each import message says what happened, through the CLI and through the Python API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.errors import DatasetError
from exemplar.project.importing import import_path
from exemplar.project.project import Project

runner = CliRunner()
ENV = {"COLUMNS": "250"}
CLASSES = ["a", "b", "c"]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project.init(tmp_path / "p", CLASSES, oracle={"kind": "simulated"})
    yield proj
    proj.close()


def cli_import(project: Project, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["import", *args, "-p", str(project.root)], env=ENV)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def labeled_csv(path: Path, n: int = 6) -> Path:
    rows = [f"{i},{i * 2},{CLASSES[i % 3]}" for i in range(n)]
    path.write_text("\n".join(["f1,f2,label", *rows]) + "\n", encoding="utf-8")
    return path


def test_ground_truth_is_reported_as_ground_truth_not_as_labels(
    project: Project, tmp_path: Path
) -> None:
    path = labeled_csv(tmp_path / "d.csv")
    report = import_path(project, path, labels_as="ground_truth")
    assert (report.added, report.labeled, report.ground_truth) == (6, 0, 6)
    assert "0 labeled, 6 with ground truth (hidden from the model" in report.summary()
    out = cli_import(
        project, str(labeled_csv(tmp_path / "e.csv", 9)), "--labels-as", "ground_truth"
    )
    assert "added 3 item(s) (3 features), 0 labeled, 3 with ground truth" in out
    assert "for the simulated oracle" in out
    assert "6 duplicate(s) not added again" in out
    assert "6 labeled" not in out and "3 labeled" not in out


def test_ground_truth_with_a_human_oracle_says_who_reads_it(tmp_path: Path) -> None:
    with Project.init(tmp_path / "p", CLASSES) as project:
        report = import_path(project, labeled_csv(tmp_path / "d.csv"), labels_as="ground_truth")
    assert any("oracle is 'human'" in n and "simulated oracle" in n for n in report.notes)


def test_labels_are_reported_as_labels(project: Project, tmp_path: Path) -> None:
    out = cli_import(project, str(labeled_csv(tmp_path / "d.csv")))
    assert "added 6 item(s) (6 features), 6 labeled" in out
    assert "ground truth" not in out and "duplicate" not in out and "not imported" not in out


@pytest.mark.parametrize(
    "content",
    [
        bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        b"\x00\x01\x02garbage\x00\n1,2\n",
        "f1,f2\n1,2\n".encode("utf-16"),
    ],
    ids=["random", "nul", "utf16"],
)
def test_binary_csv_is_not_called_empty(project: Project, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(content)
    with pytest.raises(
        DatasetError, match=r"is not a text CSV file \(binary, or not UTF-8"
    ) as info:
        import_path(project, path)
    assert "empty" not in str(info.value)
    out = cli_import(project, str(path), code=2)
    assert "not a text CSV file" in out and "at byte offset" in out and "empty" not in out
    if content.startswith(b"\xff\xfe"):
        assert "UTF-16" in out
    assert project.n_rows == 0


def test_empty_csv_is_still_called_empty(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("\n\n", encoding="utf-8")
    assert "is empty" in cli_import(project, str(path), code=2)


def test_bad_rows_are_counted_by_sort(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("f1,f2,label\n1,2,a\n3,x,b\n4,,c\n5,6\n7,8,zebra\nnan,1,a\n", encoding="utf-8")
    report = import_path(project, path)
    assert report.added == 1
    assert report.skipped_kinds == {"bad value": 3, "malformed row": 1, "unknown class": 1}
    expected = (
        "5 not imported: 3 row(s) with bad values, 1 malformed row(s), "
        "1 with a class the project lacks"
    )
    assert expected in report.summary()
    out = cli_import(project, str(path))
    assert "added 0 item(s), 0 labeled" in out
    assert "1 duplicate(s) not added again" in out
    assert expected in out
    assert f"skipped {path}:3: column 'f2': 'x' is not a number" in out
    assert f"skipped {path}:4: column 'f2': a missing value" in out


def test_unreadable_and_other_files_are_counted_by_sort(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "a" / "ok.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "a" / "same.png")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (root / "readme.txt").write_text("hi")
    report = import_path(project, root)
    assert (report.added, report.duplicates) == (1, 1)
    assert report.skipped_kinds == {"unreadable file": 1, "not an image": 1}
    out = cli_import(project, str(root))
    assert "added 0 item(s), 0 labeled" in out
    assert "2 duplicate(s) not added again" in out
    assert "2 not imported: 1 non-image file(s) ignored, 1 unreadable file(s)" in out
    assert "not a readable image" in out


def test_rows_per_transaction_is_the_name_and_batch_size_a_hidden_alias(
    project: Project, tmp_path: Path
) -> None:
    path = labeled_csv(tmp_path / "d.csv", 7)
    progress: list[int] = []
    import_path(project, path, rows_per_transaction=3, on_progress=lambda d, t: progress.append(d))
    assert progress == [3, 6, 7]
    help_text = runner.invoke(app, ["import", "--help"], env=ENV).output
    assert "--rows-per-transaction" in help_text and "--batch-size" not in help_text
    assert "rows_per_transaction must be a positive integer" in cli_import(
        project, str(path), "--rows-per-transaction", "0", code=2
    )
    assert "added 0 item(s)" in cli_import(project, str(path), "--batch-size", "2")
