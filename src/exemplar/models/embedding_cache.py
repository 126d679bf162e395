"""An on-disk cache of text embeddings, keyed by content hash, in append-only shards.

Layout of one encoder's folder::

    shard-00000001.vectors.npy   (n, dim) float32, rows sorted by key
    shard-00000001.keys.npy      (n,) 32-byte SHA-256 keys, sorted
    shard-00000001.json          manifest: encoder, dim, n, CRC-32 of keys and vectors
    write.lock                   held by a writer while it adds or merges shards

A shard is written to temporary files that are renamed into place, the manifest last, so a
reader sees a shard completely or not at all: a crash mid-write leaves only temporary files,
which the next writer deletes. Shards are never modified. Readers need no lock: they map the
vector files into memory and find keys by binary search, so a lookup costs O(n log m) for n
keys among m cached texts, without loading the vectors into memory. Writers take
``write.lock``, skip keys another process stored meanwhile (the first writer wins, so each
text has one vector everywhere), and merge all shards into one when there are more than
``max_shards``. A shard that fails its checks (unreadable, wrong shape, CRC mismatch) is
renamed to ``*.corrupt`` with a logged warning, and its texts are encoded again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from filelock import FileLock

__all__ = ["KEY_DTYPE", "EmbeddingCache"]

logger = logging.getLogger(__name__)

#: dtype of a cache key: a SHA-256 digest.
KEY_DTYPE = np.dtype("S32")
_FORMAT = 1
_SHARD = re.compile(r"^shard-(\d{8})\.")
_PARTS = (".json", ".keys.npy", ".vectors.npy")  # the manifest first: it hides the shard
_MERGE_ROWS = 65_536
_NO_KEYS = np.empty(0, dtype=KEY_DTYPE)
_NO_ROWS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class _Shard:
    keys: np.ndarray  # (n,) KEY_DTYPE, sorted, unique
    vectors: np.ndarray  # (n, dim) float32, memory-mapped


@dataclass(frozen=True)
class _Index:
    """Every cached key's first 8 bytes, sorted, with the shard and row holding it."""

    names: tuple[str, ...]  # the shards it was built from, in order
    prefix: np.ndarray  # (m,) uint64, sorted
    shard: np.ndarray  # (m,) int32: position in ``names``
    row: np.ndarray  # (m,) int64


