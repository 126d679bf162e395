"""Tests of exemplar.curation.split: proposing a class split, and merge mappings."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from exemplar.curation.split import (
    SplitProposal,
    choose_n_classes,
    merge_mapping,
    propose_split,
)
from exemplar.errors import ConfigError, UsageError


def blobs(
    sizes: tuple[int, ...], centers: np.ndarray, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs (synthetic): embeddings and the true blob of each point, shuffled."""
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [c + spread * rng.standard_normal((n, centers.shape[1])) for n, c in zip(sizes, centers)]
    )
    y = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def two_directions(d: int = 16) -> np.ndarray:
    """Two centres in orthogonal directions, so they stay apart after L2 normalization."""
    centers = np.zeros((2, d))
    centers[0, 0] = 10.0
    centers[1, 1] = 10.0
    return centers


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_two_merged_blobs_are_recovered(method: str) -> None:
    x, y = blobs((60, 40), two_directions(), spread=1.5, seed=1)
    proposal = propose_split(x, n_classes=2, method=method, seed=0)
    assert isinstance(proposal, SplitProposal)
    assert adjusted_rand_score(y, proposal.cluster) >= 0.9
    assert proposal.silhouette > 0.3
    assert sum(proposal.sizes.values()) == len(y)


def test_three_blobs_and_choose_n_classes() -> None:
    centers = np.zeros((3, 12))
    for k in range(3):
        centers[k, k] = 10.0
    x, y = blobs((50, 40, 30), centers, spread=1.0, seed=2)
    assert choose_n_classes(x, max_k=5) == 3
    proposal = propose_split(x, n_classes=3)
    assert adjusted_rand_score(y, proposal.cluster) >= 0.9


def test_choose_n_classes_prefers_two_for_two_blobs() -> None:
    x, _ = blobs((50, 50), two_directions(), spread=1.0, seed=3)
    assert choose_n_classes(x, max_k=5) == 2


def test_margin_is_lowest_between_the_blobs() -> None:
    centers = two_directions()
    x, _ = blobs((50, 50), centers, spread=1.0, seed=4)
    # Points on the segment between the two centres: the middle ones are ambiguous.
    between = np.outer(np.linspace(0.4, 0.6, 5), centers[0]) + np.outer(
        np.linspace(0.6, 0.4, 5), centers[1]
    )
    proposal = propose_split(np.concatenate([x, between]), n_classes=2, seed=0)
    n = len(x)
    assert proposal.margin[n:].max() < np.quantile(proposal.margin[:n], 0.05)
    # The exact midpoint is the least confident item of all, and last in the bulk order.
    assert proposal.order[-1] == n + 2
    assert np.all(np.diff(proposal.margin[proposal.order]) <= 0)
    assert np.all(proposal.margin >= 0)  # k-means: every item's own centroid is nearest


def test_names_follow_cluster_size_then_centroid() -> None:
    x, y = blobs((30, 70), two_directions(), spread=1.0, seed=5)
    proposal = propose_split(x, names=["small", "large"], seed=0)
    # The larger blob (70 items, label 1) takes the first name, whatever k-means numbered it.
    assert proposal.names == ("small", "large")
    assert proposal.sizes == {"small": 70, "large": 30}
    assert all(a == "small" for a, t in zip(proposal.assignment, y) if t == 1)
    # Equal sizes: the centroid order decides, and it does not depend on the seed.
    x2, y2 = blobs((40, 40), two_directions(), spread=1.0, seed=6)
    firsts = {tuple(y2[propose_split(x2, seed=s).cluster == 0][:3]) for s in range(5)}
    assert len(firsts) == 1
    first = propose_split(x2, seed=0)
    # Centre 1 lies on axis 1, so its centroid has the smaller first coordinate.
    assert set(y2[first.cluster == 0]) == {1}


