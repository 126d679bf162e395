"""Row-wise helpers of the uncertainty strategies (strategies/_proba.py)."""

from __future__ import annotations

import numpy as np
import pytest

from exemplar.strategies._proba import top2


@pytest.mark.parametrize("c", [2, 3, 10, 64, 65, 200])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top2_equals_a_full_sort(c: int, dtype: type) -> None:
    rng = np.random.default_rng(c)
    proba = rng.dirichlet(np.ones(c), 40_000).astype(dtype)
    proba[::7, 1] = proba[::7, 0]  # ties at the top: second equals first
    first, second = top2(proba)
    ordered = np.sort(proba, axis=1)
    np.testing.assert_array_equal(first, ordered[:, -1])
    np.testing.assert_array_equal(second, ordered[:, -2])
    assert first.dtype == second.dtype == dtype


def test_top2_of_an_empty_pool() -> None:
    first, second = top2(np.empty((0, 5), dtype=np.float32))
    assert first.shape == second.shape == (0,)