class EmbeddingCache:
    """Vectors of one encoder, stored under ``folder`` and looked up by 32-byte keys.

    Parameters
    ----------
    folder : path-like
        This encoder's folder (created on the first write).
    encoder_name : str
        Whose vectors these are; shards written for another encoder or ``dim`` are set aside.
    dim : int
        Vector length.
    max_shards : int, default=64
        More shards than this are merged into one by the next writer.
    lock_timeout : float, default=600.0
        Seconds a writer waits for another one; after that it skips writing.
    """

    def __init__(
        self,
        folder: Path | str,
        encoder_name: str,
        dim: int,
        max_shards: int = 64,
        lock_timeout: float = 600.0,
    ) -> None:
        self.folder = Path(folder)
        self.encoder_name = encoder_name
        self.dim = dim
        self.max_shards = max_shards
        self.lock_timeout = lock_timeout
        self._shards: dict[str, _Shard] = {}
        self._index: _Index | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"], state["_shards"], state["_index"]  # memory maps are reopened
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._shards = {}
        self._index = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return sum(s.keys.size for s in self._shards.values())

    @property
    def n_shards(self) -> int:
        """Number of shards currently on disk."""
        with self._lock:
            self._refresh()
            return len(self._shards)

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``(n, dim)`` float32 of ``keys`` (zeros where missing) and a found mask."""
        keys = np.asarray(keys, dtype=KEY_DTYPE)
        with self._lock:
            self._refresh()
            return self._lookup(keys)

    def put(self, keys: np.ndarray, vectors: np.ndarray) -> bool:
        """Store the vectors of keys not cached yet; False (logged) if the write failed."""
        keys = np.asarray(keys, dtype=KEY_DTYPE)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (keys.size, self.dim):
            raise ValueError(
                f"vectors of shape {vectors.shape} for {keys.size} keys of dim {self.dim}"
            )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.folder / "write.lock", timeout=self.lock_timeout)
            with self._lock, lock:
                self._refresh()
                keys, first = np.unique(keys, return_index=True)
                new = ~self._lookup(keys)[1]
                if new.any():
                    self._remove_leftovers()
                    self._write(keys[new], vectors[first[new]])
                    if len(self._shards) > self.max_shards:
                        self._merge()
            return True
        except OSError as exc:  # includes filelock.Timeout
            logger.warning("embedding cache %s not written (%s); continuing", self.folder, exc)
            return False

    # ----------------------------------------------------------------------- reading

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One binary search of all shards' keys, then a gather from each shard's map."""
        vectors = np.zeros((keys.size, self.dim), dtype=np.float32)
        found = np.zeros(keys.size, dtype=bool)
        index = self._current_index()
        if index.prefix.size == 0 or keys.size == 0:
            return vectors, found
        prefix = _prefix(keys)
        pos = np.minimum(np.searchsorted(index.prefix, prefix), index.prefix.size - 1)
        hits = np.flatnonzero(index.prefix[pos] == prefix)
        if hits.size == 0:
            return vectors, found
        hits = hits[np.argsort(index.shard[pos[hits]], kind="stable")]
        shard_of_hit = index.shard[pos[hits]]
        starts = np.flatnonzero(np.r_[True, shard_of_hit[1:] != shard_of_hit[:-1]])
        for part in np.split(hits, starts[1:]):
            shard = self._shards[index.names[index.shard[pos[part[0]]]]]
            rows = index.row[pos[part]]
            same = shard.keys[rows] == keys[part]  # the full key decides
            vectors[part[same]] = shard.vectors[rows[same]]
            found[part[same]] = True
        return vectors, found

    def _current_index(self) -> _Index:
        names = tuple(self._shards)
        if self._index is None or self._index.names != names:
            shards = [self._shards[n] for n in names]
            prefix = np.concatenate([_prefix(s.keys) for s in shards] or [_prefix(_NO_KEYS)])
            order = np.argsort(prefix, kind="stable")
            sizes = [s.keys.size for s in shards]
            shard = np.repeat(np.arange(len(shards), dtype=np.int32), sizes)
            row = np.concatenate([np.arange(n, dtype=np.int64) for n in sizes] or [_NO_ROWS])
            self._index = _Index(names, prefix[order], shard[order], row[order])
        return self._index

    def _refresh(self) -> None:
        """Open shards that appeared on disk; forget those that were merged away."""
        try:
            names = sorted(p.name[: -len(".json")] for p in self.folder.glob("shard-*.json"))
        except OSError as exc:
            logger.warning("cannot list embedding cache %s (%s)", self.folder, exc)
            names = []
        for gone in set(self._shards) - set(names):
            del self._shards[gone]
        for name in names:
            if name not in self._shards:
                shard = self._open(name)
                if shard is not None:
                    self._shards[name] = shard

    def _open(self, name: str) -> _Shard | None:
        base = self.folder / name
        try:
            manifest = json.loads(Path(f"{base}.json").read_text(encoding="utf-8"))
            keys = np.load(f"{base}.keys.npy", allow_pickle=False)
            vectors = np.load(f"{base}.vectors.npy", mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None  # merged away by another process meanwhile
        except (OSError, ValueError, EOFError) as exc:
            self._set_aside(name, f"unreadable: {exc}")
            return None
        problem = self._check(manifest, keys, vectors)
        if problem:
            self._set_aside(name, problem)
            return None
        return _Shard(keys, vectors)

    def _check(self, manifest: Any, keys: np.ndarray, vectors: np.ndarray) -> str:
        """Why a shard cannot be used, or "" if it can."""
        n = keys.shape[0] if keys.ndim == 1 else -1
        expected = {"format": _FORMAT, "encoder": self.encoder_name, "dim": self.dim, "n": n}
        if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
            return f"manifest {manifest} does not match {expected}"
        if keys.dtype != KEY_DTYPE or vectors.dtype != np.float32 or vectors.shape != (n, self.dim):
            return f"arrays {keys.dtype}{keys.shape} and {vectors.dtype}{vectors.shape}"
        if n < 1 or not np.all(keys[1:] > keys[:-1]):
            return "keys are not sorted and unique"
        if manifest.get("crc32") != _crc(keys, vectors):
            return "CRC-32 mismatch"
        return ""

    def _set_aside(self, name: str, problem: str) -> None:
        logger.warning(
            "embedding cache shard %s is corrupt (%s); renamed to *.corrupt, its texts will "
            "be encoded again",
            self.folder / name,
            problem,
        )
        for part in _PARTS:
            path = self.folder / f"{name}{part}"
            try:
                os.replace(path, f"{path}.corrupt")
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("cannot rename corrupt cache file %s (%s)", path, exc)

    # ----------------------------------------------------------------------- writing (locked)

    def _write(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Write a new shard of sorted unique ``keys`` (the caller holds the write lock)."""
        name = self._next_name()
        base = self.folder / name
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        _atomic_write(
            Path(f"{base}.vectors.npy"), lambda fh: np.save(fh, vectors, allow_pickle=False)
        )
        self._publish(name, keys, _crc(keys, vectors))

    def _publish(self, name: str, keys: np.ndarray, crc: int) -> None:
        """Write the keys, then the manifest that makes the shard visible, and open it."""
        base = self.folder / name
        _atomic_write(Path(f"{base}.keys.npy"), lambda fh: np.save(fh, keys, allow_pickle=False))
        manifest = {
            "format": _FORMAT,
            "encoder": self.encoder_name,
            "dim": self.dim,
            "n": int(keys.size),
            "crc32": crc,
        }
        _atomic_write(Path(f"{base}.json"), lambda fh: fh.write(json.dumps(manifest).encode()))
        vectors = np.load(f"{base}.vectors.npy", mmap_mode="r", allow_pickle=False)
        self._shards[name] = _Shard(keys, vectors)

    def _merge(self) -> None:
        """Merge every shard into one, copying vectors in bounded chunks, then drop the old."""
        names = list(self._shards)
        shards = [self._shards[n] for n in names]
        bounds = np.cumsum([0] + [s.keys.size for s in shards])
        all_keys = np.concatenate([s.keys for s in shards])
        order = np.argsort(all_keys, kind="stable")
        keep = np.ones(order.size, dtype=bool)
        keep[1:] = all_keys[order][1:] != all_keys[order][:-1]
        order = order[keep]
        keys = all_keys[order]
        name = self._next_name()
        path = self.folder / f"{name}.vectors.npy"

        def write(fh: IO[bytes]) -> None:
            header = {"descr": "<f4", "fortran_order": False, "shape": (order.size, self.dim)}
            np.lib.format.write_array_header_1_0(fh, header)
            for start in range(0, order.size, _MERGE_ROWS):
                rows = order[start : start + _MERGE_ROWS]
                which = np.searchsorted(bounds, rows, side="right") - 1
                chunk = np.empty((rows.size, self.dim), dtype=np.float32)
                for s in np.unique(which):
                    sel = which == s
                    chunk[sel] = shards[s].vectors[rows[sel] - bounds[s]]
                fh.write(chunk.tobytes())

        _atomic_write(path, write)
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        self._publish(name, keys, _crc(keys, vectors))
        for old in names:
            for part in _PARTS:
                Path(self.folder / f"{old}{part}").unlink(missing_ok=True)
            del self._shards[old]
        logger.info("embedding cache %s: merged %d shards into %s", self.folder, len(names), name)

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for p in self.folder.iterdir() if (m := _SHARD.match(p.name))]
        return f"shard-{max(numbers, default=0) + 1:08d}"

    def _remove_leftovers(self) -> None:
        """Delete what crashed writers left: temporary files and shards without a manifest."""
        for path in self.folder.iterdir():
            match = _SHARD.match(path.name)
            orphan = (
                match is not None
                and not path.name.endswith(".corrupt")
                and not (self.folder / f"shard-{match.group(1)}.json").exists()
            )
            if orphan or path.name.startswith(".tmp-"):
                logger.info("removing leftover cache file %s", path)
                path.unlink(missing_ok=True)


def _prefix(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as an integer: sorted keys have sorted prefixes."""
    if keys.size == 0:
        return np.empty(0, dtype=np.uint64)
    return np.frombuffer(keys.tobytes(), dtype=">u8").reshape(-1, 4)[:, 0].astype(np.uint64)


def _crc(keys: np.ndarray, vectors: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(vectors).data, zlib.crc32(keys.tobytes()))


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same folder, fsync it, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
