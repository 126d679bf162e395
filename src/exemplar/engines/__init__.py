"""Engines: run the Scorer beyond this process (DESIGN.md §3, adapters layer).

:func:`score_pool_ray` scores a pool on a Ray cluster with Ray Data (``exemplar[ray]``)
and gives the same arrays as :func:`exemplar.loop.score_pool`; :mod:`.shards` reads and
writes the ``.npy`` / Parquet shards it leaves. Importing this package does not import Ray.
See docs/scale.md, "Scoring on Ray".
"""

from __future__ import annotations

from exemplar.engines.ray_scoring import (
    SHARD_KINDS,
    RayRun,
    last_run,
    ray_session,
    score_pool_ray,
)
from exemplar.engines.shards import SHARD_FORMATS, read_shard, write_shard

__all__ = [
    "SHARD_FORMATS",
    "SHARD_KINDS",
    "RayRun",
    "last_run",
    "ray_session",
    "read_shard",
    "score_pool_ray",
    "write_shard",
]
