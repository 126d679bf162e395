"""Curation: keep the labeled set small and right (issue #12).

Library pieces the loop calls each cycle; none of them touch the database or files.

* :mod:`~exemplar.curation.label_errors`: probable label errors by confident learning
  (Northcutt et al. 2021) on out-of-fold probabilities.
"""

from __future__ import annotations

from exemplar.curation.label_errors import (
    LabelErrors,
    find_label_errors,
    out_of_fold_proba,
    rank_by_self_confidence,
)

__all__ = [
    "LabelErrors",
    "find_label_errors",
    "out_of_fold_proba",
    "rank_by_self_confidence",
]
