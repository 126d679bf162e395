"""Box margin: one minus the gap between the two most likely classes of each box."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.objects import ObjectPredictions
from exemplar.strategies._objects import ObjectScoringStrategy, box_detection_proba
from exemplar.strategies.box_entropy import box_class_proba

__all__ = ["BoxMargin"]


class BoxMargin(ObjectScoringStrategy):
    """Prefer images with boxes torn between two classes (``1 - (p1 - p2)`` per box).

    Each box counted (score ``>= min_score``) gets ``1 - (p_1 - p_2)``, with ``p_1`` and
    ``p_2`` its two largest class probabilities: 1 for a tie, 0 for a certain box. The
    image score aggregates them (``max`` by default).

    Without per-box class probabilities (or with one class) the two outcomes are object
    and background, ``p_1, p_2 = s, 1 - s`` for the box score ``s``, so the margin is
    ``1 - |2s - 1|``.

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
    detection. VISAPP (the "1-vs-2" margin per box).
    """

    name: ClassVar[str] = "box_margin"
    summary: ClassVar[str] = "images with boxes torn between two classes (1 - margin per box)"
    reference: ClassVar[str] = "Brust et al. 2019, VISAPP"

    def box_scores(self, objects: ObjectPredictions) -> tuple[list[np.ndarray], None]:
        """``1 - (p1 - p2)`` of each counted box of each image."""
        out: list[np.ndarray] = []
        for image in objects.images:
            boxes = self.kept(image)
            proba = box_class_proba(boxes)
            if proba is not None:
                top2 = -np.partition(-proba, 1, axis=1)[:, :2] if len(boxes) else proba[:, :2]
                out.append(1.0 - (top2[:, 0] - top2[:, 1]))
            else:
                s = box_detection_proba(boxes, self.name)
                out.append(1.0 - np.abs(2.0 * s - 1.0))
        return out, None
