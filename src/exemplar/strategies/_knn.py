"""Chunked k-nearest-neighbour and radius queries: one home for every k-NN user.

ProbCover (δ-balls), TypiClust and information density (mean distance to the ``k``
nearest references) and the pruning of the curation workflow (near duplicates) all ask
the same two questions of a set of reference rows: which rows are nearest to a query, and
which lie within a radius of it. :class:`NeighborIndex` answers both in chunks of query
rows, so memory is bounded by one block whatever the number of queries (DESIGN.md §9).

Backends
--------
``"numpy"``
    Exact brute force in float32 BLAS blocks (``|q|² + |r|² - 2 q·r``) of at most
    ``_BLOCK_ELEMENTS`` distances: chunks of queries against chunks of at most
    ``_CHUNK_ROWS`` reference rows. No index is built; the reference rows may be a
    memory-mapped array and are read in place.
``"sklearn"``
    scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors` (exact; k-NN only).
``"faiss"``
    faiss (Johnson, Douze & Jégou 2019), imported with :mod:`importlib` only when it is
    installed (``pip install 'exemplar[faiss]'``). ``approximate=False``: an exact
    ``IndexFlatL2``. ``approximate=True``: an inverted-file index ``IndexIVFFlat`` with
    ``n_lists`` k-means cells (default ``4·√n``) trained on a seeded sample; a query scans
    the ``n_probe`` nearest cells only, so neighbours across cell borders can be missed
    (recall below 1, distances of the neighbours found are exact). Use it for reference
    sets of millions of rows, where an exact search costs O(n²·d). ``approximate=True``
    always means faiss: it is refused with another backend or without faiss.
``"auto"``
    faiss from :data:`FAISS_MIN_ROWS` reference rows when it is installed, the exact
    ``fallback`` backend otherwise (numpy by default), so small inputs give the same
    results whether or not faiss is installed.

Accuracy. float32 distances ``|q|² + |r|² - 2 q·r`` cancel badly when the rows lie far
from the origin compared with their spread (points at ``1000 ± 0.01`` lose every
digit). The numpy and faiss backends therefore work in a frame centred on the reference
mean whenever that mean lies far from the origin compared with the rows' spread
(``|μ|² > 16·E|r - μ|²``, more than 4 bits lost); queries and reference blocks are
shifted chunk by chunk and the pool is never copied. Other data (embeddings roughly
centred, or small integers, which float32 holds exactly) are used as given. Radius queries are exact and inclusive: a pair whose float32 distance lies within
a rounding-error band of the radius is recomputed from the input rows in float64, so the
numpy and faiss backends return the same pairs, those with Euclidean distance
``<= radius``.

faiss copies the reference rows into its index (``n·d·4`` bytes); the numpy backend reads
them in place. faiss radius searches run on chunks of queries sized from the largest ball
seen so far, so a chunk's result stays near :data:`_RANGE_PAIRS` pairs (the first chunk
is sized for the worst case, every query matching every reference).

References
----------
Johnson, J., Douze, M., & Jégou, H. (2019). Billion-scale similarity search with GPUs.
IEEE Transactions on Big Data, 7(3), 535-547.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
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
#: Query rows per chunk, and reference rows per block, at most.
_CHUNK_ROWS = 65536
#: Upper bound on the elements of one (queries × references) distance block.
_BLOCK_ELEMENTS = 1 << 22
#: Target number of (query, reference) pairs one faiss range search returns (about 12
#: bytes each in faiss's result, a few times that while faiss gathers it).
_RANGE_PAIRS = 1 << 20
#: Pairs recomputed in float64 at a time (those near the radius).
_EXACT_PAIRS = 1 << 16
#: IVF training sample: this many rows per list (faiss warns below 39).
_IVF_TRAIN_PER_LIST = 64
#: Centre the frame when |mean|² exceeds this many times E|r - mean|² (4 bits lost).
_CENTRE_RATIO = 16.0
_EPS32 = float(np.finfo(np.float32).eps) / 2.0  # unit roundoff of float32


@cache
def faiss_module() -> Any | None:
    """The faiss module when it is installed, else None (imported once)."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def resolve_backend(
    backend: str, n_ref: int, *, fallback: str = "numpy", approximate: bool = False
) -> str:
    """The concrete backend (``faiss``, ``sklearn`` or ``numpy``) for ``n_ref`` references.

    ``approximate=True`` (an IVF index) resolves to faiss whatever ``n_ref``. Raises
    :class:`ConfigError` for an unknown name, for ``"faiss"`` (or ``approximate``) when
    faiss is not installed, and for ``approximate`` with an exact backend.
    """
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown k-NN backend {backend!r}; expected one of {', '.join(BACKENDS)}"
        )
    if fallback not in ("sklearn", "numpy"):
        raise ConfigError(f"k-NN fallback must be 'sklearn' or 'numpy', got {fallback!r}")
    if approximate:
        if backend not in ("auto", "faiss"):
            raise ConfigError(
                f"approximate=True needs the faiss backend (an IVF index); the {backend!r} "
                "backend is exact: drop approximate or use backend='faiss'"
            )
        backend = "faiss"
    if backend == "faiss":
        if faiss_module() is None:
            what = "approximate=True" if approximate else "the faiss backend"
            raise ConfigError(f"{what} needs faiss-cpu: pip install 'exemplar[faiss]'")
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