def test_deterministic_under_seed() -> None:
    x, _ = blobs((40, 35, 25), np.eye(3, 8) * 3.0, spread=1.5, seed=7)
    a = propose_split(x, n_classes=3, seed=11)
    b = propose_split(x, n_classes=3, seed=11)
    np.testing.assert_array_equal(a.cluster, b.cluster)
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_allclose(a.margin, b.margin)
    assert a.silhouette == b.silhouette


def test_review_order_lists_one_class_most_confident_first() -> None:
    x, _ = blobs((30, 20), two_directions(), spread=1.0, seed=8)
    p = propose_split(x, names=["a", "b"])
    ra = p.review_order("a")
    assert set(ra) == set(np.flatnonzero(p.cluster == 0))
    assert np.all(np.diff(p.margin[ra]) <= 0)
    with pytest.raises(ConfigError, match="unknown new class 'c'"):
        p.review_order("c")


def test_standardize_lets_a_small_scale_dimension_count() -> None:
    # The blobs differ only along a tiny-scale dimension; a huge noisy one hides them
    # unless dimensions are standardized.
    rng = np.random.default_rng(9)
    y = np.repeat([0, 1], 50)
    x = np.column_stack(
        [
            1000.0 + 100.0 * rng.standard_normal(100),
            np.where(y == 0, -0.01, 0.01) + 0.001 * rng.standard_normal(100),
        ]
    )
    raw = propose_split(x, l2_normalize=False)
    scaled = propose_split(x, l2_normalize=False, standardize=True)
    assert adjusted_rand_score(y, raw.cluster) < 0.5
    assert adjusted_rand_score(y, scaled.cluster) >= 0.9


def test_bad_inputs_raise_clear_errors() -> None:
    x, _ = blobs((10, 10), two_directions(), spread=1.0, seed=10)
    with pytest.raises(UsageError, match="2-D"):
        propose_split(x[0])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(UsageError, match="row 3"):
        propose_split(bad)
    with pytest.raises(UsageError, match="distinct"):
        propose_split(np.ones((10, 4)))
    with pytest.raises(ConfigError, match="at least 2"):
        propose_split(x, n_classes=1)
    with pytest.raises(ConfigError, match="need 2 names"):
        propose_split(x, names=["a"])
    with pytest.raises(ConfigError, match="distinct"):
        propose_split(x, names=["a", "a"])
    with pytest.raises(ConfigError, match="unknown method 'dbscan'"):
        propose_split(x, method="dbscan")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_k"):
        choose_n_classes(x, max_k=1)


def test_merge_mapping_maps_every_class() -> None:
    classes = ["cat", "kitten", "dog", "puppy", "bird"]
    mapping = merge_mapping(classes, {"cat": ["cat", "kitten"], "canine": ["dog", "puppy"]})
    assert mapping == {
        "cat": "cat",
        "kitten": "cat",
        "dog": "canine",
        "puppy": "canine",
        "bird": "bird",
    }
    assert list(mapping) == classes


@pytest.mark.parametrize(
    ("merge", "message"),
    [
        ({"x": []}, "no classes listed to merge into 'x'"),
        ({"x": ["cat", "horse"]}, "unknown class 'horse'"),
        ({"dog": ["cat", "kitten"]}, "'dog' is an existing class not listed"),
        ({"x": ["cat"], "y": ["cat", "dog"]}, "'cat' is merged into both 'x' and 'y'"),
        ({"x": ["cat", "cat"]}, "'cat' is listed twice"),
        ({"x": "cat"}, "must be a list"),
        ({"": ["cat"]}, "non-empty name"),
    ],
)
def test_merge_mapping_errors(merge: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        merge_mapping(["cat", "kitten", "dog"], merge)


def test_merge_mapping_rejects_repeated_current_classes() -> None:
    with pytest.raises(ConfigError, match="repeat 'cat'"):
        merge_mapping(["cat", "dog", "cat"], {"pet": ["cat", "dog"]})
