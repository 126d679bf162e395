"""The in-memory dataset type shared by every loader (DESIGN.md §6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from exemplar.errors import DatasetError

__all__ = ["Dataset", "DatasetInfo", "DatasetKind", "check_finite"]

#: What ``Dataset.X`` holds: a numeric feature matrix, or one raw text per item.
DatasetKind = Literal["features", "text"]


def _empty_classes() -> np.ndarray:
    return np.empty(0)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A feature matrix (or a column of texts) with optional ground-truth labels.

    Parameters
    ----------
    name : str
        Short name (a built-in's name, or a file's stem).
    X : ndarray of shape (n_items, n_features), or (n_items,) of str when ``kind="text"``
        Raw features, float32 or float64. Integer and boolean arrays are converted
        to float64; anything else is rejected. Features are not scaled. A text
        dataset holds one string per item (unicode or object dtype), kept as given.
    y : ndarray of shape (n_items,), optional
        Labels as found in the source (ints or strings), or None when unlabeled.
    classes : ndarray of shape (n_classes,), optional
        Sorted unique class labels. Computed from ``y`` when not given (or given empty).
        When given, it must be sorted, unique and contain every value of ``y``; it may
        list classes that no item has. Must be empty when ``y`` is None.
    description : str, default=""
        One human-readable line: what the data is and the range of its features.
    source : str, default=""
        Where the data came from: a package function or an absolute file path.
    feature_names : tuple of str, default=()
        Column names when the source has them, else empty.
    kind : {"features", "text"}, default="features"
        What ``X`` holds. Text needs a model that reads texts (such as ``minilm-logreg``).

    Raises
    ------
    DatasetError
        If the arrays have the wrong shape or dtype, lengths disagree, or ``X``
        contains NaN or infinite values.
    """

    name: str
    X: np.ndarray
    y: np.ndarray | None = None
    classes: np.ndarray = field(default_factory=_empty_classes)
    description: str = ""
    source: str = ""
    feature_names: tuple[str, ...] = ()
    kind: DatasetKind = "features"

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if self.kind == "text":
            _check_texts(X, self.name, self.feature_names)
        elif self.kind != "features":
            raise DatasetError(
                f"dataset {self.name!r}: kind must be 'features' or 'text', got {self.kind!r}"
            )
        elif X.ndim != 2:
            raise DatasetError(
                f"dataset {self.name!r}: X must have shape (n_items, n_features), "
                f"got shape {X.shape}"
            )
        elif X.dtype.kind in "biu" or X.dtype == np.float16:
            X = X.astype(np.float64 if X.dtype.kind in "biu" else np.float32)
        elif X.dtype not in (np.float32, np.float64):
            raise DatasetError(
                f"dataset {self.name!r}: X must hold numbers (float32 or float64), "
                f"got dtype {X.dtype}"
            )
        if self.kind == "features":
            check_finite(X, f"dataset {self.name!r}")
        object.__setattr__(self, "X", X)

        classes = np.asarray(self.classes)
        if self.y is None:
            if classes.size:
                raise DatasetError(
                    f"dataset {self.name!r}: classes were given but y is None; "
                    "an unlabeled dataset has no classes"
                )
        else:
            y = np.asarray(self.y)
            if y.ndim != 1:
                raise DatasetError(
                    f"dataset {self.name!r}: y must have shape (n_items,), got shape {y.shape}"
                )
            if y.shape[0] != X.shape[0]:
                raise DatasetError(
                    f"dataset {self.name!r}: X has {X.shape[0]} rows but y has {y.shape[0]} labels"
                )
            if y.dtype.kind not in "biuUS":
                raise DatasetError(
                    f"dataset {self.name!r}: labels must be integers or strings, "
                    f"got dtype {y.dtype}"
                )
            present = np.unique(y)
            if classes.size == 0:
                classes = present
            elif (
                classes.ndim != 1
                or np.any(classes[1:] <= classes[:-1])
                or not np.all(np.isin(present, classes))
            ):
                raise DatasetError(
                    f"dataset {self.name!r}: classes must be sorted, unique and contain "
                    f"every label in y; got classes {classes.tolist()} for labels "
                    f"{present.tolist()}"
                )
            object.__setattr__(self, "y", y)
        object.__setattr__(self, "classes", classes)
        if self.feature_names and len(self.feature_names) != X.shape[1]:
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.feature_names)} feature names for "
                f"{X.shape[1]} features"
            )

    @property
    def n_items(self) -> int:
        """Number of items (rows of ``X``)."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features (columns of ``X``); 0 for text, whose features depend on the model."""
        return 0 if self.kind == "text" else int(self.X.shape[1])

    @property
    def is_text(self) -> bool:
        """Whether ``X`` holds raw texts rather than feature vectors."""
        return self.kind == "text"

    @property
    def n_classes(self) -> int:
        """Number of classes (0 when unlabeled)."""
        return int(self.classes.shape[0])

    @property
    def is_labeled(self) -> bool:
        """Whether every item has a ground-truth label."""
        return self.y is not None

    def info(self) -> DatasetInfo:
        """Summarize the dataset without its arrays.

        Returns
        -------
        DatasetInfo
        """
        return DatasetInfo(
            name=self.name,
            n_items=self.n_items,
            n_features=self.n_features,
            n_classes=self.n_classes,
            description=self.description,
            source=self.source,
            kind=self.kind,
        )

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_items={self.n_items}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}, "
            f"X.dtype={self.X.dtype}, kind={self.kind!r}, source={self.source!r})"
        )


