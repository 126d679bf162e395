"""Curation: keep the labeled set small and right (issue #12).

Library pieces the loop calls each cycle; none of them touch the database or files.

* :mod:`~exemplar.curation.label_errors`: probable label errors by confident learning
  (Northcutt et al. 2021) on out-of-fold probabilities.
* :mod:`~exemplar.curation.objects`: the same for the classes of objects (detection), with
  out-of-fold detectors.
* :mod:`~exemplar.curation.split`: proposing a class split by clustering its exemplars'
  embeddings, choosing the number of new classes, and validating a merge.
* :mod:`~exemplar.curation.redundancy`: near duplicates and confidently classified items
  proposed for removal (a plan a human confirms), and the plan's validation.
"""

from __future__ import annotations

from exemplar.curation.label_errors import (
    LabelErrors,
    find_label_errors,
    out_of_fold_proba,
    rank_by_self_confidence,
)
from exemplar.curation.objects import (
    ObjectDescriber,
    object_label_errors,
    object_positions,
    out_of_fold_object_proba,
)
from exemplar.curation.redundancy import (
    DuplicateGroup,
    PlanValidation,
    PrunePlan,
    Removal,
    near_duplicates,
    prune_plan,
    redundant_by_margin,
    validate_plan,
)
from exemplar.curation.split import (
    SplitProposal,
    choose_n_classes,
    merge_mapping,
    propose_split,
)

__all__ = [
    "DuplicateGroup",
    "LabelErrors",
    "ObjectDescriber",
    "PlanValidation",
    "PrunePlan",
    "Removal",
    "SplitProposal",
    "choose_n_classes",
    "find_label_errors",
    "merge_mapping",
    "near_duplicates",
    "object_label_errors",
    "object_positions",
    "out_of_fold_object_proba",
    "out_of_fold_proba",
    "propose_split",
    "prune_plan",
    "rank_by_self_confidence",
    "redundant_by_margin",
    "validate_plan",
]
