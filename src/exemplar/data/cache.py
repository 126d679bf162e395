"""A small, crash-safe cache of numpy arrays on disk.

Files are written atomically (a temporary file in the same folder, then
:func:`os.replace`), so a reader sees either the old file or the new one, never a
half-written one. Each file carries a key (format version plus whatever the caller
says determines the content) and a SHA-256 digest of its arrays. A file whose key or
digest does not match, or that cannot be read at all, is treated as absent, so the
caller rebuilds it. Cache problems are logged and never raised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["CACHE_ENV_VAR", "default_cache_dir", "load_arrays", "save_arrays"]

logger = logging.getLogger(__name__)

#: Environment variable that overrides the default cache folder.
CACHE_ENV_VAR = "EXEMPLAR_CACHE"

# Bump when the on-disk layout written by save_arrays changes.
_FORMAT_VERSION = 1
_KEY = "__exemplar_cache_key__"
_DIGEST = "__exemplar_cache_sha256__"


def default_cache_dir() -> Path:
    """Return the cache folder: ``$EXEMPLAR_CACHE`` if set, else ``~/.cache/exemplar``.

    Returns
    -------
    pathlib.Path
        The folder (it may not exist yet).
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "exemplar"


def _full_key(key: str) -> str:
    return f"exemplar-cache-format={_FORMAT_VERSION};{key}"


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.data)
    return h.hexdigest()


def load_arrays(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """Read arrays written by :func:`save_arrays`, or None if absent, stale or corrupt.

    Parameters
    ----------
    path : pathlib.Path
        The ``.npz`` cache file.
    key : str
        What the content must have been built from; a file written with another key
        is stale.

    Returns
    -------
    dict of str to ndarray, or None
        The arrays, or None when the caller must rebuild them.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable cache file %s (%s); rebuilding it", path, exc)
        return None
    stored_key = arrays.pop(_KEY, None)
    stored_digest = arrays.pop(_DIGEST, None)
    if stored_key is None or stored_key.shape != () or str(stored_key) != _full_key(key):
        logger.info("cache file %s is stale (different key); rebuilding it", path)
        return None
    if stored_digest is None or str(stored_digest) != _digest(arrays):
        logger.warning("ignoring corrupt cache file %s (digest mismatch); rebuilding it", path)
        return None
    return arrays


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray], key: str) -> bool:
    """Write arrays to ``path`` atomically, tagged with ``key`` and a digest.

    Parameters
    ----------
    path : pathlib.Path
        The ``.npz`` cache file; its folder is created if needed.
    arrays : mapping of str to ndarray
        Numeric or fixed-width string arrays (no object arrays).
    key : str
        What the content was built from (see :func:`load_arrays`).

    Returns
    -------
    bool
        True if the file was written; False if it could not be (the reason is logged).
    """
    payload = dict(arrays)
    payload[_KEY] = np.array(_full_key(key))
    payload[_DIGEST] = np.array(_digest(arrays))
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as tmp:
            tmp_name = tmp.name
            np.savez(tmp, **payload)  # type: ignore[arg-type]
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        return True
    except OSError as exc:
        logger.warning("could not write cache file %s (%s); continuing without it", path, exc)
        return False
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
