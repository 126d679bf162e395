"""Embedding cache: cost of storing and looking up sentence embeddings at 10^4..10^6 texts.

    python -m bench.embedding_cache [--sizes 10000 100000 1000000] [--minilm 500]
        [--out bench/results/embedding_cache.json]

Protocol (issue #5, text). For each size N, in a fresh process and a fresh cache folder:

* ``cold``: ``CachedEncoder.encode`` of N distinct synthetic texts (``"synthetic question
  number i about topic k ?"``), 4,096 at a time as ``EmbeddingAdapter`` does, whose vectors
  come from a stand-in encoder (random 384-d float32, no model), so the time is the
  cache's own: normalizing, hashing, looking up, writing shards, merging them;
* ``warm``: the same calls again, now served entirely from the cache (what a simulation
  pays per round to embed its pool), then ``reopen_seconds``: a fresh
  ``CachedEncoder`` on the same folder embedding 4,096 texts (opening every shard and checking
  its CRC-32, as a new process does);
* ``file_mib``: size of the cache folder; ``shards``: shard files left after merging;
  ``peak_rss_mib``: the process's peak resident memory, which includes the ``cold`` result
  (``vectors_mib``) the warm pass is checked against and the shard pages it mapped.

``--minilm K`` also times the real all-MiniLM-L6-v2 on the first K TREC questions: its cold
start (model load) and sentences per second, which is what a cache miss costs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
DIM = 384
CHUNK = 4096  # EmbeddingAdapter's default chunk_size
MiB = 1024**2


class RandomEncoder:
    """A stand-in for MiniLM: random unit vectors, no model (isolates the cache's cost)."""

    name = "bench-random"
    dim = DIM

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self.rng.standard_normal((len(texts), DIM), dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def embed(encoder: Any, texts: list[str]) -> np.ndarray:
    """All vectors, encoded ``CHUNK`` texts per call."""
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for start in range(0, len(texts), CHUNK):
        out[start : start + CHUNK] = encoder.encode(texts[start : start + CHUNK])
    return out


def run_size(n: int) -> dict[str, Any]:
    """Cold then warm encode of ``n`` synthetic texts through the cache (in this process)."""
    from exemplar.models.text import CachedEncoder

    texts = [f"synthetic question number {i} about topic {i % 97} ?" for i in range(n)]
    with tempfile.TemporaryDirectory() as folder:
        encoder = CachedEncoder(RandomEncoder(), cache_dir=folder)
        t0 = time.perf_counter()
        cold = embed(encoder, texts)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for start in range(0, n, CHUNK):
            warm = encoder.encode(texts[start : start + CHUNK])
            assert np.array_equal(warm, cold[start : start + CHUNK]), "warm vectors differ"
        warm_s = time.perf_counter() - t0
        del cold, warm
        t0 = time.perf_counter()
        embed(CachedEncoder(RandomEncoder(), cache_dir=folder), texts[:CHUNK])
        reopen_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        shards = len(list(Path(folder).rglob("shard-*.json")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "texts": n,
        "cold_seconds": round(cold_s, 3),
        "cold_texts_per_s": round(n / cold_s),
        "warm_seconds": round(warm_s, 3),
        "warm_texts_per_s": round(n / warm_s),
        "reopen_seconds": round(reopen_s, 3),
        "shards": shards,
        "file_mib": round(size / MiB, 1),
        "peak_rss_mib": round(peak, 1),
        "vectors_mib": round(n * DIM * 4 / MiB, 1),
    }


def run_minilm(k: int) -> dict[str, Any]:
    """Cold start and throughput of the real MiniLM on ``k`` TREC questions (no cache)."""
    from exemplar.data import load_dataset
    from exemplar.models.text import SentenceEncoder

    texts = load_dataset("trec").X[:k].tolist()
    encoder = SentenceEncoder()
    t0 = time.perf_counter()
    encoder.encode(texts[:1])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    encoder.encode(texts)
    encode_s = time.perf_counter() - t0
    return {
        "texts": k,
        "cold_start_seconds": round(load_s, 2),
        "encode_seconds": round(encode_s, 2),
        "sentences_per_s": round(k / encode_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--minilm", type=int, default=500, help="TREC questions (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS / "embedding_cache.json")
    parser.add_argument("--_one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_minilm_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one is not None:
        print(json.dumps(run_size(args._one)))
        return
    if args._minilm_only:
        print(json.dumps(run_minilm(args.minilm)))
        return

    def child(*extra: str) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "bench.embedding_cache", *extra]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(extra)} failed with exit {done.returncode}:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    cases = []
    for n in args.sizes:
        case = child("--_one", str(n))
        print(json.dumps(case), flush=True)
        cases.append(case)
    minilm = child("--minilm", str(args.minilm), "--_minilm_only") if args.minilm else None
    if minilm:
        print(json.dumps(minilm), flush=True)
    result = {
        "benchmark": "embedding_cache",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
        },
        "params": {
            "dim": DIM,
            "chunk": CHUNK,
            "write_every": 2048,
            "max_shards": 64,
            "data": "synthetic texts, random vectors",
        },
        "cases": cases,
        "minilm": minilm,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
