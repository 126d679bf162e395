"""exemplar: active learning that decides what an expert labels next, and proves it beats random."""

from exemplar.errors import ExemplarError
from exemplar.predictions import Predictions

__version__ = "0.1.0"

__all__ = ["ExemplarError", "Predictions", "__version__"]