def _row_step(m: int) -> int:
    return max(1, min(_CHUNK_ROWS, _BLOCK_ELEMENTS // max(m, 1)))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class NeighborIndex:
    """Nearest-neighbour and radius queries against fixed reference rows, in chunks.

    Parameters
    ----------
    ref : ndarray of shape (m, d)
        Reference rows (Euclidean distances; computed in float32, see the module notes
        on accuracy). May be memory-mapped; it is never copied whole by the numpy backend.
    backend : {"auto", "faiss", "sklearn", "numpy"}, default="auto"
        See the module notes.
    approximate : bool, default=False
        Search a faiss IVF index (approximate, see the module notes) instead of an exact
        one. Needs faiss: refused (:class:`ConfigError`) with ``"numpy"`` or
        ``"sklearn"`` or without faiss; with ``"auto"`` it selects faiss at any size.
    n_lists : int, optional
        IVF cells; default ``4·√m`` (at most ``m // 64``, at least 1).
    n_probe : int, default=16
        IVF cells scanned per query.
    fallback : {"numpy", "sklearn"}, default="numpy"
        The exact backend ``"auto"`` uses below :data:`FAISS_MIN_ROWS` or without faiss.
    random_state : int or Generator, optional
        Seeds the IVF training sample (used only with ``approximate=True``).

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
        if not isinstance(ref, np.ndarray):
            raise ConfigError(
                f"k-NN references must be a numpy array (n, d), got {type(ref).__name__}"
            )
        if ref.ndim != 2 or ref.shape[0] == 0 or ref.shape[1] == 0:
            raise ConfigError(f"k-NN references must be a non-empty 2-D array, got {ref.shape}")
        if ref.dtype.kind not in "fiu":
            raise ConfigError(f"k-NN references must be real numbers, got dtype {ref.dtype}")
        if not isinstance(approximate, (bool, np.bool_)):
            raise ConfigError(f"approximate must be True or False, got {approximate!r}")
        if n_lists is not None and (not _is_int(n_lists) or n_lists < 1):
            raise ConfigError(f"n_lists must be a positive integer or None, got {n_lists!r}")
        if not _is_int(n_probe) or n_probe < 1:
            raise ConfigError(f"n_probe must be a positive integer, got {n_probe!r}")
        self.ref = ref
        self.n_ref = int(ref.shape[0])
        self.dim = int(ref.shape[1])
        self.backend = resolve_backend(
            backend, self.n_ref, fallback=fallback, approximate=bool(approximate)
        )
        self.approximate = bool(approximate)
        self._prepared = False
        self._center: np.ndarray | None = None
        self._ref_sq: np.ndarray | None = None
        self._ref_sq_max = 0.0
        self._single: np.ndarray | None = None
        self._sk: NearestNeighbors | None = None
        self._faiss: Any = None
        if self.backend == "faiss":
            self._faiss = self._build_faiss(n_lists, int(n_probe), random_state)

    # ------------------------------------------------------------------ building

    def _prepare(self) -> None:
        """One chunked pass: the frame (centred or not) and the rows' squared norms in it."""
        if self._prepared:
            return
        m, d = self.ref.shape
        total = np.zeros(d, dtype=np.float64)
        total_sq = 0.0
        ref_sq = np.empty(m, dtype=np.float32)
        for start in range(0, m, _CHUNK_ROWS):
            chunk = np.asarray(self.ref[start : start + _CHUNK_ROWS], dtype=np.float32)
            ref_sq[start : start + _CHUNK_ROWS] = np.einsum("ij,ij->i", chunk, chunk)
            wide = chunk.astype(np.float64)
            total += wide.sum(axis=0)
            total_sq += float(np.einsum("ij,ij->", wide, wide))
        mean = total / m
        mean_sq = float(mean @ mean)
        spread = total_sq / m - mean_sq  # E|r - μ|²
        if mean_sq > _CENTRE_RATIO * max(spread, 0.0):
            self._center = mean.astype(np.float32)
            for start in range(0, m, _CHUNK_ROWS):
                chunk = np.asarray(self.ref[start : start + _CHUNK_ROWS], dtype=np.float32)
                chunk = chunk - self._center
                ref_sq[start : start + _CHUNK_ROWS] = np.einsum("ij,ij->i", chunk, chunk)
        self._ref_sq = ref_sq
        self._ref_sq_max = float(ref_sq.max()) if m else 0.0
        self._prepared = True

    def _frame(self, rows: np.ndarray) -> np.ndarray:
        """Rows as float32 in the index's frame (shifted by the centre when there is one)."""
        self._prepare()
        out = np.asarray(rows, dtype=np.float32)
        if self._center is not None:
            out = out - self._center
        return out

    def _build_faiss(
        self, n_lists: int | None, n_probe: int, random_state: int | np.random.Generator | None
    ) -> Any:
        faiss = faiss_module()
        if faiss is None:  # resolve_backend checked it; faiss_module may be patched since
            raise ConfigError("the faiss backend needs faiss-cpu: pip install 'exemplar[faiss]'")
        self._prepare()
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
            index.train(np.ascontiguousarray(self._frame(train)))
            index.nprobe = max(1, min(n_probe, lists))
        for start in range(0, m, _CHUNK_ROWS):
            index.add(np.ascontiguousarray(self._frame(self.ref[start : start + _CHUNK_ROWS])))
        return index

    def _ref_blocks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(start, rows in the frame, their squared norms)`` for each block of references.

        At most ``_CHUNK_ROWS`` rows per block; a single block is kept (a view of
        float32 references, else one bounded copy), larger sets are read block by block.
        """
        self._prepare()
        assert self._ref_sq is not None
        if self.n_ref <= _CHUNK_ROWS:
            if self._single is None:
                self._single = self._frame(self.ref)
            yield 0, self._single, self._ref_sq
            return
        for start in range(0, self.n_ref, _CHUNK_ROWS):
            stop = start + _CHUNK_ROWS
            yield start, self._frame(self.ref[start:stop]), self._ref_sq[start:stop]

    # ------------------------------------------------------------------ checks

    def _check_queries(self, queries: np.ndarray) -> None:
        if not isinstance(queries, np.ndarray):
            raise ConfigError(
                f"k-NN queries must be a numpy array (n, d), got {type(queries).__name__}"
            )
        if queries.ndim != 2:
            raise ConfigError(
                f"k-NN queries must be a 2-D array (n, {self.dim}), got shape {queries.shape}; "
                "for one query pass q[None, :]"
            )
        if queries.shape[1] != self.dim:
            raise ConfigError(
                f"k-NN queries have {queries.shape[1]} dimensions, the references {self.dim}"
            )
        if queries.dtype.kind not in "fiu":
            raise ConfigError(f"k-NN queries must be real numbers, got dtype {queries.dtype}")

    @staticmethod
    def _check_radius(radius: float) -> float:
        if isinstance(radius, (bool, np.bool_)) or not isinstance(
            radius, (int, float, np.integer, np.floating)
        ):
            raise ConfigError(f"radius must be a number >= 0, got {radius!r}")
        value = float(radius)
        if not (np.isfinite(value) and value >= 0.0):
            raise ConfigError(f"radius must be a finite number >= 0, got {radius!r}")
        return value

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
        self._check_queries(queries)
        n = queries.shape[0]
        extra = 0 if exclude is None else 1
        if not _is_int(k) or not 1 <= k <= self.n_ref - extra:
            raise ConfigError(f"k must be an integer in [1, {self.n_ref - extra}], got {k!r}")
        k = int(k)
        if exclude is not None:
            exclude = np.asarray(exclude)
            if exclude.shape != (n,) or exclude.dtype.kind not in "iu":
                raise ConfigError(
                    f"exclude must be {n} integer row numbers (-1: none), got "
                    f"shape {exclude.shape} and dtype {exclude.dtype}"
                )
            if n and (exclude.min() < -1 or exclude.max() >= self.n_ref):
                raise ConfigError(f"exclude holds rows outside [-1, {self.n_ref - 1}]")
        dist = np.empty((n, k), dtype=np.float64)
        idx = np.empty((n, k), dtype=np.int64)
        if self.backend == "numpy":
            step = _row_step(min(self.n_ref, _CHUNK_ROWS))
        else:
            step = _CHUNK_ROWS
        for start in range(0, n, step):
            raw = queries[start : start + step]
            own = None if exclude is None else exclude[start : start + step]
            d, i = self._knn_chunk(raw, k + extra, own)
            if own is not None:
                d, i = _drop_own(d, i, own, k)
            dist[start : start + raw.shape[0]] = d
            idx[start : start + raw.shape[0]] = i
        return dist, idx

    def _knn_chunk(
        self, raw: np.ndarray, k: int, own: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "faiss":
            d2, i = self._faiss.search(np.ascontiguousarray(self._frame(raw)), k)
            i = i.astype(np.int64)
            d = np.where(i >= 0, np.sqrt(np.maximum(d2, 0.0)), np.inf).astype(np.float64)
            return d, i
        if self.backend == "sklearn":
            if self._sk is None:
                self._sk = NearestNeighbors(n_neighbors=k).fit(self.ref)
            d, i = self._sk.kneighbors(np.asarray(raw, dtype=np.float32), n_neighbors=k)
            return d.astype(np.float64), i.astype(np.int64)
        q = self._frame(raw)
        q_sq = np.einsum("ij,ij->i", q, q)
        best_d2: np.ndarray | None = None
        best_i: np.ndarray | None = None
        for start, ref, ref_sq in self._ref_blocks():
            d2 = sq_dist_block(ref, ref_sq, q, q_sq)
            if own is not None:  # never the excluded row: it is dropped by _drop_own anyway
                hit = np.flatnonzero((own >= start) & (own < start + ref.shape[0]))
                d2[hit, own[hit] - start] = -np.inf
            kk = min(k, d2.shape[1])
            part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
            pd = np.take_along_axis(d2, part, axis=1)
            if best_d2 is None or best_i is None:
                best_d2, best_i = pd, part
                continue
            cand_d2 = np.concatenate([best_d2, pd], axis=1)
            cand_i = np.concatenate([best_i, part + start], axis=1)
            if cand_d2.shape[1] > k:
                keep = np.argpartition(cand_d2, k - 1, axis=1)[:, :k]
                cand_d2 = np.take_along_axis(cand_d2, keep, axis=1)
                cand_i = np.take_along_axis(cand_i, keep, axis=1)
            best_d2, best_i = cand_d2, cand_i
        assert best_d2 is not None and best_i is not None
        order = np.argsort(best_d2, axis=1, kind="stable")
        i = np.take_along_axis(best_i, order, axis=1).astype(np.int64)
        d = np.sqrt(np.maximum(np.take_along_axis(best_d2, order, axis=1), 0.0))
        return d.astype(np.float64), i

    # ------------------------------------------------------------------ radius

    def radius_lists(self, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference rows within ``radius`` (Euclidean, inclusive) of each query, as CSR.

        Returns ``(lims, idx)``: the neighbours of query ``i`` are
        ``idx[lims[i]:lims[i + 1]]`` (in no particular order).
        """
        self._check_queries(queries)
        radius = self._check_radius(radius)
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
        """For each reference row, how many queries lie within ``radius`` (inclusive) of it."""
        self._check_queries(queries)
        radius = self._check_radius(radius)
        counts = np.zeros(self.n_ref, dtype=np.int64)
        if self.backend != "faiss":
            step = _row_step(min(self.n_ref, _CHUNK_ROWS))
            for start in range(0, queries.shape[0], step):
                raw = queries[start : start + step]
                for ref_start, hit in self._numpy_hits(raw, radius):
                    counts[ref_start : ref_start + hit.shape[1]] += hit.sum(axis=0)
            return counts
        for _, idx in self._radius_chunks(queries, radius):
            counts += np.bincount(idx, minlength=self.n_ref)
        return counts

    def _band(self, q_sq_max: float, radius: float) -> tuple[np.float32, np.float32]:
        """float32 limits ``(lo, hi)`` on a computed squared distance: ``<= lo`` is surely
        within ``radius``, ``> hi`` surely not, anything between is recomputed exactly.

        The band bounds the rounding error of ``|q|² + |r|² - 2 q·r`` in float32 over ``d``
        dimensions, of the shift into the centred frame and of the float32 inputs.
        """
        r2 = radius * radius
        band = (2 * self.dim + 48) * _EPS32 * (q_sq_max + self._ref_sq_max) + 4 * _EPS32 * r2
        top = float(np.finfo(np.float32).max)
        if r2 - band > top:  # every float32 distance is within
            return np.float32(np.inf), np.float32(np.inf)
        lo = np.float32(r2 - band)
        if float(lo) > r2 - band:
            lo = np.nextafter(lo, np.float32(-np.inf))
        if r2 + band > top:
            return lo, np.float32(np.inf)
        hi = np.float32(r2 + band)
        if float(hi) < r2 + band:
            hi = np.nextafter(hi, np.float32(np.inf))
        # One ulp more: faiss keeps distances strictly below its radius.
        return lo, np.nextafter(hi, np.float32(np.inf))

    def _exact_within(
        self, raw: np.ndarray, rows: np.ndarray, cols: np.ndarray, radius: float
    ) -> np.ndarray:
        """Is reference ``cols[j]`` within ``radius`` of query ``raw[rows[j]]`` (float64)."""
        out = np.empty(rows.size, dtype=bool)
        for start in range(0, rows.size, _EXACT_PAIRS):
            r = rows[start : start + _EXACT_PAIRS]
            c = cols[start : start + _EXACT_PAIRS]
            order = np.argsort(c, kind="stable")  # sorted reads of a memory-mapped pool
            diff = np.asarray(raw[r[order]], dtype=np.float64)
            diff -= np.asarray(self.ref[c[order]], dtype=np.float64)
            ok = np.empty(r.size, dtype=bool)
            ok[order] = np.sqrt(np.einsum("ij,ij->i", diff, diff)) <= radius
            out[start : start + _EXACT_PAIRS] = ok
        return out

    def _numpy_hits(self, raw: np.ndarray, radius: float) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, within)`` per reference block: the exact boolean (queries × block)."""
        q = self._frame(raw)
        q_sq = np.einsum("ij,ij->i", q, q)
        lo, hi = self._band(float(q_sq.max()) if q_sq.size else 0.0, radius)
        for start, ref, ref_sq in self._ref_blocks():
            block = sq_dist_block(ref, ref_sq, q, q_sq)
            hit = block <= lo
            unsure = block <= hi
            unsure ^= hit
            if unsure.any():  # few pairs: find them in the rows that hold some
                some = np.flatnonzero(unsure.any(axis=1))
                sub, cols = np.nonzero(unsure[some])
                rows = some[sub]
                ok = self._exact_within(raw, rows, cols + start, radius)
                hit[rows[ok], cols[ok]] = True
            yield start, hit

    def _radius_chunks(self, queries: np.ndarray, radius: float) -> Iterator[Any]:
        if self.backend == "faiss":
            yield from self._faiss_radius_chunks(queries, radius)
            return
        step = _row_step(min(self.n_ref, _CHUNK_ROWS))
        for start in range(0, queries.shape[0], step):
            raw = queries[start : start + step]
            rows_parts: list[np.ndarray] = []
            cols_parts: list[np.ndarray] = []
            for ref_start, hit in self._numpy_hits(raw, radius):
                rows, cols = np.nonzero(hit)
                rows_parts.append(rows)
                cols_parts.append(cols.astype(np.int64) + ref_start)
            rows = np.concatenate(rows_parts)
            cols = np.concatenate(cols_parts)
            if len(rows_parts) > 1:  # group by query, references ascending within a query
                order = np.argsort(rows, kind="stable")
                rows, cols = rows[order], cols[order]
            lims = np.zeros(raw.shape[0] + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=raw.shape[0]), out=lims[1:])
            yield lims, cols

    def _faiss_radius_chunks(self, queries: np.ndarray, radius: float) -> Iterator[Any]:
        """faiss range searches over query chunks sized so each returns about
        :data:`_RANGE_PAIRS` pairs: the first for the worst case (``n_ref`` per query),
        the next ones from the largest ball seen so far (growing at most 4× per chunk)."""
        n = queries.shape[0]
        safe = max(1, min(_CHUNK_ROWS, _RANGE_PAIRS // self.n_ref))
        step, widest, start = safe, 0, 0
        while start < n:
            raw = queries[start : start + step]
            q = np.ascontiguousarray(self._frame(raw))
            q_sq = np.einsum("ij,ij->i", q, q)
            lo, hi = self._band(float(q_sq.max()), radius)
            lims, d2, idx = self._faiss.range_search(q, float(hi))  # keeps d2 < hi
            lims = lims.astype(np.int64)
            idx = idx.astype(np.int64, copy=False)
            unsure = np.flatnonzero(d2 > lo)
            if unsure.size:
                rows = np.repeat(np.arange(raw.shape[0]), np.diff(lims))[unsure]
                keep = np.ones(idx.size, dtype=bool)
                keep[unsure] = self._exact_within(raw, rows, idx[unsure], radius)
                if not keep.all():
                    per_row = np.bincount(
                        np.repeat(np.arange(raw.shape[0]), np.diff(lims))[keep],
                        minlength=raw.shape[0],
                    )
                    lims = np.zeros(raw.shape[0] + 1, dtype=np.int64)
                    np.cumsum(per_row, out=lims[1:])
                    idx = idx[keep]
            yield lims, idx
            start += raw.shape[0]
            if raw.shape[0]:
                widest = max(widest, int(np.diff(lims).max()))
            target = _RANGE_PAIRS // max(widest, 1)
            step = max(safe, min(_CHUNK_ROWS, 4 * step, target))


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
