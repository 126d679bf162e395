"""Chunked k-nearest-neighbour and radius queries: one home for every k-NN user.

ProbCover (δ-balls), TypiClust and information density (mean distance to the ``k``
nearest references) and the pruning of the curation workflow (near duplicates) all ask
the same two questions of a set of reference rows: which rows are nearest to a query, and
which lie within a radius of it. :class:`NeighborIndex` answers both in chunks of query
rows, so memory is bounded by one block whatever the number of queries (DESIGN.md §9).

Backends
--------
``"numpy"``
    Exact brute force in float32 BLAS blocks (``|q|² + |r|² - 2 q·r``), at most
    ``_BLOCK_ELEMENTS`` distances at a time. No index is built; the reference rows may be
    a memory-mapped array.
``"sklearn"``
    scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors` (exact; k-NN only).
``"faiss"``
    faiss (Johnson, Douze & Jégou 2019), imported with :mod:`importlib` only when it is
    installed (``pip install 'exemplar[faiss]'``). ``approximate=False``: an exact
    ``IndexFlatL2``. ``approximate=True``: an inverted-file index ``IndexIVFFlat`` with
    ``n_lists`` k-means cells (default ``4·√n``) trained on a seeded sample; a query scans
    the ``n_probe`` nearest cells only, so neighbours across cell borders can be missed
    (recall below 1, distances of the neighbours found are exact). Use it for reference
    sets of millions of rows, where an exact search costs O(n²·d).
``"auto"``
    faiss from :data:`FAISS_MIN_ROWS` reference rows when it is installed, the exact
    ``fallback`` backend otherwise (numpy by default), so small inputs give the same
    results whether or not faiss is installed.

faiss copies the reference rows into its index (``n·d·4`` bytes); the numpy backend reads
them in place.

References
----------
Johnson, J., Douze, M., & Jégou, H. (2019). Billion-scale similarity search with GPUs.
IEEE Transactions on Big Data, 7(3), 535-547.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Literal

import numpy as np
from sklearn.neighbors import NearestNeighbors

from exemplar.errors import ConfigError

__all__ = [
    "BACKENDS",
    "FAISS_MIN_ROWS",
    "NeighborIndex",
    "faiss_module",
    "knn_mean_distance",
    "resolve_backend",
    "sq_dist_block",
]

Backend = Literal["auto", "faiss", "sklearn", "numpy"]
#: Backends :class:`NeighborIndex` accepts.
BACKENDS: tuple[str, ...] = ("auto", "faiss", "sklearn", "numpy")
#: From this many reference rows, ``backend="auto"`` uses faiss when it is installed.
FAISS_MIN_ROWS = 20_000
#: Query rows per chunk, at most.
_CHUNK_ROWS = 65536
#: Upper bound on the elements of one (queries × references) distance block.
_BLOCK_ELEMENTS = 1 << 22
#: IVF training sample: this many rows per list (faiss warns below 39).
_IVF_TRAIN_PER_LIST = 64


@cache
def faiss_module() -> Any | None:
    """The faiss module when it is installed, else None (imported once)."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def resolve_backend(backend: str, n_ref: int, *, fallback: str = "numpy") -> str:
    """The concrete backend (``faiss``, ``sklearn`` or ``numpy``) for ``n_ref`` references.

    Raises :class:`ConfigError` for an unknown name, or for ``"faiss"`` when faiss is not
    installed.
    """
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown k-NN backend {backend!r}; expected one of {', '.join(BACKENDS)}"
        )
    if fallback not in ("sklearn", "numpy"):
        raise ConfigError(f"k-NN fallback must be 'sklearn' or 'numpy', got {fallback!r}")
    if backend == "faiss":
        if faiss_module() is None:
            raise ConfigError("the faiss backend needs faiss-cpu: pip install 'exemplar[faiss]'")
        return "faiss"
    if backend == "auto":
        if n_ref >= FAISS_MIN_ROWS and faiss_module() is not None:
            return "faiss"
        return fallback
    return backend