@dataclass(frozen=True)
class DatasetInfo:
    """What ``exemplar datasets`` lists about a dataset, without loading its arrays.

    Parameters
    ----------
    name : str
        Name to pass to :func:`exemplar.data.load_dataset`.
    n_items, n_features, n_classes : int
        Shape of the data (``n_classes`` is 0 when unlabeled, ``n_features`` 0 for text).
    description : str
        What the data is and the range of its raw features.
    source : str
        The package function (or file) it comes from.
    kind : {"features", "text"}, default="features"
        What the items are (see :class:`Dataset`).
    """

    name: str
    n_items: int
    n_features: int
    n_classes: int
    description: str
    source: str
    kind: DatasetKind = "features"


def _check_texts(X: np.ndarray, name: str, feature_names: tuple[str, ...]) -> None:
    """Raise unless ``X`` is a 1-d array of strings (a text dataset)."""
    if X.ndim != 1:
        raise DatasetError(
            f"dataset {name!r}: a text dataset's X must have shape (n_items,), got {X.shape}"
        )
    if X.dtype.kind != "U" and not (
        X.dtype == object and all(isinstance(t, str) for t in X.tolist())
    ):
        raise DatasetError(f"dataset {name!r}: a text dataset's X must hold strings only")
    if feature_names:
        raise DatasetError(f"dataset {name!r}: a text dataset has no feature names")


def check_finite(
    X: np.ndarray,
    where: str,
    *,
    row_label: Callable[[int], str] | None = None,
    feature_names: Sequence[str] | None = None,
) -> None:
    """Raise if ``X`` holds NaN or infinite values, naming how many and the first one.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
        Float features.
    where : str
        What the data is, for the message (e.g. ``"file 'a.csv'"``).
    row_label : callable, optional
        Maps a 0-based row index to a description such as ``"line 7"``.
        Defaults to ``"row i"`` (0-based).
    feature_names : sequence of str, optional
        Names of the columns of ``X``, to name the offending column.

    Raises
    ------
    DatasetError
        If any value of ``X`` is not finite.
    """
    if X.size == 0:
        return
    finite = np.isfinite(X)
    if finite.all():
        return
    bad = ~finite
    count = int(bad.sum())
    row, col = (int(v) for v in np.argwhere(bad)[0])
    row_text = row_label(row) if row_label is not None else f"row {row}"
    col_text = f"column {feature_names[col]!r}" if feature_names is not None else f"column {col}"
    raise DatasetError(
        f"{where}: features contain {count} NaN or infinite value(s); the first is at "
        f"{row_text}, {col_text} (value {float(X[row, col])}). Remove or impute them before loading."
    )
