"""CsvTable, the one CSV parser: the importer skips bad rows, the simulator's loader stops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exemplar.data import load_dataset
from exemplar.errors import DatasetError
from exemplar.project.importing import import_path
from exemplar.project.project import Project
from exemplar.sources.base import ProblemList
from exemplar.sources.csv_table import CsvTable


def test_loader_and_importer_read_a_file_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b'\xef\xbb\xbfid,"x",y2,class\r\na,1.5,2,p\r\n\r\nb,3,-4e2,q\r\n')
    ds = load_dataset(str(path))
    with Project.init(tmp_path / "p", ["p", "q"]) as project:
        report = import_path(project, path)
        np.testing.assert_array_equal(project.features(), ds.X.astype(np.float32))
    assert ds.feature_names == ("x", "y2") and ds.y is not None and ds.y.tolist() == ["p", "q"]
    assert report.labeled == 2 and "ignored columns: id" in report.notes


def test_a_bad_row_is_skipped_by_one_and_stops_the_other(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,oops\n5,6\n", encoding="utf-8")
    log = ProblemList()
    table = CsvTable(path, None, None, log)
    rows = table.rows(None)
    X, ok = table.features(rows)
    table.close()
    assert ok.tolist() == [True, False, True]
    np.testing.assert_array_equal(X[ok], [[1, 2], [5, 6]])
    (problem,) = log.problems
    assert (problem.where, problem.line, problem.column) == (f"{path}:3", 3, "b")
    assert problem.reason == "column 'b': 'oops' is not a number"
    with pytest.raises(DatasetError, match=r"line 3, column 'b': 'oops' is not a number"):
        load_dataset(str(path))


def test_binary_content_is_refused_before_the_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n1,2\n" + bytes(range(128, 256)) + b"\n3,4\n")
    log = ProblemList()
    table = CsvTable(path, None, None, log, peek_rows=None)  # after the header: one bad row
    assert [line for line, _ in table.rows(None)] == [2, 4]
    table.close()
    assert [(p.line, p.kind) for p in log.problems] == [(3, "malformed row")]
    assert "undecodable byte at offset 8 of the file" in log.problems[0].why
    path.write_bytes(bytes(range(128, 256)) + b"\na,b\n")
    with pytest.raises(DatasetError, match=r"not a text CSV file .* at byte offset 0\)"):
        CsvTable(path, None, None, ProblemList())
    with pytest.raises(DatasetError, match="not a text CSV file"):
        load_dataset(str(path))
