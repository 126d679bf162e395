"""The per-content-hash embedding cache: reuse, persistence, crash leftovers, corruption."""

from __future__ import annotations

import json
import logging
import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from text_helpers import Counting, Fake

from exemplar.models.embedding_cache import KEY_DTYPE, EmbeddingCache
from exemplar.models.text import CachedEncoder, content_key, normalize_text

TEXTS = [
    "What is the capital of France ?",
    "Who wrote Hamlet ?",
    "How many legs does a spider have ?",
    "When did the Berlin Wall fall ?",
]
LOGGER = "exemplar.models.embedding_cache"


def _shards(folder: Path, suffix: str = ".json") -> list[Path]:
    return sorted(folder.glob(f"shard-*{suffix}"))


def _keys(texts: list[str], name: str = "fake") -> np.ndarray:
    return np.array([content_key(name, t) for t in texts], dtype=KEY_DTYPE)


def test_cached_texts_are_not_encoded_again(tmp_path: Path) -> None:
    counting = Counting(Fake())
    cached = CachedEncoder(counting, cache_dir=tmp_path)
    first = cached.encode(TEXTS)
    assert counting.calls == [TEXTS]
    assert np.array_equal(first, Fake().encode(TEXTS))

    assert np.array_equal(cached.encode(TEXTS[::-1]), first[::-1])
    assert counting.calls == [TEXTS]

    mixed = cached.encode([TEXTS[2], "Where is the Taj Mahal ?"])
    assert counting.calls[1:] == [["Where is the Taj Mahal ?"]]
    assert np.array_equal(mixed[0], first[2])
    assert len(cached.cache) == 5 and cached.cache.n_shards == 2
    assert cached.encode([]).shape == (0, 8)


def test_duplicates_and_whitespace_variants_are_encoded_once(tmp_path: Path) -> None:
    counting = Counting(Fake())
    vectors = CachedEncoder(counting, cache_dir=tmp_path).encode(
        ["a  b ", "a b", "c", "a b", "\u00e9", "e\u0301"]
    )
    assert counting.calls == [["a b", "c", "\u00e9"]]
    assert np.array_equal(vectors[0], vectors[1]) and np.array_equal(vectors[0], vectors[3])
    assert np.array_equal(vectors[4], vectors[5])  # NFC: composed == decomposed
    assert not np.array_equal(vectors[0], vectors[2])
    assert normalize_text("  x \t y\n") == "x y"


def test_cache_survives_reopening_and_pickling(tmp_path: Path) -> None:
    CachedEncoder(Fake(), cache_dir=tmp_path).encode(TEXTS)
    counting = Counting(Fake())
    reopened = CachedEncoder(counting, cache_dir=tmp_path)
    assert np.array_equal(reopened.encode(TEXTS), Fake().encode(TEXTS))
    assert counting.calls == []
    clone = pickle.loads(pickle.dumps(reopened))
    assert np.array_equal(clone.encode(TEXTS), Fake().encode(TEXTS))
    assert clone.encoder.calls == []