def sq_dist_block(x: np.ndarray, x_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``y`` and ``x``: shape (len(y), len(x))."""
    d2 = y @ x.T
    d2 *= -2.0
    d2 += y_sq[:, None]
    d2 += x_sq[None, :]
    return d2


def _row_sq(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float32)
    for start in range(0, x.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(x[start : start + _CHUNK_ROWS], dtype=np.float32)
        out[start : start + _CHUNK_ROWS] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def _row_step(m: int) -> int:
    return max(1, min(_CHUNK_ROWS, _BLOCK_ELEMENTS // max(m, 1)))


class NeighborIndex:
    """Nearest-neighbour and radius queries against fixed reference rows, in chunks.

    Parameters
    ----------
    ref : ndarray of shape (m, d)
        Reference rows (Euclidean distances; computed in float32). May be memory-mapped.
    backend : {"auto", "faiss", "sklearn", "numpy"}, default="auto"
        See the module notes.
    approximate : bool, default=False
        With faiss: an IVF index (approximate, see the module notes) instead of an exact
        flat one. Ignored by the exact backends.
    n_lists : int, optional
        IVF cells; default ``4·√m`` (at most ``m // 64``, at least 1).
    n_probe : int, default=16
        IVF cells scanned per query.
    fallback : {"numpy", "sklearn"}, default="numpy"
        The exact backend ``"auto"`` uses below :data:`FAISS_MIN_ROWS` or without faiss.
    random_state : int or Generator, optional
        Seeds the IVF training sample.

    Notes
    -----
    Radius queries (:meth:`radius_lists`, :meth:`reverse_counts`) are not offered by the
    sklearn backend; ``"auto"`` never picks it for them unless asked through ``fallback``,
    and then they run on numpy.
    """

    def __init__(
        self,
        ref: np.ndarray,
        *,
        backend: str = "auto",
        approximate: bool = False,
        n_lists: int | None = None,
        n_probe: int = 16,
        fallback: str = "numpy",
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        if np.ndim(ref) != 2 or ref.shape[0] == 0:
            raise ConfigError(f"k-NN references must be a non-empty 2-D array, got {ref.shape}")
        self.ref = ref
        self.n_ref = int(ref.shape[0])
        self.backend = resolve_backend(backend, self.n_ref, fallback=fallback)
        self.approximate = bool(approximate) and self.backend == "faiss"
        self._ref_sq: np.ndarray | None = None
        self._sk: NearestNeighbors | None = None
        self._faiss: Any = None
        if self.backend == "faiss":
            self._faiss = self._build_faiss(n_lists, n_probe, random_state)

    # ------------------------------------------------------------------ building

    def _build_faiss(
        self, n_lists: int | None, n_probe: int, random_state: int | np.random.Generator | None
    ) -> Any:
        faiss = faiss_module()
        assert faiss is not None
        m, d = self.ref.shape
        if not self.approximate:
            index = faiss.IndexFlatL2(d)
        else:
            lists = n_lists if n_lists is not None else int(4 * np.sqrt(m))
            lists = max(1, min(lists, m // _IVF_TRAIN_PER_LIST))
            quantizer = faiss.IndexFlatL2(d)
            index = faiss.IndexIVFFlat(quantizer, d, lists)  # faiss keeps the quantizer alive
            rng = np.random.default_rng(random_state)
            n_train = min(m, lists * _IVF_TRAIN_PER_LIST)
            rows = np.sort(rng.choice(m, n_train, replace=False)) if n_train < m else None
            train = self.ref if rows is None else self.ref[rows]
            index.train(np.ascontiguousarray(train, dtype=np.float32))
            index.nprobe = max(1, min(int(n_probe), lists))
        for start in range(0, m, _CHUNK_ROWS):
            index.add(np.ascontiguousarray(self.ref[start : start + _CHUNK_ROWS], dtype=np.float32))
        return index

    def _refs_sq(self) -> np.ndarray:
        if self._ref_sq is None:
            self._ref_sq = _row_sq(self.ref)
        return self._ref_sq

    def _ref32(self) -> np.ndarray:
        """The references as float32: a view when they already are (memory-mapped or not)."""
        if self.ref.dtype != np.float32:
            self.ref = np.asarray(self.ref, dtype=np.float32)
        return self.ref

    # ------------------------------------------------------------------ k-NN

    def knn(
        self, queries: np.ndarray, k: int, *, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest reference rows of each query, nearest first.

        Parameters
        ----------
        queries : ndarray of shape (n, d)
        k : int
            Neighbours per query (``k < n_ref`` when ``exclude`` is given).
        exclude : ndarray of int of shape (n,), optional
            ``exclude[i]`` is a reference row never returned for query ``i`` (``-1``:
            none), e.g. the query itself, so exact duplicates still count as neighbours.

        Returns
        -------
        dist : ndarray of shape (n, k), float64
            Euclidean distances (``inf`` where an approximate search found fewer).
        idx : ndarray of shape (n, k), int64
            Reference rows (``-1`` where an approximate search found fewer).
        """
        n = queries.shape[0]
        extra = 0 if exclude is None else 1
        if not 1 <= k <= self.n_ref - extra:
            raise ConfigError(f"k must be in [1, {self.n_ref - extra}], got {k}")
        dist = np.empty((n, k), dtype=np.float64)
        idx = np.empty((n, k), dtype=np.int64)
        step = _CHUNK_ROWS if self.backend != "numpy" else _row_step(self.n_ref)
        for start in range(0, n, step):
            q = np.asarray(queries[start : start + step], dtype=np.float32)
            own = None if exclude is None else np.asarray(exclude[start : start + step])
            d, i = self._knn_chunk(q, k + extra, own)
            if own is not None:
                d, i = _drop_own(d, i, own, k)
            dist[start : start + q.shape[0]] = d
            idx[start : start + q.shape[0]] = i
        return dist, idx

    def _knn_chunk(
        self, q: np.ndarray, k: int, own: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "faiss":
            d2, i = self._faiss.search(np.ascontiguousarray(q), k)
            i = i.astype(np.int64)
            d = np.where(i >= 0, np.sqrt(np.maximum(d2, 0.0)), np.inf).astype(np.float64)
            return d, i
        if self.backend == "sklearn":
            if self._sk is None:
                self._sk = NearestNeighbors(n_neighbors=k).fit(self.ref)
            d, i = self._sk.kneighbors(q, n_neighbors=k)
            return d.astype(np.float64), i.astype(np.int64)
        ref_sq = self._refs_sq()
        d2 = sq_dist_block(self._ref32(), ref_sq, q, np.einsum("ij,ij->i", q, q))
        if own is not None:  # never the excluded row: it is dropped by _drop_own anyway
            hit = np.flatnonzero(own >= 0)
            d2[hit, own[hit]] = -np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        i = np.take_along_axis(part, order, axis=1).astype(np.int64)
        d = np.sqrt(np.maximum(np.take_along_axis(pd, order, axis=1), 0.0)).astype(np.float64)
        return d, i

    # ------------------------------------------------------------------ radius

    def radius_lists(self, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference rows within ``radius`` (Euclidean, inclusive) of each query, as CSR.

        Returns ``(lims, idx)``: the neighbours of query ``i`` are
        ``idx[lims[i]:lims[i + 1]]`` (in no particular order).
        """
        lims_parts = [np.zeros(1, dtype=np.int64)]
        idx_parts: list[np.ndarray] = []
        total = 0
        for lims, idx in self._radius_chunks(queries, radius):
            lims_parts.append(lims[1:] + total)
            idx_parts.append(idx)
            total += idx.size
        idx_all = np.concatenate(idx_parts) if idx_parts else np.empty(0, dtype=np.int64)
        return np.concatenate(lims_parts), idx_all

    def reverse_counts(self, queries: np.ndarray, radius: float) -> np.ndarray:
        """For each reference row, how many queries lie within ``radius`` of it."""
        counts = np.zeros(self.n_ref, dtype=np.int64)
        if self.backend != "faiss":
            ref, ref_sq, thr = self._ref32(), self._refs_sq(), np.float32(radius * radius)
            step = _row_step(self.n_ref)
            for start in range(0, queries.shape[0], step):
                q = np.asarray(queries[start : start + step], dtype=np.float32)
                block = sq_dist_block(ref, ref_sq, q, np.einsum("ij,ij->i", q, q))
                counts += (block <= thr).sum(axis=0)
            return counts
        for _, idx in self._radius_chunks(queries, radius):
            counts += np.bincount(idx, minlength=self.n_ref)
        return counts

    def _radius_chunks(self, queries: np.ndarray, radius: float) -> Any:
        thr = np.float32(radius * radius)
        if self.backend == "faiss":
            # faiss keeps distances strictly below its radius: nudge it up one ulp.
            lim = float(np.nextafter(thr, np.float32(np.inf)))
            for start in range(0, queries.shape[0], _CHUNK_ROWS):
                q = np.ascontiguousarray(queries[start : start + _CHUNK_ROWS], dtype=np.float32)
                lims, _, idx = self._faiss.range_search(q, lim)
                yield lims.astype(np.int64), idx.astype(np.int64)
            return
        ref, ref_sq = self._ref32(), self._refs_sq()
        step = _row_step(self.n_ref)
        for start in range(0, queries.shape[0], step):
            q = np.asarray(queries[start : start + step], dtype=np.float32)
            hit = sq_dist_block(ref, ref_sq, q, np.einsum("ij,ij->i", q, q)) <= thr
            rows, cols = np.nonzero(hit)
            lims = np.zeros(q.shape[0] + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=q.shape[0]), out=lims[1:])
            yield lims, cols.astype(np.int64)


def _drop_own(
    d: np.ndarray, i: np.ndarray, own: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own reference from ``k + 1`` neighbours (else the last column)."""
    not_own = i != own[:, None]
    drop_last = not_own.all(axis=1)
    not_own[drop_last, -1] = False
    return d[not_own].reshape(-1, k), i[not_own].reshape(-1, k)


def knn_mean_distance(
    x: np.ndarray,
    ref: np.ndarray,
    k: int,
    self_ref: np.ndarray | None = None,
    *,
    backend: str = "auto",
) -> np.ndarray:
    """Mean Euclidean distance from each row of ``x`` to its ``k`` nearest rows of ``ref``.

    Memory is bounded by one chunk of queries: a (chunk × len(ref)) block with the numpy
    backend, a (chunk × k) result with faiss. Computed in float32; centre ``x`` and
    ``ref`` on a common mean first to limit cancellation. ``backend="auto"`` uses faiss
    (exact flat index) from :data:`FAISS_MIN_ROWS` reference rows when it is installed.

    Parameters
    ----------
    x : ndarray of shape (n, d), float32
        Query rows.
    ref : ndarray of shape (m, d), float32
        Reference rows.
    k : int
        Neighbours per row, ``1 <= k < m`` (``k <= m`` if ``self_ref`` is None).
    self_ref : ndarray of int of shape (n,), optional
        ``self_ref[i]`` is the row of ``ref`` that is ``x[i]`` itself (``-1`` if none); it
        is not counted as a neighbour.
    backend : {"auto", "faiss", "sklearn", "numpy"}, default="auto"

    Returns
    -------
    ndarray of shape (n,), float64
    """
    resolved = resolve_backend(backend, ref.shape[0])
    if resolved != "numpy":
        index = NeighborIndex(ref, backend=resolved)
        own = None if self_ref is None else np.asarray(self_ref)
        if own is not None and not (own >= 0).any():
            own = None
        if own is not None:
            dist, _ = index.knn(x, k, exclude=own)
        else:
            dist, _ = index.knn(x, k)
        return dist.mean(axis=1)
    n, m = x.shape[0], ref.shape[0]
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    ref_m2 = -2.0 * ref.T  # (d, m)
    step = _row_step(m)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, step):
        xc = x[start : start + step]
        # |x - r|² minus the row constant |x|², which does not change the ranking.
        part = xc @ ref_m2
        part += ref_sq[None, :]
        if self_ref is not None:
            own = self_ref[start : start + step]
            hit = np.flatnonzero(own >= 0)
            part[hit, own[hit]] = np.inf
        nearest = np.partition(part, k - 1, axis=1)[:, :k].astype(np.float64)
        nearest += np.einsum("ij,ij->i", xc, xc)[:, None]
        np.maximum(nearest, 0.0, out=nearest)
        out[start : start + step] = np.sqrt(nearest).mean(axis=1)
    return out
