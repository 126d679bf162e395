"""Localization stability: boxes that move when the image is slightly changed (Kao et al.)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.errors import ConfigError, MissingPredictionsError
from exemplar.objects import ObjectPredictions, box_iou
from exemplar.predictions import Predictions
from exemplar.strategies._objects import AGGREGATES, ObjectScoringStrategy, box_detection_proba
from exemplar.strategies.box_entropy import box_class_proba

__all__ = ["LocalizationStability"]


class LocalizationStability(ObjectScoringStrategy):
    """Prefer images whose boxes move between augmented views (unstable localization).

    For each box ``B_j`` of the model's prediction (score ``>= min_score``) and each of
    the ``a`` augmented views (flips, shifts, noise; boxes mapped back to the original
    frame), the corresponding box is the view's box of highest IoU with ``B_j`` (IoU 0
    when the view found no box there). The box's stability is the mean of these IoUs,
    ``S(B_j) = (1/a) Σ_v max_{B ∈ view v} IoU(B_j, B)``, and its instability
    ``1 - S(B_j)``.

    With ``aggregate="weighted"`` (default) the image score is Kao et al.'s image
    stability turned into instability: the box instabilities averaged with the box scores
    ``s_j`` as weights, ``1 - Σ_j s_j S(B_j) / Σ_j s_j``, so confident boxes weigh most.

    ``classification > 0`` adds Kao et al.'s classification term: the score becomes
    ``instability + λ · U_C`` with ``U_C = max_j (1 - p_max(B_j))`` (least confidence of
    the most uncertain box; ``1 - max(s, 1 - s)`` without class probabilities). The
    paper's "localization stability + classification uncertainty" criterion,
    ``U_C - λ S_I``, ranks images the same way.

    Parameters
    ----------
    aggregate : {"weighted", "max", "mean", "sum", "topk"}, default="weighted"
        ``weighted``: the paper's score-weighted mean; the others as for every object
        strategy, over the box instabilities.
    k : int, default=3
        Boxes averaged by ``topk``.
    min_score : float, default=0.1
        Boxes (of the prediction and of the views) with a lower score do not count.
    classification : float, default=0.0
        Weight ``λ`` of the classification uncertainty term.

    References
    ----------
    Kao, C.-C., Lee, T.-Y., Sen, P., & Liu, M.-Y. (2018). Localization-aware active
    learning for object detection. ACCV.
    """

    name: ClassVar[str] = "localization_stability"
    summary: ClassVar[str] = "images whose boxes move between augmented views (1 - mean IoU)"
    reference: ClassVar[str] = "Kao et al. 2018, ACCV"
    aggregates: ClassVar[tuple[str, ...]] = ("weighted", *AGGREGATES)
    object_passes: ClassVar[frozenset[str]] = frozenset({"views"})

    def __init__(
        self,
        aggregate: str = "weighted",
        k: int = 3,
        min_score: float = 0.1,
        classification: float = 0.0,
    ) -> None:
        super().__init__(aggregate=aggregate, k=k, min_score=min_score)
        self.classification = classification

    def _check_params(self) -> None:
        super()._check_params()
        if not np.isfinite(self.classification) or self.classification < 0:
            raise ConfigError(f"classification must be >= 0, got {self.classification!r}")

    def box_scores(self, objects: ObjectPredictions) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Instability ``1 - mean IoU`` of each counted box, with the box scores as weights."""
        if not objects.views:
            raise MissingPredictionsError(
                f"strategy {self.name!r} needs predictions on augmented views: "
                "predict with views=True"
            )
        out: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        for i, image in enumerate(objects.images):
            boxes = self.kept(image)
            scores = box_detection_proba(boxes, self.name)
            stability = np.zeros(len(boxes), dtype=np.float64)
            for view in objects.views:
                other = self.kept(view[i])
                if len(boxes) and len(other):
                    stability += box_iou(boxes.boxes, other.boxes).max(axis=1)
            out.append(1.0 - stability / len(objects.views))
            weights.append(scores)
        return out, weights

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Instability of each image (plus ``λ`` times its classification uncertainty).

        Parameters
        ----------
        predictions : Predictions
            Must carry ``objects`` with ``views``.

        Returns
        -------
        ndarray of shape (n,), float64

        Raises
        ------
        MissingPredictionsError, InvalidPredictionsError, ConfigError
        """
        scores = super().utility(predictions)
        if self.classification > 0:
            scores = scores + self.classification * self._classification_uncertainty(
                predictions.require_objects()
            )
        return scores

    def _classification_uncertainty(self, objects: ObjectPredictions) -> np.ndarray:
        """``max_j (1 - p_max)`` of each image's counted boxes (0 without boxes)."""
        out = np.zeros(len(objects), dtype=np.float64)
        for i, image in enumerate(objects.images):
            boxes = self.kept(image)
            if not len(boxes):
                continue
            proba = box_class_proba(boxes)
            if proba is not None:
                out[i] = float((1.0 - proba.max(axis=1)).max())
            else:
                s = box_detection_proba(boxes, self.name)
                out[i] = float((1.0 - np.maximum(s, 1.0 - s)).max())
        return out
