"""A user's own .csv / .npy / .npz files: round trips and every bad-input case."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from exemplar.data import load_dataset
from exemplar.errors import DatasetError


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip_with_default_label_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 3, size=20)
    lines = ["a,b,label,c"] + [
        f"{float(x[0])!r},{float(x[1])!r},{lab},{float(x[2])!r}"
        for x, lab in zip(X, y, strict=True)
    ]
    path = write(tmp_path / "points.csv", "\n".join(lines) + "\n")
    ds = load_dataset(path)
    assert ds.name == "points"
    assert ds.source == str((tmp_path / "points.csv").resolve())
    assert ds.feature_names == ("a", "b", "c")
    np.testing.assert_array_equal(ds.X, X)
    assert ds.X.dtype == np.float64
    assert ds.y is not None and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.y, y)
    assert ds.classes.tolist() == sorted(set(y.tolist()))


def test_csv_string_labels_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "f1,f2,class\n1,2, cat\n3,4,dog\n5,6,cat\n")
    ds = load_dataset(path)
    assert ds.y is not None
    assert ds.y.tolist() == ["cat", "dog", "cat"]
    assert ds.classes.tolist() == ["cat", "dog"]


@pytest.mark.parametrize(
    ("label_column", "expected_features"),
    [("kind", ("x", "y")), (0, ("x", "y")), (-3, ("x", "y")), ("y", ("kind", "x"))],
)
def test_csv_label_column_by_name_or_index(
    tmp_path: Path, label_column: str | int, expected_features: tuple[str, ...]
) -> None:
    path = write(tmp_path / "d.csv", "kind,x,y\n1,0.5,1.5\n2,2.5,3.5\n")
    ds = load_dataset(path, label_column=label_column)
    assert ds.feature_names == expected_features
    assert ds.n_features == 2


def test_csv_default_label_prefers_class_over_y_coordinate(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "x,y,Class\n0.1,0.2,a\n0.3,0.4,b\n")
    ds = load_dataset(path)
    assert ds.feature_names == ("x", "y")
    assert ds.classes.tolist() == ["a", "b"]


def test_csv_without_label_column_is_unlabeled(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "u,v\n1,2\n3,4\n")
    ds = load_dataset(path)
    assert ds.y is None and not ds.is_labeled
    assert ds.n_classes == 0 and ds.classes.size == 0
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4]])


def test_csv_text_columns_are_ignored_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "file,a,label\nimg1.png,1,0\nimg2.png,2,1\n")
    ds = load_dataset(path)
    assert ds.feature_names == ("a",)
    assert "ignored non-numeric columns: file" in ds.description


def test_csv_tolerates_bom_quotes_blank_lines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b'\xef\xbb\xbf"a","b"\r\n"1.5", 2\r\n\r\n3,4\r\n\r\n')
    ds = load_dataset(str(path))
    assert ds.feature_names == ("a", "b")
    np.testing.assert_array_equal(ds.X, [[1.5, 2], [3, 4]])


def test_csv_pandas_style_integer_header_is_a_header(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "0,1,2\n5,6,7\n")
    ds = load_dataset(path, label_column=2)
    assert ds.feature_names == ("0", "1")
    assert ds.y is not None and ds.y.tolist() == [7]


def test_csv_non_numeric_value_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,label\n1,2,0\n3,4,1\n5,oops,0\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert "line 4" in msg and "column 'b'" in msg and "'oops'" in msg and "not a number" in msg


def test_csv_missing_value_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b\n1,2\n,4\n")
    with pytest.raises(DatasetError, match=r"line 3, column 'a': a missing value"):
        load_dataset(path)


def test_csv_ragged_row_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(DatasetError, match=r"line 3: expected 3 fields .* found 2 \(ragged row\)"):
        load_dataset(path)


def test_csv_ragged_row_too_long(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(DatasetError, match=r"line 4: expected 2 fields .* found 3"):
        load_dataset(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_csv_empty_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "d.csv", content)
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(path)


def test_csv_header_only(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,label\n")
    with pytest.raises(DatasetError, match="has a header .* but no data rows"):
        load_dataset(path)


def test_csv_label_column_not_found_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,kind\n1,2,3\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(path, label_column="target")
    msg = str(info.value)
    assert "label column 'target' not found" in msg
    assert "'a', 'b', 'kind'" in msg


def test_csv_label_column_index_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"label column index 5 not found; there are 2 columns"):
        load_dataset(path, label_column=5)


def test_csv_nan_and_inf_count_and_first_row(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b\n1,2\n3,nan\ninf,5\n-inf,nan\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert "4 NaN or infinite value(s)" in msg
    assert "line 3, column 'b'" in msg


def test_csv_without_header_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "1.5,2.5\n3,4\n")
    with pytest.raises(DatasetError, match="line 1: .*looks like data; a header row"):
        load_dataset(path)


def test_csv_semicolon_separated_is_explained(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a;b\n1;2\n")
    with pytest.raises(DatasetError, match="separated by semicolons"):
        load_dataset(path)


def test_csv_duplicate_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,b,a\n1,2,3\n")
    with pytest.raises(DatasetError, match="column name 'a' appears twice"):
        load_dataset(path)


def test_csv_binary_garbage_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="not UTF-8 text|cannot parse CSV"):
        load_dataset(str(path))


def test_csv_nul_byte_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n1,2\n3,\x004\n")
    with pytest.raises(DatasetError, match="line 3"):
        load_dataset(str(path))


def test_csv_no_numeric_features(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "name,label\nx,1\ny,2\n")
    with pytest.raises(DatasetError, match="no numeric feature columns"):
        load_dataset(path)


def test_csv_empty_label_cell(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a,label\n1,0\n2,\n")
    with pytest.raises(DatasetError, match="line 3: the label column 'label' is empty"):
        load_dataset(path)


def test_directory_named_like_a_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DatasetError, match="not a regular file"):
        load_dataset(str(tmp_path / "d.csv"))


# --------------------------------------------------------------------------- NPY


def test_npy_round_trip_keeps_float32(tmp_path: Path) -> None:
    X = np.random.default_rng(1).random((10, 4), dtype=np.float32)
    np.save(tmp_path / "f.npy", X)
    ds = load_dataset(str(tmp_path / "f.npy"))
    assert ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X, X)
    assert ds.y is None and ds.name == "f"


def test_npy_integer_features_become_float64(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.arange(6).reshape(3, 2))
    ds = load_dataset(str(tmp_path / "f.npy"))
    assert ds.X.dtype == np.float64


@pytest.mark.parametrize("label_column", [2, -1])
def test_npy_label_column(tmp_path: Path, label_column: int) -> None:
    arr = np.array([[0.1, 0.2, 1.0], [0.3, 0.4, 0.0], [0.5, 0.6, 1.0]])
    np.save(tmp_path / "f.npy", arr)
    ds = load_dataset(str(tmp_path / "f.npy"), label_column=label_column)
    np.testing.assert_array_equal(ds.X, arr[:, :2])
    assert ds.y is not None and ds.y.dtype == np.int64
    assert ds.y.tolist() == [1, 0, 1]


def test_npy_one_dimensional_is_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.arange(5.0))
    with pytest.raises(DatasetError, match=r"expected a 2-D array.*1-D array of shape \(5,\)"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npy_three_dimensional_is_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((2, 3, 4)))
    with pytest.raises(DatasetError, match=r"3-D array of shape \(2, 3, 4\); reshape"):
        load_dataset(str(tmp_path / "f.npy"))


class _Exploit:
    """Unpickling this would create a file; loading must refuse before that."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.target, "w"))


