"""Stand-in text encoders for the embedding-cache and text-model tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from exemplar.models.text import TextEncoder


class Fake:
    """A cheap deterministic encoder (vectors seeded by the text), optionally jittered.

    With ``jitter`` every call adds fresh noise, like two processes whose float results
    differ in the last bits, so a test can tell which writer's vector was kept.
    """

    def __init__(self, name: str = "fake", dim: int = 8, jitter: float = 0.0) -> None:
        self.name, self.dim, self.jitter = name, dim, jitter

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).normal(size=self.dim)
        noise = np.random.default_rng().normal(size=out.shape).astype(np.float32)
        return out + np.float32(self.jitter) * noise


class Counting:
    """Wraps an encoder and records every batch of texts it is asked to encode."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts)
