"""Box committee: boxes the stochastic passes disagree on make their image worth labeling."""

from __future__ import annotations

import numpy as np
import pytest
from object_cases import objs, preds, shifted

from exemplar.errors import MissingPredictionsError
from exemplar.strategies import BoxCommittee

BOXES = [[0, 0, 10, 10], [50, 50, 60, 60]]


def _scene() -> tuple:
    agree = objs(BOXES, [0.9, 0.9], classes=[0, 1])
    disagree = objs(BOXES, [0.9, 0.9], classes=[0, 1])
    # Every pass finds both boxes of image 0, same class and place. On image 1, passes
    # drop the second box half of the time and flip its class once.
    passes = [
        [agree, disagree],
        [shifted(agree, 0.3), disagree.take([0])],
        [agree, objs(BOXES, [0.9, 0.9], classes=[0, 0])],
        [agree, disagree.take([0])],
    ]
    return agree, disagree, passes


@pytest.mark.parametrize("measure", ["mutual_info", "disagreement"])
def test_passes_that_disagree_rank_above_agreeing_ones(measure: str) -> None:
    agree, disagree, passes = _scene()
    p = preds([agree, disagree], samples=passes)
    scores = BoxCommittee(measure=measure).utility(p)
    assert scores[1] > scores[0]
    assert scores[0] == pytest.approx(0.0, abs=0.02)
    assert BoxCommittee(measure=measure).query(p, batch_size=1).tolist() == [1]


def test_mutual_information_of_a_box_found_by_half_the_passes() -> None:
    # Two passes find it with score 1, two miss it: each pass is certain, they split
    # evenly on object versus background -> mutual information log 2.
    box = objs([[0, 0, 10, 10]], [1.0])
    p = preds([box], n_classes=1, samples=[[box], [box], [objs([], [])], [objs([], [])]])
    assert BoxCommittee().utility(p)[0] == pytest.approx(np.log(2), rel=1e-5)


def test_uncertain_but_agreeing_passes_have_no_mutual_information() -> None:
    # Every pass says 0.5: uncertain, but no disagreement (what BALD leaves out).
    box = objs([[0, 0, 10, 10]], [0.5])
    p = preds([box], n_classes=1, samples=[[box]] * 4)
    assert BoxCommittee().utility(p)[0] == pytest.approx(0.0, abs=1e-9)


def test_disagreement_hand_computed() -> None:
    # Main box; pass 1 matches with IoU 1 and score 0.8, pass 2 with IoU 0.6 and score 0.4,
    # pass 3 and 4 miss: misses 0.5 + score variance 0.04 + spread 1 - 0.8 = 0.74.
    main = objs([[0, 0, 10, 10]], [0.9])
    p1 = objs([[0, 0, 10, 10]], [0.8])
    p2 = objs([[0, 0, 10, 6]], [0.4])
    none = objs([], [])
    p = preds([main], n_classes=1, samples=[[p1], [p2], [none], [none]])
    got = BoxCommittee(measure="disagreement").utility(p)[0]
    assert got == pytest.approx(0.5 + 0.04 + 0.2, rel=1e-5)


def test_passes_are_required() -> None:
    with pytest.raises(MissingPredictionsError, match="samples=True"):
        BoxCommittee().utility(preds([objs(BOXES, [0.9, 0.9])]))