def test_npy_object_array_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    arr = np.empty((1, 1), dtype=object)
    arr[0, 0] = _Exploit(str(marker))
    np.save(tmp_path / "f.npy", arr, allow_pickle=True)
    with pytest.raises(DatasetError, match="pickled data"):
        load_dataset(str(tmp_path / "f.npy"))
    assert not marker.exists()


def test_npy_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "f.npy").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(DatasetError, match="not a valid .npy file.*never loads pickle"):
        load_dataset(str(tmp_path / "f.npy"))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"garbage" * 50, b"\x93NUMPY\x01\x00garbage"])
def test_npy_corrupt_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "f.npy").write_bytes(content)
    with pytest.raises(DatasetError, match="cannot read .*f.npy"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npy_truncated_file(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((100, 10)))
    data = (tmp_path / "f.npy").read_bytes()
    (tmp_path / "f.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read .*f.npy"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npy_empty_file(tmp_path: Path) -> None:
    (tmp_path / "f.npy").write_bytes(b"")
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npy_zero_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((0, 3)))
    with pytest.raises(DatasetError, match="is empty: the array has 0 rows"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npy_string_array_is_non_numeric(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DatasetError, match="features must be numbers.*non-numeric"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npy_label_column_by_name_is_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="integer column index .*no column names"):
        load_dataset(str(tmp_path / "f.npy"), label_column="label")


def test_npy_label_column_out_of_range(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.zeros((2, 2)))
    with pytest.raises(DatasetError, match=r"label column 2 not found; the array has 2 columns"):
        load_dataset(str(tmp_path / "f.npy"), label_column=2)


def test_npy_non_integer_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.array([[1.0, 0.5], [2.0, 1.0]]))
    with pytest.raises(DatasetError, match="row 0 has the non-integer label 0.5"):
        load_dataset(str(tmp_path / "f.npy"), label_column=1)


def test_npy_nan_features(tmp_path: Path) -> None:
    X = np.ones((5, 3))
    X[2, 1] = np.nan
    X[4, 0] = np.inf
    np.save(tmp_path / "f.npy", X)
    with pytest.raises(DatasetError, match=r"2 NaN or infinite value\(s\); the first is at row 2"):
        load_dataset(str(tmp_path / "f.npy"))


def test_npz_saved_as_npy_is_explained(tmp_path: Path) -> None:
    with (tmp_path / "f.npy").open("wb") as fh:
        np.savez(fh, X=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match=r"is an \.npz archive"):
        load_dataset(str(tmp_path / "f.npy"))


# --------------------------------------------------------------------------- NPZ


@pytest.mark.parametrize(("x_key", "y_key"), [("X", "y"), ("features", "labels")])
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip(tmp_path: Path, x_key: str, y_key: str, compressed: bool) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 5))
    y = rng.integers(0, 4, size=12)
    save = np.savez_compressed if compressed else np.savez
    content: dict[str, np.ndarray] = {x_key: X, y_key: y, "extra": np.arange(3)}
    save(tmp_path / "d.npz", **content)  # type: ignore[arg-type]
    ds = load_dataset(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.X, X)
    assert ds.y is not None
    np.testing.assert_array_equal(ds.y, y)


