"""Curation: keep the labeled set small and right (issue #12).

Library pieces the loop calls each cycle; none of them touch the database or files.

* :mod:`~exemplar.curation.label_errors`: probable label errors by confident learning
  (Northcutt et al. 2021) on out-of-fold probabilities.
* :mod:`~exemplar.curation.split`: proposing a class split by clustering its exemplars'
  embeddings, choosing the number of new classes, and validating a merge.
"""

from __future__ import annotations

from exemplar.curation.label_errors import (
    LabelErrors,
    find_label_errors,
    out_of_fold_proba,
    rank_by_self_confidence,
)
from exemplar.curation.split import (
    SplitProposal,
    choose_n_classes,
    merge_mapping,
    propose_split,
)

__all__ = [
    "LabelErrors",
    "SplitProposal",
    "choose_n_classes",
    "find_label_errors",
    "merge_mapping",
    "out_of_fold_proba",
    "propose_split",
    "rank_by_self_confidence",
]
