"""Uncertain boxes, then diverse images: the hybrid default for detection tasks."""

from __future__ import annotations

from typing import ClassVar

from exemplar.strategies._objects import ObjectTaskMixin
from exemplar.strategies.uncertain_diverse import UncertainThenDiverse

__all__ = ["BoxUncertainThenDiverse"]


class BoxUncertainThenDiverse(ObjectTaskMixin, UncertainThenDiverse):
    """Top ``factor × batch`` images by an object utility, then a diverse batch among them.

    The detection counterpart of ``uncertain_diverse`` (same code): the pre-filter is an
    object strategy (``box_entropy`` by default), and the diverse pick is greedy k-center
    (``coreset``, the default here) or weighted k-means on the detector's pooled image
    embeddings. Uncertain images of one kind (the same crowded field, the same stain)
    would otherwise fill a batch.

    Parameters
    ----------
    base : str, default="box_entropy"
        Registry name of the object strategy that ranks the images (its defaults apply).
    factor : int, default=10
        Candidates kept per batch slot (``m = factor × batch_size``).
    diversity : {"coreset", "kmeans"}, default="coreset"
        How the diverse batch is drawn from the candidates.

    References
    ----------
    Sener, O., & Savarese, S. (2018). Active learning for convolutional neural networks:
    A core-set approach. ICLR.
    Zhdanov, F. (2019). Diverse mini-batch active learning. arXiv:1901.05954.
    Brust, C.-A., Käding, C., & Denzler, J. (2019). Active learning for deep object
    detection. VISAPP.
    """

    name: ClassVar[str] = "box_uncertain_diverse"
    summary: ClassVar[str] = (
        "top factor×batch images by box uncertainty, then k-center on embeddings"
    )
    reference: ClassVar[str] = "Brust et al. 2019, VISAPP; Sener & Savarese 2018, ICLR"
    requires: ClassVar[frozenset[str]] = frozenset({"objects", "embeddings"})

    def __init__(
        self, base: str = "box_entropy", factor: int = 10, diversity: str = "coreset"
    ) -> None:
        super().__init__(base=base, factor=factor, diversity=diversity)
