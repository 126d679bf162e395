"""The cost model: does active learning pay for itself, and from what pool size."""

from __future__ import annotations

import pytest

from exemplar.metrics import estimate_cost


def test_pays_off_when_savings_exceed_engineering() -> None:
    c = estimate_cost(
        labels_random=300, labels_strategy=100, pool_size=5000, label_cost=10, engineering_cost=1000
    )
    assert c.labels_saved == 200 and c.label_savings == 2000
    assert c.pays_off and c.net_benefit == 1000
    assert "pays for itself" in c.explanation


def test_break_even_pool_size_scales_with_engineering_cost() -> None:
    c = estimate_cost(
        labels_random=300, labels_strategy=100, pool_size=5000, label_cost=1, engineering_cost=1000
    )
    assert not c.pays_off
    # 200 labels saved per 5000 items -> 1000 of savings needs 25,000 items.
    assert c.break_even_pool_size == pytest.approx(25_000)
    assert "25,000" in c.explanation


def test_no_savings_never_pays() -> None:
    c = estimate_cost(
        labels_random=100, labels_strategy=150, pool_size=5000, label_cost=5, engineering_cost=0
    )
    assert not c.pays_off and c.break_even_pool_size is None
    assert "saved no labels" in c.explanation


def test_negative_cost_rejected() -> None:
    with pytest.raises(ValueError):
        estimate_cost(100, 50, 1000, label_cost=-1, engineering_cost=0)
