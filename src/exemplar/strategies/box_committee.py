"""Box committee: disagreement of stochastic passes on each detected box."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr

from exemplar.errors import ConfigError, InvalidPredictionsError, MissingPredictionsError
from exemplar.objects import ObjectPredictions, Objects
from exemplar.strategies._objects import (
    ObjectScoringStrategy,
    box_detection_proba,
    match_boxes,
)
from exemplar.strategies.box_entropy import box_class_proba

__all__ = ["BoxCommittee"]

#: Ways of measuring the passes' disagreement on a box.
MEASURES = ("mutual_info", "disagreement")


class BoxCommittee(ObjectScoringStrategy):
    """Prefer images whose boxes the stochastic passes disagree on (committee on boxes).

    The ``t`` stochastic passes (MC dropout, ensemble members) are matched one-to-one to
    the boxes of the model's prediction (score ``>= min_score``) by IoU ``>= match_iou``
    (Hungarian assignment of the largest total IoU, or greedy). Per box:

    * ``measure="mutual_info"`` (default): each pass gives the box a distribution over
      background and the classes, ``(1 - s, s · p_1, ..., s · p_c)`` with ``s`` the
      matched box's score and ``p`` its class probabilities (its one-hot class without
      them); a pass that misses the box gives ``(1, 0, ..., 0)``. The score is the BALD
      mutual information ``H[mean_t q_t] - mean_t H[q_t]`` (nats): high when passes are
      each confident but disagree on whether the box exists or what it is.
    * ``measure="disagreement"``: the fraction of passes that miss the box, plus the
      variance of the matched boxes' scores, plus their localization spread
      ``1 - mean IoU`` with the box.

    Boxes that only some passes found, and the prediction did not, are not scored.

    Parameters
    ----------
    aggregate : {"max", "mean", "sum", "topk"}, default="max"
    k : int, default=3
        Boxes averaged by ``topk``.
    min_score : float, default=0.1
        Boxes (of the prediction and of the passes) with a lower score do not count.
    measure : {"mutual_info", "disagreement"}, default="mutual_info"
    match_iou : float, default=0.5
        Least IoU for a pass's box to be the same object.
    match : {"hungarian", "greedy"}, default="hungarian"

    References
    ----------
    Feng, D., Wei, X., Rosenbaum, L., Maki, A., & Dietmayer, K. (2019). Deep active
    learning for efficient training of a LiDAR 3D object detector. IEEE Intelligent
    Vehicles Symposium.
    Haussmann, E., Fenzi, M., Chitta, K., et al. (2020). Scalable active learning for
    object detection. IEEE Intelligent Vehicles Symposium.
    Houlsby, N., Huszár, F., Ghahramani, Z., & Lengyel, M. (2011). Bayesian active
    learning for classification and preference learning. arXiv:1112.5745.
    """

    name: ClassVar[str] = "box_committee"
    summary: ClassVar[str] = "images whose boxes stochastic passes disagree on (matched by IoU)"
    reference: ClassVar[str] = "Feng et al. 2019, IEEE IV; Haussmann et al. 2020, IEEE IV"
    object_passes: ClassVar[frozenset[str]] = frozenset({"samples"})

    def __init__(
        self,
        aggregate: str = "max",
        k: int = 3,
        min_score: float = 0.1,
        measure: str = "mutual_info",
        match_iou: float = 0.5,
        match: str = "hungarian",
    ) -> None:
        super().__init__(aggregate=aggregate, k=k, min_score=min_score)
        self.measure = measure
        self.match_iou = match_iou
        self.match = match

    def _check_params(self) -> None:
        super()._check_params()
        if self.measure not in MEASURES:
            raise ConfigError(f"measure must be one of {', '.join(MEASURES)}; got {self.measure!r}")
        if self.match not in ("hungarian", "greedy"):
            raise ConfigError(f"match must be 'hungarian' or 'greedy', got {self.match!r}")
        if not 0.0 < float(self.match_iou) <= 1.0:
            raise ConfigError(f"match_iou must be in (0, 1], got {self.match_iou!r}")

    def box_scores(self, objects: ObjectPredictions) -> tuple[list[np.ndarray], None]:
        """Disagreement of the passes on each counted box of each image."""
        if not objects.samples:
            raise MissingPredictionsError(
                f"strategy {self.name!r} needs stochastic passes of the detector "
                "(MC dropout or an ensemble): predict with samples=True"
            )
        t = len(objects.samples)
        out: list[np.ndarray] = []
        for i, image in enumerate(objects.images):
            boxes = self.kept(image)
            m = len(boxes)
            scores = np.zeros((t, m))  # matched score per pass, 0 when missed
            ious = np.zeros((t, m))  # IoU of the matched box, 0 when missed
            hit = np.zeros((t, m), dtype=bool)
            n_out = self._n_outcomes(objects, boxes)
            dists = np.zeros((t, m, n_out))
            dists[:, :, 0] = 1.0  # a miss: background for sure
            for j, passes in enumerate(objects.samples):
                other = self.kept(passes[i])
                rows, cols, iou = match_boxes(boxes.boxes, other.boxes, self.match_iou, self.match)
                if not rows.size:
                    continue
                matched = other.take(cols)
                s = box_detection_proba(matched, self.name)
                hit[j, rows], scores[j, rows], ious[j, rows] = True, s, iou
                dists[j, rows] = _outcome_dist(matched, s, n_out)
            if self.measure == "mutual_info":
                mean = dists.mean(axis=0)
                mi = entr(mean).sum(axis=1) - entr(dists).sum(axis=2).mean(axis=0)
                out.append(np.maximum(mi, 0.0))
            else:
                n_hit = hit.sum(axis=0)
                safe = np.maximum(n_hit, 1)
                mean_s = scores.sum(axis=0) / safe
                var_s = (np.where(hit, (scores - mean_s) ** 2, 0.0)).sum(axis=0) / safe
                spread = np.where(n_hit > 0, 1.0 - ious.sum(axis=0) / safe, 0.0)
                out.append(1.0 - n_hit / t + var_s + spread)
        return out, None

    def _n_outcomes(self, objects: ObjectPredictions, boxes: Objects) -> int:
        """Background plus the classes: the length of a box's outcome distribution."""
        proba = box_class_proba(boxes)
        n_classes = proba.shape[1] if proba is not None else max(int(objects.n_classes), 1)
        return n_classes + 1


def _outcome_dist(matched: Objects, scores: np.ndarray, n_out: int) -> np.ndarray:
    """``(1 - s, s · p_1, ..., s · p_c)`` for each matched box (one-hot ``p`` without proba)."""
    proba = box_class_proba(matched)
    if proba is None or proba.shape[1] != n_out - 1:
        classes = matched.classes
        if classes.size and (classes.min() < 0 or classes.max() >= n_out - 1):
            raise InvalidPredictionsError(
                f"box classes must be in 0..{n_out - 2}, got {int(classes.min())}..{int(classes.max())}"
            )
        proba = np.zeros((len(matched), n_out - 1))
        proba[np.arange(len(matched)), classes] = 1.0
    dist = np.empty((len(matched), n_out))
    dist[:, 0] = 1.0 - scores
    dist[:, 1:] = scores[:, None] * np.clip(proba, 0.0, 1.0)
    return dist