def test_npz_unlabeled_and_string_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "u.npz", X=np.zeros((3, 2)))
    assert load_dataset(str(tmp_path / "u.npz")).y is None
    np.savez(tmp_path / "s.npz", X=np.zeros((3, 2)), y=np.array(["b", "a", "b"]))
    ds = load_dataset(str(tmp_path / "s.npz"))
    assert ds.classes.tolist() == ["a", "b"]
    np.savez(tmp_path / "b.npz", X=np.zeros((2, 2)), y=np.array([b"x", b"y"]))
    assert load_dataset(str(tmp_path / "b.npz")).classes.tolist() == ["x", "y"]


def test_npz_label_column_as_key_or_index(tmp_path: Path) -> None:
    X = np.array([[0.1, 0.0], [0.2, 1.0]])
    np.savez(tmp_path / "k.npz", X=X, target=np.array([3, 4]))
    ds = load_dataset(str(tmp_path / "k.npz"), label_column="target")
    assert ds.y is not None and ds.y.tolist() == [3, 4]
    np.savez(tmp_path / "i.npz", X=X)
    ds = load_dataset(str(tmp_path / "i.npz"), label_column=1)
    assert ds.y is not None and ds.y.tolist() == [0, 1] and ds.n_features == 1


def test_npz_mismatched_lengths(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((5, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(DatasetError, match="'X' has 5 rows but 'y' has 4 labels"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_missing_features_key_lists_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", data=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(DatasetError, match=r"no 'X' \(or 'features'\) array; its keys are: 'data'"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_ambiguous_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)), features=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="both 'X' and 'features'"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_label_key_not_found(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="label array 'target' not found; its keys are: 'X'"):
        load_dataset(str(tmp_path / "d.npz"), label_column="target")


def test_npz_index_label_column_conflicts_with_y(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)), y=np.zeros(2, dtype=int))
    with pytest.raises(DatasetError, match="use one or the other"):
        load_dataset(str(tmp_path / "d.npz"), label_column=0)


def test_npz_object_labels_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    y = np.empty(2, dtype=object)
    y[:] = [_Exploit(str(marker)), "b"]
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)), y=y)
    with pytest.raises(DatasetError, match="pickled data"):
        load_dataset(str(tmp_path / "d.npz"))
    assert not marker.exists()


def test_npz_two_dimensional_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 2)), y=np.eye(2))
    with pytest.raises(DatasetError, match=r"array 'y': labels must be a 1-D array"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_one_dimensional_features(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros(4))
    with pytest.raises(DatasetError, match="array 'X': expected a 2-D array"):
        load_dataset(str(tmp_path / "d.npz"))


def test_npz_nan_features(tmp_path: Path) -> None:
    X = np.zeros((3, 2))
    X[1, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=X)
    with pytest.raises(DatasetError, match=r"1 NaN or infinite value\(s\); the first is at row 1"):
        load_dataset(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("how", ["garbage", "truncate", "flip"])
def test_npz_corrupt_archive(tmp_path: Path, how: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(4000.0).reshape(1000, 4))
    data = bytearray(path.read_bytes())
    if how == "garbage":
        data = bytearray(b"nonsense" * 100)
    elif how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="cannot read npz file .*d.npz"):
        load_dataset(str(path))


def test_npy_saved_as_npz_is_explained(tmp_path: Path) -> None:
    with (tmp_path / "d.npz").open("wb") as fh:
        np.save(fh, np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="single .npy array, not an .npz archive"):
        load_dataset(str(tmp_path / "d.npz"))
