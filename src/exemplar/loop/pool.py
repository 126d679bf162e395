"""An in-memory labeled pool: which items are labeled, with what, and how they got there."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exemplar.errors import InvalidIndicesError

__all__ = ["LabeledPool"]


@dataclass
class _Operation:
    kind: str
    indices: np.ndarray
    previous: dict[int, object]


@dataclass
class LabeledPool:
    """Labeled/unlabeled bookkeeping with label, relabel, ignore and undo (small-text style).

    Parameters
    ----------
    n_items : int
        Number of items; indices are ``0..n_items-1``.
    """

    n_items: int
    _labels: dict[int, object] = field(default_factory=dict, repr=False)
    _ignored: set[int] = field(default_factory=set, repr=False)
    _history: list[_Operation] = field(default_factory=list, repr=False)

    def label(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Record labels for unlabeled items."""
        idx = self._check(indices)
        already = [int(i) for i in idx if int(i) in self._labels]
        if already:
            raise InvalidIndicesError(f"item {already[0]} is already labeled; use relabel()")
        self._apply("label", idx, labels)

    def relabel(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Change labels of items that are already labeled."""
        idx = self._check(indices)
        missing = [int(i) for i in idx if int(i) not in self._labels]
        if missing:
            raise InvalidIndicesError(f"item {missing[0]} is not labeled; use label()")
        self._apply("relabel", idx, labels)

    def ignore(self, indices: np.ndarray) -> None:
        """Remove items from the pool without labeling them (e.g. unreadable or out of scope)."""
        idx = self._check(indices)
        self._history.append(_Operation("ignore", idx, {}))
        self._ignored.update(int(i) for i in idx)

    def undo(self) -> None:
        """Revert the most recent label, relabel or ignore operation."""
        if not self._history:
            raise InvalidIndicesError("nothing to undo")
        op = self._history.pop()
        for i in op.indices:
            key = int(i)
            if op.kind == "ignore":
                self._ignored.discard(key)
            elif key in op.previous:
                self._labels[key] = op.previous[key]
            else:
                self._labels.pop(key, None)

    @property
    def labeled(self) -> np.ndarray:
        """Labeled indices in the order they were labeled."""
        return np.fromiter(self._labels.keys(), dtype=np.int64, count=len(self._labels))

    @property
    def unlabeled(self) -> np.ndarray:
        """Indices neither labeled nor ignored, ascending."""
        mask = np.ones(self.n_items, dtype=bool)
        mask[self.labeled] = False
        if self._ignored:
            mask[np.fromiter(self._ignored, dtype=np.int64)] = False
        return np.flatnonzero(mask)

    def labels_of(self, indices: np.ndarray) -> np.ndarray:
        """Labels of labeled items, in the given order."""
        return np.asarray([self._labels[int(i)] for i in indices])

    @property
    def y_labeled(self) -> np.ndarray:
        """Labels aligned with :attr:`labeled`."""
        return np.asarray(list(self._labels.values()))

    def _apply(self, kind: str, idx: np.ndarray, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        if labels.shape[0] != idx.shape[0]:
            raise InvalidIndicesError(f"{labels.shape[0]} labels for {idx.shape[0]} items")
        previous = {int(i): self._labels[int(i)] for i in idx if int(i) in self._labels}
        self._history.append(_Operation(kind, idx, previous))
        for i, lab in zip(idx, labels, strict=True):
            self._labels[int(i)] = lab.item() if isinstance(lab, np.generic) else lab

    def _check(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_items):
            raise InvalidIndicesError(f"indices must be in 0..{self.n_items - 1}")
        if np.unique(idx).size != idx.size:
            raise InvalidIndicesError("duplicate indices in one operation")
        return idx
