"""The model adapter contract (DESIGN.md §2): ``fit(X, y)`` then ``predict(X) -> Predictions``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from exemplar.predictions import Predictions

#: Rows per chunk when predicting a pool: bounds peak memory for any pool size.
DEFAULT_CHUNK_SIZE = 65_536


@runtime_checkable
class ModelAdapter(Protocol):
    """What the loop and the simulator need from a model.

    ``fit`` retrains from scratch on the labeled set (small-text's model-factory
    contract). ``predict`` returns :class:`Predictions` aligned with the rows of ``X``,
    computed chunk by chunk so memory is bounded by the chunk size.
    """

    classes_: np.ndarray

    def fit(self, X: np.ndarray, y: np.ndarray) -> ModelAdapter: ...

    def predict(
        self,
        X: np.ndarray,
        *,
        samples: bool = False,
        embeddings: bool = False,
    ) -> Predictions: ...

    def predict_labels(self, X: np.ndarray) -> np.ndarray: ...
