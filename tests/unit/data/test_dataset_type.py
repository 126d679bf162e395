"""The Dataset value type: validation, derived classes and summaries."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.data import Dataset, DatasetInfo
from exemplar.errors import DatasetError


def test_classes_are_sorted_unique_labels() -> None:
    ds = Dataset("d", np.zeros((4, 2)), np.array(["b", "a", "c", "a"]))
    assert ds.classes.tolist() == ["a", "b", "c"]
    assert ds.n_classes == 3 and ds.n_items == 4 and ds.n_features == 2


def test_explicit_classes_may_list_absent_classes() -> None:
    ds = Dataset("d", np.zeros((2, 1)), np.array([0, 2]), classes=np.array([0, 1, 2]))
    assert ds.n_classes == 3


@pytest.mark.parametrize("classes", [[2, 0], [0, 0, 2], [0, 1]])
def test_invalid_explicit_classes(classes: list[int]) -> None:
    with pytest.raises(DatasetError, match="classes must be sorted, unique and contain"):
        Dataset("d", np.zeros((2, 1)), np.array([0, 2]), classes=np.array(classes))


def test_unlabeled_has_no_classes() -> None:
    ds = Dataset("d", np.zeros((2, 1)))
    assert ds.y is None and ds.n_classes == 0 and not ds.is_labeled
    with pytest.raises(DatasetError, match="unlabeled dataset has no classes"):
        Dataset("d", np.zeros((2, 1)), classes=np.array([0, 1]))


def test_length_mismatch() -> None:
    with pytest.raises(DatasetError, match="X has 3 rows but y has 2 labels"):
        Dataset("d", np.zeros((3, 1)), np.array([0, 1]))


def test_shape_and_dtype_checks() -> None:
    with pytest.raises(DatasetError, match=r"X must have shape \(n_items, n_features\)"):
        Dataset("d", np.zeros(3))
    with pytest.raises(DatasetError, match="X must hold numbers"):
        Dataset("d", np.array([["a"]]))
    with pytest.raises(DatasetError, match=r"y must have shape \(n_items,\)"):
        Dataset("d", np.zeros((2, 1)), np.zeros((2, 1), dtype=int))
    with pytest.raises(DatasetError, match="labels must be integers or strings"):
        Dataset("d", np.zeros((2, 1)), np.array([0.5, 1.5]))
    with pytest.raises(DatasetError, match="2 feature names for 1 features"):
        Dataset("d", np.zeros((2, 1)), feature_names=("a", "b"))


def test_integer_features_become_float64_and_float32_is_kept() -> None:
    assert Dataset("d", np.arange(4).reshape(2, 2)).X.dtype == np.float64
    X32 = np.zeros((2, 2), dtype=np.float32)
    assert Dataset("d", X32).X is X32  # no copy


def test_non_finite_features_rejected() -> None:
    X = np.zeros((3, 2))
    X[1, 0] = np.inf
    with pytest.raises(DatasetError, match=r"1 NaN or infinite value\(s\); the first is at row 1"):
        Dataset("d", X)


def test_repr_and_info() -> None:
    ds = Dataset("d", np.zeros((2, 3)), np.array([1, 0]), description="x", source="s")
    assert "n_items=2" in repr(ds) and "n_classes=2" in repr(ds)
    assert ds.info() == DatasetInfo("d", 2, 3, 2, "x", "s")


def test_frozen() -> None:
    ds = Dataset("d", np.zeros((2, 3)))
    with pytest.raises(AttributeError):
        setattr(ds, "name", "e")  # noqa: B010