def test_each_encoder_has_its_own_cache(tmp_path: Path) -> None:
    CachedEncoder(Fake(), cache_dir=tmp_path).encode(TEXTS)
    other = Counting(Fake(name="other/v2"))
    CachedEncoder(other, cache_dir=tmp_path).encode(TEXTS)
    assert other.calls == [TEXTS]  # another encoder's vectors are never reused
    assert content_key("fake", "x") != content_key("other/v2", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake", "other_v2"]


def test_default_folder_follows_exemplar_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXEMPLAR_CACHE", str(tmp_path))
    CachedEncoder(Fake()).encode(TEXTS)
    assert len(_shards(tmp_path / "embeddings" / "fake")) == 1


def test_misses_are_stored_every_write_every_texts(tmp_path: Path) -> None:
    """An interrupted run keeps every completed block of encoded texts."""
    texts = [f"text {i}" for i in range(10)]

    class FailsOnThirdCall(Counting):
        def encode(self, batch: list[str]) -> np.ndarray:  # type: ignore[override]
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().encode(batch)

    with pytest.raises(KeyboardInterrupt):
        CachedEncoder(FailsOnThirdCall(Fake()), tmp_path, write_every=4).encode(texts)
    counting = Counting(Fake())
    CachedEncoder(counting, tmp_path).encode(texts)
    assert counting.calls == [texts[8:]]


def test_concurrent_writers_agree_on_one_vector_per_text(tmp_path: Path) -> None:
    texts = [f"question {i} ?" for i in range(300)]
    barrier = threading.Barrier(4)
    results: list[np.ndarray] = []

    def work() -> None:
        encoder = CachedEncoder(Fake(jitter=0.1), cache_dir=tmp_path, write_every=32)
        barrier.wait()
        results.append(encoder.encode(texts))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results[1:]:
        assert np.array_equal(result, results[0])
    stored = CachedEncoder(Fake(), cache_dir=tmp_path)
    assert len(stored.cache) == 300  # no text stored twice
    assert np.array_equal(stored.encode(texts), results[0])


def test_shards_are_merged_beyond_max_shards(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "fake", 8, max_shards=3)
    texts = [f"t{i}" for i in range(50)]
    for start in range(0, 50, 10):
        block = texts[start : start + 10]
        assert cache.put(_keys(block), Fake().encode(block))
    assert 1 <= len(_shards(tmp_path)) <= 3
    assert len(_shards(tmp_path, ".vectors.npy")) == len(_shards(tmp_path))
    fresh = EmbeddingCache(tmp_path, "fake", 8)
    vectors, found = fresh.get(_keys(texts))
    assert found.all() and np.array_equal(vectors, Fake().encode(texts))
    assert len(fresh) == 50


def test_crash_leftovers_are_ignored_then_removed(tmp_path: Path) -> None:
    CachedEncoder(Fake(), cache_dir=tmp_path).encode(TEXTS[:2])
    folder = tmp_path / "fake"
    (folder / ".tmp-half-written").write_bytes(b"\x93NUMPY partial")
    (folder / "shard-00000007.vectors.npy").write_bytes(b"no manifest yet")
    counting = Counting(Fake())
    vectors = CachedEncoder(counting, cache_dir=tmp_path).encode(TEXTS)
    assert counting.calls == [TEXTS[2:]]
    assert np.array_equal(vectors, Fake().encode(TEXTS))
    assert not (folder / ".tmp-half-written").exists()
    assert not (folder / "shard-00000007.vectors.npy").exists()
    assert [p.name for p in _shards(folder)] == ["shard-00000001.json", "shard-00000002.json"]


def _corrupt_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a bit flip in the last vector: the header still parses
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(b"garbage" * 50)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _bad_manifest(path: Path) -> None:
    path.with_name(path.name.replace(".vectors.npy", ".json")).write_text("{not json")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_bytes, "CRC-32 mismatch"),
        (_garbage, "unreadable"),
        (_truncate, "unreadable"),
        (_bad_manifest, "unreadable"),
    ],
)
def test_corrupt_shard_is_set_aside_and_re_encoded(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    CachedEncoder(Fake(), cache_dir=tmp_path).encode(TEXTS[:3])
    CachedEncoder(Fake(), cache_dir=tmp_path).encode(TEXTS[3:])
    folder = tmp_path / "fake"
    damage(folder / "shard-00000001.vectors.npy")

    counting = Counting(Fake())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        vectors = CachedEncoder(counting, cache_dir=tmp_path).encode(TEXTS)
    assert counting.calls == [TEXTS[:3]]  # only the damaged shard's texts
    assert np.array_equal(vectors, Fake().encode(TEXTS))
    assert "is corrupt" in caplog.text and reason in caplog.text
    assert len(list(folder.glob("shard-00000001.*.corrupt"))) == 3

    CachedEncoder(counting, cache_dir=tmp_path).encode(TEXTS)
    assert len(counting.calls) == 1  # the rebuilt shard serves them


def test_shard_of_another_dimension_is_set_aside(tmp_path: Path) -> None:
    CachedEncoder(Fake(dim=8), cache_dir=tmp_path).encode(TEXTS)
    counting = Counting(Fake(dim=4))
    vectors = CachedEncoder(counting, cache_dir=tmp_path).encode(TEXTS)
    assert vectors.shape == (4, 4) and counting.calls == [TEXTS]
    manifest = json.loads((tmp_path / "fake" / "shard-00000002.json").read_text())
    assert manifest["dim"] == 4 and manifest["n"] == 4


def test_unwritable_cache_still_encodes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    counting = Counting(Fake())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        vectors = CachedEncoder(counting, cache_dir=blocker).encode(TEXTS)
    assert np.array_equal(vectors, Fake().encode(TEXTS))
    assert "not written" in caplog.text


def test_put_rejects_mismatched_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vectors of shape"):
        EmbeddingCache(tmp_path, "fake", 8).put(_keys(TEXTS), np.zeros((3, 8)))
