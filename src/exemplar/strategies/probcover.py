"""ProbCover: maximum probability coverage for a low-budget cold start (Yehuda et al., 2022).

Every item covers the items within distance ``δ`` of it (a δ-ball). ProbCover greedily
labels the item whose ball holds the most items not yet covered, after removing the items
already covered by labeled ones, so a small budget spreads over the dense regions of the
embedding space.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from exemplar.errors import ConfigError, StrategyError
from exemplar.strategies._knn import BACKENDS, NeighborIndex, resolve_backend, sq_dist_block
from exemplar.strategies.base import QueryContext, Strategy

__all__ = ["ProbCover"]

_CHUNK_ROWS = 65536
#: Upper bound on the elements of one (rows × columns) distance block.
_BLOCK_ELEMENTS = 1 << 22
#: Rows sampled to estimate the median nearest-neighbour distance.
_NN_SAMPLE = 2000


class ProbCover(Strategy):
    """Greedy max coverage of δ-balls in the embedding space.

    1. Items within ``δ`` of a labeled item are covered.
    2. Repeatedly pick the unlabeled item whose δ-ball holds the most uncovered items, and
       mark them covered.
    3. Once every item is covered, fill the batch with uniformly random items (seeded),
       as the authors do.

    Parameters
    ----------
    delta : float or None, default=None
        Ball radius (Euclidean). None derives it from the data: ``delta_factor`` times the
        median distance of an item to its nearest neighbour among the candidates (see
        Notes).
    delta_factor : float, default=1.5
        Multiplier of the median nearest-neighbour distance when ``delta`` is None.
    max_candidates : int, default=10000
        Pools larger than this are replaced by a seeded random subsample of this many
        unlabeled items, which are both the candidates and the items to cover (see Notes).
    backend : {"auto", "faiss", "numpy"}, default="auto"
        Radius search (:mod:`exemplar.strategies._knn`): ``"auto"`` uses faiss from
        20,000 candidates when it is installed, exact numpy blocks otherwise. Raise
        ``max_candidates`` with faiss to cover more of a large pool.
    approximate : bool, default=False
        Search a faiss inverted-file (IVF) index: balls may miss items across cell
        borders, so ball sizes are slightly underestimated; for ``max_candidates`` in the
        millions, where the exact search costs O(m²·D). Needs faiss: refused
        (:class:`StrategyError`) with ``backend="numpy"`` or when faiss is not
        installed; with ``"auto"`` it selects faiss at any size. Only then is a seed
        drawn for the IVF training sample.

    Notes
    -----
    The paper chooses ``δ`` as the largest radius whose balls stay "pure" with respect to
    k-means pseudo-labels (purity ≥ 0.95) on self-supervised embeddings. The default here
    needs no pseudo-labels: ``delta_factor`` times the median nearest-neighbour distance,
    which adapts to the scale and density of the embeddings. On standardised raw features
    (scikit-learn's digits, wine, breast cancer) a factor of 1.5 gave balls of a median
    10-20 items, and beat both larger factors and the purity rule in accuracy after 1-4
    picks per class. The rule suits embeddings of tens of dimensions or more, where
    nearest-neighbour distances are close to the within-cluster scale. In a few
    dimensions they are far smaller, balls hold a handful of items, and the picks
    concentrate in the densest region: set ``delta`` explicitly there, or whenever a
    tuned value is known. The nearest-neighbour distance shrinks as the candidate set
    grows, so the derived ``δ`` depends mildly on ``max_candidates``.

    Ten million items. The subsample is what makes ProbCover scale: its cost does not
    grow with the pool beyond one pass to draw the subsample and one score per item
    (measured at 10^7 items, 64-d embeddings on disk: bench/selection_10m.py,
    docs/scale.md). With faiss and ``max_candidates`` of 10^5 or more, the radius search
    runs in faiss (exact, or IVF with ``approximate=True``).

    The δ-graph is never stored. Ball sizes (out-degrees) are counted in one chunked pass
    over the candidate pairs; when a pick covers new items, the degrees of their
    neighbours are lowered with one chunked pass over those items. Each item becomes
    covered once, so the whole greedy run costs O(m²·D) time for ``m`` candidates and
    O(m) memory beyond one distance block. For pools larger than ``max_candidates`` the
    coverage is that of the subsample, an unbiased estimate of the pool's coverage
    (the ProbCover objective is an expectation over the data distribution).

    Scores (``return_scores``) are each candidate's initial ball size: the number of
    candidates it would newly cover, after coverage by the labeled items. Unlabeled items
    outside the subsample score 0.

    References
    ----------
    Yehuda, O., Dekel, A., Hacohen, G., & Weinshall, D. (2022). Active learning through a
    covering lens. NeurIPS.
    """

    name: ClassVar[str] = "probcover"
    summary: ClassVar[str] = "greedy coverage of δ-balls in embedding space (cold start)"
    reference: ClassVar[str] = "Yehuda et al. 2022, NeurIPS"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    cold_start: ClassVar[bool] = True

    def __init__(
        self,
        delta: float | None = None,
        delta_factor: float = 1.5,
        max_candidates: int = 10000,
        backend: str = "auto",
        approximate: bool = False,
    ) -> None:
        self.delta = delta
        self.delta_factor = delta_factor
        self.max_candidates = max_candidates
        self.backend = backend
        self.approximate = approximate

    def _select(self, ctx: QueryContext) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        assert ctx.predictions is not None
        emb = ctx.predictions.require_embeddings()
        unl, rng = ctx.unlabeled, ctx.rng
        if unl.size > self.max_candidates:
            cand_pos = np.sort(rng.choice(unl.size, self.max_candidates, replace=False))
        else:
            cand_pos = np.arange(unl.size)
        x = np.asarray(emb[unl[cand_pos]], dtype=np.float32)
        center = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        x -= center  # centred: less float32 cancellation in |x|² + |y|² - 2x·y
        x_sq = np.einsum("ij,ij->i", x, x)
        m = x.shape[0]
        seed = int(rng.integers(2**31 - 1)) if self.approximate else None  # IVF only
        index = NeighborIndex(
            x, backend=self.backend, approximate=self.approximate, random_state=seed
        )

        if self.delta is not None:
            delta = float(self.delta)
        elif index.backend == "faiss":
            delta = self.delta_factor * _median_nn_distance_index(index, x, rng)
        else:
            delta = self.delta_factor * _median_nn_distance(x, x_sq, rng)

        if ctx.labeled.size:
            covered = np.zeros(m, dtype=bool)
            for start in range(0, ctx.labeled.size, _CHUNK_ROWS):
                lab = np.asarray(emb[ctx.labeled[start : start + _CHUNK_ROWS]], dtype=np.float32)
                lab -= center
                covered |= index.reverse_counts(lab, delta) > 0
        else:
            covered = np.zeros(m, dtype=bool)
        degree = _count_within(index, x, np.flatnonzero(~covered), delta)
        scores = np.zeros(unl.size, dtype=np.float64)
        scores[cand_pos] = degree

        picks: list[int] = []
        picked = np.zeros(m, dtype=bool)
        while len(picks) < ctx.batch_size:
            row = int(np.argmax(np.where(picked, -1, degree)))
            if degree[row] <= 0 or picked[row]:
                break
            picks.append(row)
            picked[row] = True
            ball = np.zeros(m, dtype=bool)
            ball[index.radius_lists(x[row : row + 1], delta)[1]] = True
            ball[row] = True
            ball &= ~covered
            new = np.flatnonzero(ball)
            covered[new] = True
            # Items in `new` no longer count towards any ball that holds them.
            degree -= _count_within(index, x, new, delta)
        selected = cand_pos[np.asarray(picks, dtype=np.int64)]
        if len(picks) < ctx.batch_size:
            # Everything is covered: random fill from the unlabeled items not yet picked.
            rest = np.ones(unl.size, dtype=bool)
            rest[selected] = False
            fill = rng.choice(np.flatnonzero(rest), ctx.batch_size - len(picks), replace=False)
            selected = np.concatenate([selected, fill])
        return unl[selected], scores

    def _check_params(self) -> None:
        if self.delta is not None and not (np.isfinite(self.delta) and self.delta > 0):
            raise StrategyError(f"delta must be a positive number or None, got {self.delta!r}")
        if not (np.isfinite(self.delta_factor) and self.delta_factor > 0):
            raise StrategyError(
                f"delta_factor must be a positive number, got {self.delta_factor!r}"
            )
        value = self.max_candidates
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise StrategyError(f"max_candidates must be a positive integer, got {value!r}")
        if self.backend not in BACKENDS or self.backend == "sklearn":
            raise StrategyError(f"backend must be 'auto', 'faiss' or 'numpy', got {self.backend!r}")
        if not isinstance(self.approximate, (bool, np.bool_)):
            raise StrategyError(f"approximate must be True or False, got {self.approximate!r}")
        if self.approximate:
            try:
                resolve_backend(self.backend, 0, approximate=True)
            except ConfigError as exc:
                raise StrategyError(f"ProbCover: {exc}") from None


def _row_step(m: int) -> int:
    return max(1, min(_CHUNK_ROWS, _BLOCK_ELEMENTS // max(m, 1)))


def _count_within(
    index: NeighborIndex, x: np.ndarray, rows: np.ndarray, delta: float
) -> np.ndarray:
    """For each row of ``x``, how many of ``x[rows]`` lie within ``delta`` (copies one
    chunk of rows at a time, never ``x[rows]`` whole)."""
    counts = np.zeros(x.shape[0], dtype=np.int64)
    for start in range(0, rows.size, _CHUNK_ROWS):
        counts += index.reverse_counts(x[rows[start : start + _CHUNK_ROWS]], delta)
    return counts


def _median_nn_distance(x: np.ndarray, x_sq: np.ndarray, rng: np.random.Generator) -> float:
    """Median Euclidean distance from a row of ``x`` to its nearest other row.

    Estimated on a seeded random sample of at most ``_NN_SAMPLE`` rows (each compared
    with every row), chunked.
    """
    m = x.shape[0]
    if m < 2:
        return 1.0
    rows = np.arange(m) if m <= _NN_SAMPLE else np.sort(rng.choice(m, _NN_SAMPLE, replace=False))
    nn = np.empty(rows.size, dtype=np.float32)
    step = _row_step(m)
    for start in range(0, rows.size, step):
        idx = rows[start : start + step]
        d2 = sq_dist_block(x, x_sq, x[idx], x_sq[idx])
        d2[np.arange(idx.size), idx] = np.inf
        nn[start : start + step] = d2.min(axis=1)
    np.maximum(nn, 0.0, out=nn)
    med = float(np.sqrt(np.median(nn)))
    if med > 0.0:
        return med
    positive = nn[nn > 0]  # mostly exact duplicates: fall back to the smallest gap
    return float(np.sqrt(positive.min())) if positive.size else 1.0


def _median_nn_distance_index(
    index: NeighborIndex, x: np.ndarray, rng: np.random.Generator
) -> float:
    """:func:`_median_nn_distance` through a (faiss) index: same sample, same fallbacks."""
    m = x.shape[0]
    if m < 2:
        return 1.0
    rows = np.arange(m) if m <= _NN_SAMPLE else np.sort(rng.choice(m, _NN_SAMPLE, replace=False))
    dist, _ = index.knn(x[rows], 1, exclude=rows)
    nn = dist[:, 0]
    nn = nn[np.isfinite(nn)]
    med = float(np.median(nn)) if nn.size else 0.0
    if med > 0.0:
        return med
    positive = nn[nn > 0]
    return float(positive.min()) if positive.size else 1.0
