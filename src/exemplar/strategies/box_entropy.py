"""Box entropy: the class uncertainty of each detected box, aggregated over the image."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr

from exemplar.errors import InvalidPredictionsError
from exemplar.objects import ObjectPredictions, Objects
from exemplar.strategies._objects import (
    ObjectScoringStrategy,
    binary_entropy,
    box_detection_proba,
)

__all__ = ["BoxEntropy", "box_class_proba"]


def box_class_proba(objects: Objects) -> np.ndarray | None:
    """Finite per-box class probabilities ``(k, c)`` with ``c >= 2``, or None to fall back."""
    proba = objects.class_proba
    if proba is None or proba.shape[1] < 2:
        return None
    proba = np.asarray(proba, dtype=np.float64)
    if proba.size and not np.isfinite(proba).all():
        raise InvalidPredictionsError("class_proba contains NaN or infinite values")
    return proba


class BoxEntropy(ObjectScoringStrategy):
    """Prefer images whose detected boxes have uncertain classes (entropy per box).

    Each box counted (score ``>= min_score``) gets the Shannon entropy (nats) of its
    class probabilities, ``-Σ_c p_c log p_c``; the image score aggregates them (``max``
    by default: the image's most uncertain box). Brust et al. found ``sum`` best per
    labeled image, noting that it selects images with many objects; where the cost is
    per drawn box, ``max`` or ``mean`` does not reward crowding by itself.

    Without per-box class probabilities (or with one class, as a one-class cell detector)
    the box's uncertainty is the binary entropy of its detection score,
    ``-s log s - (1 - s) log(1 - s)``: whether the box is an object at all, highest at
    ``s = 0.5``.

    Parameters
    ----------
    aggregate : {"max", "mean", "sum", "topk"}, default="max"
    k : int, default=3
        Boxes averaged by ``topk``.
    min_score : float, default=0.1
        Boxes with a lower detection score do not count.

    References
    ----------
    Brust, C.-A., Käding, C., & Denzler, J. (2019). Active learning for deep object
    detection. VISAPP.
    Haussmann, E., Fenzi, M., Chitta, K., et al. (2020). Scalable active learning for
    object detection. IEEE Intelligent Vehicles Symposium.
    """

    name: ClassVar[str] = "box_entropy"
    summary: ClassVar[str] = "images whose boxes have uncertain classes (entropy per box)"
    reference: ClassVar[str] = "Brust et al. 2019, VISAPP; Haussmann et al. 2020, IEEE IV"

    def box_scores(self, objects: ObjectPredictions) -> tuple[list[np.ndarray], None]:
        """Entropy of each counted box of each image (nats)."""
        out: list[np.ndarray] = []
        for image in objects.images:
            boxes = self.kept(image)
            proba = box_class_proba(boxes)
            if proba is not None:
                out.append(entr(np.clip(proba, 0.0, 1.0)).sum(axis=1))
            else:
                out.append(binary_entropy(box_detection_proba(boxes, self.name)))
        return out, None
