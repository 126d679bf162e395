"""Datasets: offline built-ins and a user's own ``.csv``/``.npy``/``.npz`` files."""

from __future__ import annotations

from exemplar.data.cache import default_cache_dir
from exemplar.data.core import Dataset, DatasetInfo
from exemplar.data.datasets import builtin_datasets, load_dataset
from exemplar.data.embeddings import create_embeddings, open_embeddings

__all__ = [
    "Dataset",
    "DatasetInfo",
    "builtin_datasets",
    "create_embeddings",
    "default_cache_dir",
    "load_dataset",
    "open_embeddings",
]
