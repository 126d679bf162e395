"""The registry of input formats: detection in one place, new formats as one module each."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from exemplar.errors import DatasetError
from exemplar.project.importing import import_path
from exemplar.project.project import Project
from exemplar.sources import registry
from exemplar.sources.base import (
    Chunk,
    Log,
    ProblemList,
    Source,
    SourceOptions,
    feature_records,
)
from exemplar.sources.registry import FORMATS, Format, find_format, open_source


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("t.parquet", "parquet"),
        ("x.npy", "arrays"),
        ("x.npz", "arrays"),
        ("p.PNG", "images"),
        ("p.jpeg", "images"),
    ],
)
def test_files_are_detected_by_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert find_format(path).name == fmt


def test_a_folder_is_read_as_images_and_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    assert find_format(tmp_path).name == "images"
    (tmp_path / "e.xlsx").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.xlsx'.*accepted: \.csv"):
        find_format(tmp_path / "e.xlsx")
    with pytest.raises(DatasetError, match="does not exist"):
        open_source(tmp_path / "missing.csv", SourceOptions(), ProblemList())


class _LinesSource(Source):
    """A toy format: one number per line of a ``.nums`` file, as one-feature items."""

    def __init__(self, path: Path, options: SourceOptions, log: Log):
        self.path, self.log = path, log
        self.values = [float(v) for v in path.read_text().split()]
        self.dim, self.what, self.total = 1, f"file '{path}'", len(self.values)

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        for start in range(0, len(self.values), size):
            part = self.values[start : start + size]
            wheres = [f"{self.path}:{start + i + 1}" for i in range(len(part))]
            X = np.array(part).reshape(-1, 1)
            records, X32 = feature_records(X, wheres, wheres, [None] * len(part), None, self.log)
            yield Chunk(records, X32, start + len(part))


def test_a_new_format_is_one_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "FORMATS", list(FORMATS))
    registry.register(Format("nums", ".nums", frozenset({".nums"}), None, _LinesSource))
    assert [f.name for f in registry.FORMATS][-2:] == ["nums", "images"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Format("nums", ".nums", frozenset({".nums"}), None, _LinesSource))
    path = tmp_path / "d.nums"
    path.write_text("1\n2\nnan\n2\n")
    with Project.init(tmp_path / "p", ["a", "b"]) as project:
        report = import_path(project, path)
        assert (report.added, report.duplicates, len(report.skipped)) == (2, 1, 1)
        np.testing.assert_array_equal(project.features(), [[1.0], [2.0]])


def test_folder_formats_are_tried_before_plain_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "FORMATS", list(FORMATS))

    def has_marker(path: Path) -> bool:
        return (path / "annotations.json").is_file()

    registry.register(Format("marked", "a marked folder", frozenset(), has_marker, _LinesSource))
    plain = tmp_path / "plain"
    plain.mkdir()
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / "annotations.json").write_text("{}")
    assert find_format(plain).name == "images"
    assert find_format(marked).name == "marked"
