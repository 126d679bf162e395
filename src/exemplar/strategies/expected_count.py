"""Expected-count uncertainty: how unsure the model is of how many objects an image holds."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.errors import ConfigError, InvalidPredictionsError, MissingPredictionsError
from exemplar.objects import ObjectPredictions
from exemplar.predictions import Predictions
from exemplar.strategies._objects import ObjectScoringStrategy, box_detection_proba

__all__ = ["ExpectedCount"]


class ExpectedCount(ObjectScoringStrategy):
    """Prefer images whose object count is uncertain (crowded, ambiguous cells).

    The image score is the variance of the predicted count, from the best source the
    predictions carry:

    1. ``count_samples`` (the expected count under each stochastic pass): their variance
       over the passes, the committee's disagreement on the count;
    2. otherwise stochastic passes of boxes (``samples``): the variance over the passes
       of each pass's expected count, the sum of its box scores ``>= min_score``;
    3. otherwise the prediction's own boxes: if box ``j`` is an object with probability
       ``s_j`` independently of the others, the count is Poisson-binomial and its
       variance is ``Σ_j s_j (1 - s_j)``. ``aggregate`` applies to this per-box term only
       (``sum``, the default, is exactly the variance).

    An image with many half-sure boxes, where a detector most often miscounts, scores
    highest.

    Parameters
    ----------
    aggregate : {"sum", "max", "mean", "topk"}, default="sum"
        Aggregation of the per-box ``s (1 - s)`` in the one-model case.
    k : int, default=3
        Boxes averaged by ``topk``.
    min_score : float, default=0.0
        Boxes with a lower score do not count (0: every box, as the expected count is the
        sum of all the detector's peak probabilities).
    source : {"auto", "count_samples", "samples", "boxes"}, default="auto"
        Force one of the sources above (``auto``: the first available).

    Notes
    -----
    The count variance is not taken from a detection paper. The committee forms (1, 2)
    are query by committee (Seung et al. 1992) applied to the predicted count, as Roy
    et al. (2018) apply committee disagreement to detections; the one-model form (3) is
    the variance of a sum of independent Bernoulli detections, the Poisson-binomial
    distribution (Wang 1993).

    References
    ----------
    Seung, H. S., Opper, M., & Sompolinsky, H. (1992). Query by committee. COLT.
    Roy, S., Unmesh, A., & Namboodiri, V. P. (2018). Deep active learning for object
    detection. BMVC.
    Wang, Y. H. (1993). On the number of successes in independent trials. Statistica
    Sinica, 3(2), 295-312.
    """

    name: ClassVar[str] = "expected_count"
    summary: ClassVar[str] = "images whose object count is uncertain (count variance)"
    reference: ClassVar[str] = "Seung et al. 1992, COLT; Roy et al. 2018, BMVC; Wang 1993"
    #: Count samples come with the detector's stochastic passes (used when present).
    object_passes: ClassVar[frozenset[str]] = frozenset({"samples"})

    def __init__(
        self,
        aggregate: str = "sum",
        k: int = 3,
        min_score: float = 0.0,
        source: str = "auto",
    ) -> None:
        super().__init__(aggregate=aggregate, k=k, min_score=min_score)
        self.source = source

    def _check_params(self) -> None:
        super()._check_params()
        sources = ("auto", "count_samples", "samples", "boxes")
        if self.source not in sources:
            raise ConfigError(f"source must be one of {', '.join(sources)}; got {self.source!r}")

    def utility(self, predictions: Predictions) -> np.ndarray:
        """Variance of each image's object count (``>= 0``).

        Parameters
        ----------
        predictions : Predictions
            Must carry ``objects``; ``count_samples`` or ``samples`` are used when present.

        Returns
        -------
        ndarray of shape (n,), float64

        Raises
        ------
        MissingPredictionsError, InvalidPredictionsError, ConfigError
        """
        self._check_params()
        objects = predictions.require_objects()
        source = self._source(objects)
        if source == "count_samples":
            counts = np.asarray(objects.count_samples, dtype=np.float64)
            if not np.isfinite(counts).all():
                raise InvalidPredictionsError("count_samples contains NaN or infinite values")
            return counts.var(axis=0)
        if source == "samples":
            assert objects.samples is not None
            counts = np.array(
                [
                    [box_detection_proba(self.kept(image), self.name).sum() for image in passes]
                    for passes in objects.samples
                ]
            ).reshape(len(objects.samples), len(objects))
            return counts.var(axis=0)
        return super().utility(predictions)

    def _source(self, objects: ObjectPredictions) -> str:
        if self.source != "auto":
            if self.source == "count_samples" and objects.count_samples is None:
                raise MissingPredictionsError(
                    "source 'count_samples' but the predictions have no count_samples"
                )
            if self.source == "samples" and not objects.samples:
                raise MissingPredictionsError(
                    "source 'samples' but the predictions have no stochastic passes"
                )
            return self.source
        if objects.count_samples is not None and np.shape(objects.count_samples)[0] > 1:
            return "count_samples"
        if objects.samples and len(objects.samples) > 1:
            return "samples"
        return "boxes"

    def box_scores(self, objects: ObjectPredictions) -> tuple[list[np.ndarray], None]:
        """``s (1 - s)`` of each counted box: its share of the Poisson-binomial variance."""
        out = []
        for image in objects.images:
            s = box_detection_proba(self.kept(image), self.name)
            out.append(s * (1.0 - s))
        return out, None
