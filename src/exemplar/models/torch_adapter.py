"""PyTorch model adapter: MC dropout or deep-ensemble samples, and layer embeddings.

The module is named ``torch_adapter`` so it never shadows the ``torch`` package.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from exemplar.errors import ConfigError, ModelError, SingleClassError
from exemplar.models.base import DEFAULT_CHUNK_SIZE
from exemplar.predictions import Predictions

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the torch extra
    raise ModelError("PyTorch is not installed: pip install 'exemplar[torch]'") from exc

from exemplar.models.nets import MLP, SmallCNN

__all__ = [
    "TORCH_MODELS",
    "FitHistory",
    "NetSpec",
    "TorchAdapter",
    "TrainingRecipe",
    "checkpoint_classes",
    "make_torch_model",
    "resolve_device",
]

Build = Callable[[int, int], nn.Module]
Uncertainty = Literal["mc_dropout", "ensemble"]
Scaling = Literal["feature", "global", "none"]

#: Format tag written into every checkpoint; a file without it is not ours.
CHECKPOINT_FORMAT = "exemplar.torch/1"

_DROPOUT = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_LOAD_ERRORS = (
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
)


@dataclass(frozen=True)
class TrainingRecipe:
    """How to train a network: optimizer, schedule, early stopping and seed.

    Parameters
    ----------
    optimizer : {"adam", "sgd"}, default="adam"
    lr : float, default=1e-3
    weight_decay : float, default=0.0
    momentum : float, default=0.9
        SGD momentum (unused by Adam).
    epochs : int, default=50
        Maximum passes over the training rows.
    batch_size : int, default=32
    validation_fraction : float, default=0.1
        Share of the labeled rows held out for early stopping (stratified; every class
        keeps at least one training row). 0 disables early stopping.
    patience : int, default=5
        Epochs without a lower validation loss before training stops; the weights of the
        best epoch are restored (Prechelt 1998).
    min_validation_size : int, default=50
        Early stopping is skipped when fewer rows than this would be held out, so with the
        default fraction a network trains the full ``epochs`` on every label until 500
        labels. A hold-out of a few labels stops training early on noise and wastes labels
        that the network needs: on MNIST-5k, BALD needed 250 labels to reach 90% with early
        stopping from 10 held-out rows and 156 without it, and random 248 against 206
        (bench/deep_label_efficiency.py, 5 paired seeds; docs/benchmarks.md).
    seed : int, default=0
        Seeds weight init, data order, dropout masks and MC-dropout inference.
    warm_start : bool, default=False
        False retrains from a fresh initialization on every ``fit`` (small-text's
        contract); True fine-tunes from the current weights (layers whose shape changed,
        such as the head when a class appears, start fresh).

    References
    ----------
    Prechelt, L. (1998). Early stopping - but when? Neural Networks: Tricks of the Trade.
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    epochs: int = 50
    batch_size: int = 32
    validation_fraction: float = 0.1
    patience: int = 5
    min_validation_size: int = 50
    seed: int = 0
    warm_start: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; use 'adam' or 'sgd'")
        checks = {
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "momentum": 0 <= self.momentum < 1,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "validation_fraction": 0 <= self.validation_fraction < 1,
            "patience": self.patience >= 1,
            "min_validation_size": self.min_validation_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(f"invalid training recipe: {values}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingRecipe:
        """Rebuild a recipe from :func:`dataclasses.asdict` output (unknown keys rejected)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training recipe field(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class FitHistory:
    """Per-epoch mean losses of one trained network, and the epoch whose weights were kept."""

    train_loss: list[float]
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None


@dataclass(frozen=True)
class NetSpec:
    """A built-in network by name and keyword parameters; callable as a ``build`` function.

    Checkpoints of adapters built from a spec record it, so they load without ``build``.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in _NETS:
            raise ConfigError(
                f"unknown torch model {self.name!r}; choose one of: {', '.join(_NETS)}"
            )

    def __call__(self, n_features: int, n_classes: int) -> nn.Module:
        """Build a freshly initialized network."""
        return _NETS[self.name](n_features, n_classes, **self.params)


_NETS: dict[str, type[nn.Module]] = {"cnn": SmallCNN, "mlp": MLP}

#: Built-in networks for :func:`make_torch_model`, with a one-line description each.
TORCH_MODELS: dict[str, str] = {
    "cnn": "small CNN for square one-channel images (Gal et al. 2017), MC dropout",
    "mlp": "multilayer perceptron (256-128, dropout 0.5), MC dropout",
}


class TorchAdapter:
    """Train a PyTorch classifier and predict probabilities, samples and embeddings.

    Parameters
    ----------
    build : callable ``(n_features, n_classes) -> nn.Module``
        Returns a freshly initialized network mapping float rows to logits.
    recipe : TrainingRecipe, optional
        How to train (default: ``TrainingRecipe()``).
    uncertainty : {"mc_dropout", "ensemble"}, default="mc_dropout"
        Source of stochastic samples: ``n_samples`` forward passes with only the dropout
        modules active (Gal & Ghahramani 2016), or ``n_members`` independently seeded
        networks (Lakshminarayanan et al. 2017; Beluch et al. 2018).
    n_samples : int, default=20
        MC-dropout passes (``mc_dropout`` only).
    n_members : int, default=5
        Ensemble size (``ensemble`` only).
    embedding_layer : str, optional
        Name of the module (as in ``named_modules()``) whose output is the embedding.
        Default: the module named ``penultimate``, else the input of the last
        ``nn.Linear``.
    scaling : {"feature", "global", "none"}, default="feature"
        Input standardization fitted on the labeled rows and saved with the weights:
        per-feature mean/std, one mean/std over all values (images), or none.
    device : str, default="cpu"
        "cpu", "cuda", "cuda:N", or "auto" (CUDA when available).
    chunk_size : int, default=65536
        Rows converted to one float32 tensor at a time when predicting.
    predict_batch_size : int, default=256
        Rows per forward pass when predicting. On a CPU, 256 rows scored the built-in CNN
        with 20 MC passes about 20% faster than 1,024 (the trunk's activations stay in
        cache, see docs/benchmarks.md); on a GPU larger batches may pay.

    Notes
    -----
    ``proba`` is the eval-mode prediction (for an ensemble, the mean of its members).
    Training and MC-dropout inference are seeded from ``recipe.seed``, so on CPU the same
    seed gives the same weights and samples. Dropout written as ``F.dropout`` inside
    ``forward`` is not switched by MC inference; use ``nn.Dropout`` modules. A network
    may define ``forward_trunk(x)`` (no dropout) and ``forward_top(h)`` with
    ``forward(x) == forward_top(forward_trunk(x))``; MC dropout then computes the trunk
    once per batch instead of once per pass (the built-in networks do). On the CPU,
    ``nn.Dropout`` modules draw their MC masks from 8, 16 or 32 random bits per unit (the
    fewest that give the rate exactly: 8 for p = 0.25 or 0.5), several times cheaper than
    PyTorch's CPU ``bernoulli_``; each pass still drops every unit independently with
    probability ``p`` and scales the rest by ``1 / (1 - p)``. Other dropout modules, and
    all of them on a GPU, run PyTorch's own dropout in train mode.

    Attributes
    ----------
    classes_ : ndarray of shape (c,)
        Sorted class labels (any dtype); column ``j`` of ``proba`` is ``classes_[j]``.
    nets_ : list of nn.Module
        The trained networks (one, or ``n_members``), in eval mode.
    history_ : list of FitHistory
        Losses per epoch of each network in the last ``fit``.
    warm_started_ : bool
        Whether the last ``fit`` started from all of the previous weights.

    References
    ----------
    Gal, Y., & Ghahramani, Z. (2016). Dropout as a Bayesian approximation. ICML.
    Lakshminarayanan, B., Pritzel, A., & Blundell, C. (2017). Simple and scalable
    predictive uncertainty estimation using deep ensembles. NeurIPS.
    Beluch, W. H., Genewein, T., Nürnberger, A., & Köhler, J. M. (2018). The power of
    ensembles for active learning in image classification. CVPR.
    """

    classes_: np.ndarray
    nets_: list[nn.Module]
    history_: list[FitHistory]
    warm_started_: bool
    n_features_in_: int
    scale_mean_: torch.Tensor
    scale_std_: torch.Tensor
    device_: torch.device

    def __init__(
        self,
        build: Build,
        recipe: TrainingRecipe | None = None,
        *,
        uncertainty: Uncertainty = "mc_dropout",
        n_samples: int = 20,
        n_members: int = 5,
        embedding_layer: str | None = None,
        scaling: Scaling = "feature",
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        predict_batch_size: int = 256,
    ) -> None:
        self.build = build
        self.recipe = recipe
        self.uncertainty = uncertainty
        self.n_samples = n_samples
        self.n_members = n_members
        self.embedding_layer = embedding_layer
        self.scaling = scaling
        self.device = device
        self.chunk_size = chunk_size
        self.predict_batch_size = predict_batch_size

    # ----------------------------------------------------------------------------- fit

    def fit(self, X: np.ndarray, y: np.ndarray) -> TorchAdapter:
        """Train on ``(X, y)``: from scratch, or from the current weights with warm_start."""
        self._check_params()
        recipe = self._recipe()
        device = resolve_device(self.device)
        X = np.asarray(X)
        y = np.asarray(y)
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ModelError(
                f"fit needs X of shape (n, d) and y of shape (n,), got {X.shape} and {y.shape}"
            )
        try:
            classes, codes = np.unique(y, return_inverse=True)
        except TypeError as exc:
            raise ModelError(f"labels cannot be sorted (mixed types?): {exc}") from exc
        if classes.size < 2:
            found = "no labels" if classes.size == 0 else f"only class {classes[0].item()!r}"
            raise SingleClassError(
                f"cannot train a classifier on {found}: the labeled set needs at least two classes"
            )
        n_features = X.shape[1]
        warm = recipe.warm_start and self._is_fitted() and self.n_features_in_ == n_features
        if warm:
            mean, std = self.scale_mean_, self.scale_std_
        else:
            mean, std = _fit_scaling(X, self.scaling)
        Xt = _scale(X, mean, std, device)
        yt = torch.as_tensor(codes.astype(np.int64), device=device)
        previous: list[nn.Module] = self.nets_ if warm else []
        nets: list[nn.Module] = []
        histories: list[FitHistory] = []
        transferred = True
        for member in range(self._member_count()):
            seed = _member_seed(recipe.seed, member)
            with _seeded(seed, device):
                net = self.build(n_features, classes.size)
                if not isinstance(net, nn.Module):
                    raise ModelError(f"build() returned {type(net).__name__}, not an nn.Module")
                if member < len(previous):
                    transferred &= _transfer(previous[member], net)
                else:
                    transferred = False
                net = net.to(device)
                if self.embedding_layer is not None:
                    _embedding_module(net, self.embedding_layer)
                histories.append(_train(net, Xt, yt, codes, recipe, seed, device))
            nets.append(net.eval())
        self.nets_ = nets
        self.history_ = histories
        self.warm_started_ = warm and transferred
        self.scale_mean_, self.scale_std_ = mean, std
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.device_ = device
        return self

    # ------------------------------------------------------------------------- predict

    def predict(
        self, X: np.ndarray, *, samples: bool = False, embeddings: bool = False
    ) -> Predictions:
        """Probabilities, and optionally samples ``(t, n, c)`` and embeddings ``(n, d)``.

        Rows are converted ``chunk_size`` at a time and pushed through the networks in
        batches of ``predict_batch_size`` under ``torch.inference_mode``; the outputs are
        preallocated, so memory beyond them is bounded by the chunk size.
        """
        nets = self._fitted()
        X = self._check_X(X)
        n, c = X.shape[0], self.classes_.size
        mc = samples and self.uncertainty == "mc_dropout"
        if mc and not any(isinstance(m, _DROPOUT) for m in nets[0].modules()):
            raise ModelError(
                "the network has no nn.Dropout modules, so MC-dropout samples would all be "
                "equal; add dropout or use uncertainty='ensemble'"
            )
        proba = np.empty((n, c), dtype=np.float32)
        stack = None
        if samples:
            t = self.n_samples if mc else len(nets)
            stack = np.empty((t, n, c), dtype=np.float32)
        emb = None
        captured: dict[str, torch.Tensor] = {}
        handle = None
        if embeddings:
            module, use_input = _embedding_module(nets[0], self.embedding_layer)
            handle = _capture(module, use_input, captured)
            emb = np.empty((n, self._embedding_dim(nets[0], captured)), dtype=np.float32)
        trunk, top = _forward_parts(nets[0])
        seed = _predict_seed(self._recipe().seed)
        masks = _MCDropout(nets[0], seed, self.device_) if mc else None
        try:
            with torch.inference_mode(), _seeded(seed, self.device_):
                for start, xb in self._batches(X):
                    rows = slice(start, start + xb.shape[0])
                    h = trunk(xb)
                    member_proba = [F.softmax(top(h), dim=1)]
                    member_proba += [F.softmax(net(xb), dim=1) for net in nets[1:]]
                    if emb is not None:
                        emb[rows] = _numpy(captured["out"].reshape(xb.shape[0], -1))
                    proba[rows] = _numpy(torch.stack(member_proba).mean(dim=0))
                    if stack is not None and masks is None:
                        stack[:, rows] = _numpy(torch.stack(member_proba))
                    elif stack is not None and masks is not None:
                        with masks.active():
                            for i in range(stack.shape[0]):
                                stack[i, rows] = _numpy(F.softmax(top(h), dim=1))
        finally:
            if handle is not None:
                handle.remove()
            for net in nets:
                net.eval()
        return Predictions(proba=proba, samples=stack, embeddings=emb, classes=self.classes_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Eval-mode class probabilities ``(n, c)`` as float32."""
        proba = self.predict(X).proba
        assert proba is not None
        return proba

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Most likely class label of each row."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # -------------------------------------------------------------------- save / load

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write weights, scaling and metadata to one ``torch.save`` file (atomically)."""
        nets = self._fitted()
        meta = {
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "n_features": self.n_features_in_,
            "recipe": dataclasses.asdict(self._recipe()),
            "uncertainty": self.uncertainty,
            "n_samples": self.n_samples,
            "n_members": self.n_members,
            "embedding_layer": self.embedding_layer,
            "scaling": self.scaling,
            "net": dataclasses.asdict(self.build) if isinstance(self.build, NetSpec) else None,
        }
        try:
            meta_json = json.dumps(meta)
        except TypeError as exc:
            raise ModelError(f"cannot save this model's metadata as JSON: {exc}") from exc
        payload = {
            "format": CHECKPOINT_FORMAT,
            "meta": meta_json,
            "members": [
                {k: v.detach().cpu().clone() for k, v in net.state_dict().items()} for net in nets
            ],
            "scale_mean": self.scale_mean_.cpu(),
            "scale_std": self.scale_std_.cpu(),
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        build: Build | None = None,
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        predict_batch_size: int = 256,
    ) -> TorchAdapter:
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)`` only).

        ``build`` must make the same network as when saved; it may be omitted for models
        made by :func:`make_torch_model`, whose checkpoint records its network.
        """
        path = Path(path)
        payload = _read_checkpoint(path)
        try:
            meta = _checkpoint_meta(payload)
            states = list(payload["members"])
            n_features = int(meta["n_features"])
            scale_mean, scale_std = payload["scale_mean"], payload["scale_std"]
            for scale in (scale_mean, scale_std):
                if not isinstance(scale, torch.Tensor) or scale.shape != (n_features,):
                    raise ValueError("scaling tensors do not match the feature count")
            classes = _meta_classes(meta)
            recipe = TrainingRecipe.from_dict(meta["recipe"])
            if build is None and meta["net"] is not None:
                build = NetSpec(**meta["net"])
            options = {
                k: meta[k]
                for k in ("uncertainty", "n_samples", "n_members", "embedding_layer", "scaling")
            }
        except (LookupError, TypeError, ValueError, ConfigError) as exc:
            raise ModelError(f"{path} is not an exemplar torch checkpoint ({exc})") from exc
        if build is None:
            raise ModelError(f"checkpoint {path} has a custom network: pass its build function")
        adapter = cls(
            build,
            recipe,
            device=device,
            chunk_size=chunk_size,
            predict_batch_size=predict_batch_size,
            **options,
        )
        target = resolve_device(device)
        nets = []
        for state in states:
            net = build(n_features, classes.size)
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise ModelError(
                    f"checkpoint {path} does not match the network from build(): {first}"
                ) from exc
            nets.append(net.to(target).eval())
        adapter.nets_ = nets
        adapter.history_ = []
        adapter.warm_started_ = False
        adapter.classes_ = classes
        adapter.n_features_in_ = n_features
        adapter.scale_mean_ = scale_mean.to(torch.float32)
        adapter.scale_std_ = scale_std.to(torch.float32)
        adapter.device_ = target
        return adapter

    # ------------------------------------------------------------------------ helpers

    def _recipe(self) -> TrainingRecipe:
        return self.recipe if self.recipe is not None else TrainingRecipe()

    def _member_count(self) -> int:
        return self.n_members if self.uncertainty == "ensemble" else 1

    def _check_params(self) -> None:
        if self.uncertainty not in get_args(Uncertainty):
            raise ConfigError(
                f"unknown uncertainty {self.uncertainty!r}; use 'mc_dropout' or 'ensemble'"
            )
        if self.scaling not in get_args(Scaling):
            raise ConfigError(f"unknown scaling {self.scaling!r}; use 'feature', 'global', 'none'")
        if self.uncertainty == "ensemble" and self.n_members < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {self.n_members}")
        if self.n_samples < 1 or self.chunk_size < 1 or self.predict_batch_size < 1:
            raise ConfigError("n_samples, chunk_size and predict_batch_size must be positive")

    def _is_fitted(self) -> bool:
        return hasattr(self, "nets_")

    def _fitted(self) -> list[nn.Module]:
        if not self._is_fitted():
            raise ModelError("the model is not fitted yet; call fit() first")
        return self.nets_

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(
                f"expected rows of {self.n_features_in_} features, got an array of shape {X.shape}"
            )
        return X

    def _batches(self, X: np.ndarray) -> Iterator[tuple[int, torch.Tensor]]:
        for start in range(0, X.shape[0], self.chunk_size):
            rows = X[start : start + self.chunk_size]
            chunk = _scale(rows, self.scale_mean_, self.scale_std_, self.device_)
            for offset in range(0, chunk.shape[0], self.predict_batch_size):
                yield start + offset, chunk[offset : offset + self.predict_batch_size]

    def _embedding_dim(self, net: nn.Module, captured: dict[str, torch.Tensor]) -> int:
        probe = self.scale_mean_.to(self.device_).reshape(1, -1)
        with torch.inference_mode():
            net(probe)
        return int(captured["out"][0].numel())


def make_torch_model(
    name: str, seed: int = 0, *, device: str = "cpu", **params: Any
) -> TorchAdapter:
    """Build a ready adapter for a built-in network (``"cnn"`` or ``"mlp"``).

    Defaults suit active learning on small labeled sets: Adam (lr 1e-3), batch 32, up to
    50 epochs with early stopping on a 10% stratified validation split, 20 MC-dropout
    passes. ``params`` may set any network parameter (e.g. ``hidden``, ``dropout``,
    ``channels``), any :class:`TrainingRecipe` field (e.g. ``epochs``, ``lr``,
    ``warm_start``), or any :class:`TorchAdapter` option (e.g. ``uncertainty``,
    ``n_members``, ``embedding_layer``, ``scaling``, ``chunk_size``).
    """
    if name not in _NETS:
        raise ConfigError(f"unknown torch model {name!r}; choose one of: {', '.join(_NETS)}")
    resolve_device(device)
    net_names = set(inspect.signature(_NETS[name]).parameters) - {"n_features", "n_classes"}
    recipe_names = {f.name for f in dataclasses.fields(TrainingRecipe)} - {"seed"}
    adapter_names = set(inspect.signature(TorchAdapter).parameters) - {"build", "recipe", "device"}
    unknown = sorted(set(params) - net_names - recipe_names - adapter_names)
    if unknown:
        valid = ", ".join(sorted(net_names | recipe_names | adapter_names))
        raise ConfigError(
            f"unknown parameter(s) for torch model {name!r}: {', '.join(unknown)}; valid: {valid}"
        )
    recipe = TrainingRecipe(seed=seed, **{k: v for k, v in params.items() if k in recipe_names})
    options: dict[str, Any] = {"scaling": "global" if name == "cnn" else "feature"}
    options.update({k: v for k, v in params.items() if k in adapter_names})
    spec = NetSpec(name, {k: v for k, v in params.items() if k in net_names})
    return TorchAdapter(spec, recipe, device=device, **options)


def checkpoint_classes(path: str | os.PathLike[str]) -> np.ndarray:
    """The classes of a checkpoint written by :meth:`TorchAdapter.save`, without its networks.

    Raises
    ------
    ModelError
        If the file is missing, unreadable or not an exemplar torch checkpoint.
    """
    path = Path(path)
    payload = _read_checkpoint(path)
    try:
        return _meta_classes(_checkpoint_meta(payload))
    except (LookupError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} is not an exemplar torch checkpoint ({exc})") from exc


def _read_checkpoint(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of a checkpoint, with clear errors."""
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"checkpoint {path} holds objects other than tensors and plain containers; "
            "refusing to unpickle it"
        ) from exc
    except _LOAD_ERRORS as exc:
        raise ModelError(f"checkpoint {path} is corrupt or not a torch file: {exc}") from exc


def _checkpoint_meta(payload: Any) -> dict[str, Any]:
    if payload["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"format {payload['format']!r}")
    meta = json.loads(payload["meta"])
    if not isinstance(meta, dict):
        raise TypeError("metadata is not a JSON object")
    return meta


def _meta_classes(meta: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))


def resolve_device(device: str) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` into a usable torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ConfigError(f"unsupported device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
        )
    return dev


# ------------------------------------------------------------------------------ training


def _train(
    net: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    codes: np.ndarray,
    recipe: TrainingRecipe,
    seed: int,
    device: torch.device,
) -> FitHistory:
    """Mini-batch training with early stopping on a stratified validation split."""
    split = _validation_split(codes, recipe, np.random.default_rng(seed))
    if split is None:
        train_rows = torch.arange(X.shape[0], device=device)
        val_rows = None
    else:
        train_rows = torch.as_tensor(split[0], device=device)
        val_rows = torch.as_tensor(split[1], device=device)
    optimizer = _optimizer(net, recipe)
    order = torch.Generator().manual_seed(seed)
    n_batches = math.ceil(train_rows.numel() / recipe.batch_size)
    train_loss: list[float] = []
    val_loss: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(recipe.epochs):
        net.train()
        total = 0.0
        perm = train_rows[torch.randperm(train_rows.numel(), generator=order).to(device)]
        for rows in torch.tensor_split(perm, n_batches):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(X[rows]), y[rows])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * rows.numel()
        train_loss.append(total / train_rows.numel())
        if val_rows is None:
            continue
        net.eval()
        with torch.no_grad():
            val_loss.append(float(F.cross_entropy(net(X[val_rows]), y[val_rows])))
        if best is None or val_loss[-1] < best[0]:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            best = (val_loss[-1], epoch, state)
        elif epoch - best[1] >= recipe.patience:
            break
    if best is not None:
        net.load_state_dict(best[2])
    return FitHistory(train_loss, val_loss, None if best is None else best[1])


def _validation_split(
    codes: np.ndarray, recipe: TrainingRecipe, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Stratified (train, validation) rows, or None when too few would be held out.

    Each class gives its share of ``validation_fraction`` (largest remainders fill the
    total) but keeps at least one training row, so rare classes are never lost.
    """
    target = int(recipe.validation_fraction * codes.size)
    if target < recipe.min_validation_size:
        return None
    counts = np.bincount(codes)
    exact = counts * recipe.validation_fraction
    room = np.maximum(counts - 1, 0)
    quota = np.minimum(np.floor(exact).astype(np.int64), room)
    for k in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if quota.sum() >= target:
            break
        quota[k] += int(quota[k] < room[k])
    if quota.sum() < recipe.min_validation_size:
        return None
    val = np.concatenate(
        [rng.permutation(np.flatnonzero(codes == k))[: quota[k]] for k in range(counts.size)]
    )
    mask = np.ones(codes.size, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), np.sort(val)


def _optimizer(net: nn.Module, recipe: TrainingRecipe) -> torch.optim.Optimizer:
    params = net.parameters()
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def _transfer(source: nn.Module, target: nn.Module) -> bool:
    """Copy every tensor whose name and shape match; True if all of ``target`` was covered."""
    old = source.state_dict()
    new = target.state_dict()
    matched = {k: v for k, v in old.items() if k in new and new[k].shape == v.shape}
    target.load_state_dict(matched, strict=False)
    return len(matched) == len(new)


def _fit_scaling(X: np.ndarray, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std vectors ``(d,)`` that standardize the inputs (std floored at 1e-6)."""
    d = X.shape[1]
    if scaling == "none":
        return torch.zeros(d), torch.ones(d)
    X64 = np.asarray(X, dtype=np.float64)
    if scaling == "global":
        mean = np.full(d, X64.mean())
        std = np.full(d, X64.std())
    else:
        mean, std = X64.mean(axis=0), X64.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)


def _scale(
    X: np.ndarray, mean: torch.Tensor, std: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Standardized float32 rows on ``device`` (a read-only or memory-mapped batch is copied)."""
    batch = np.asarray(X, dtype=np.float32)
    if not batch.flags.writeable:
        batch = batch.copy()
    rows = torch.from_numpy(batch).to(device)
    return (rows - mean.to(device)) / std.to(device)


# ---------------------------------------------------------------------------- inference


class _MCDropout:
    """The dropout modules of one network, made active for MC-dropout passes.

    On the CPU an ``nn.Dropout`` module stays in eval mode and a forward hook keeps each
    unit of its output where ``bits >= p · 2^k`` and scales it by ``1 / (1 - p)``, where the
    ``k``-bit integers come from the module's own PCG64 stream (seeded from the predict
    seed and the module's position in ``net.modules()``). ``k`` is 8, 16 or 32, the fewest
    for which ``p · 2^k`` is a whole number, so the drop rate is exactly ``p`` (other rates
    are rounded to the nearest multiple of 2^-32). Every unit of every
    pass gets its own bits, so the masks are independent across units, rows and passes.
    Drawing them costs a fraction of PyTorch's CPU ``bernoulli_``. Other dropout modules
    (channel and alpha dropout, subclasses), and every module on a GPU, are switched to
    train mode and draw from torch's seeded generator.
    """

    def __init__(self, net: nn.Module, seed: int, device: torch.device) -> None:
        self.hooked: list[tuple[nn.Dropout, np.random.Generator]] = []
        self.switched: list[nn.Module] = []
        for index, module in enumerate(net.modules()):
            if device.type == "cpu" and type(module) is nn.Dropout:
                stream = np.random.SeedSequence([seed, 2, index])
                self.hooked.append((module, np.random.Generator(np.random.PCG64(stream))))
            elif isinstance(module, _DROPOUT):
                self.switched.append(module)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Dropout on inside the block; batch norm and the rest stay in eval mode."""
        handles = [m.register_forward_hook(_masked_dropout(m, rng)) for m, rng in self.hooked]
        for module in self.switched:
            module.train(True)
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            for module in self.switched:
                module.train(False)


def _masked_dropout(
    dropout: nn.Dropout, rng: np.random.Generator
) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], torch.Tensor]:
    """A forward hook for ``dropout`` in eval mode that applies a fresh dropout mask."""

    def drop(_module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        p = float(dropout.p)
        if p == 0.0:
            return out
        if p == 1.0:
            return out * 0.0
        keep = _keep_mask(rng, p, out.numel()).reshape(out.shape)
        return torch.where(keep, out, 0.0).mul_(1.0 / (1.0 - p))

    return drop


def _keep_mask(rng: np.random.Generator, p: float, size: int) -> torch.Tensor:
    """A boolean mask of ``size`` units, each ``True`` (kept) with probability ``1 - p``.

    ``0 < p < 1``. Each unit reads its own 8, 16 or 32 bits of ``rng``'s 64-bit words (see
    :class:`_MCDropout`); a unit is kept when its integer is at least ``p · 2^k``.
    """
    dtype: np.dtype[np.unsignedinteger[Any]] = np.dtype(np.uint32)
    bits, threshold = 32, round(p * 2.0**32)
    for k, kind in ((8, np.uint8), (16, np.uint16)):
        if (p * 2.0**k).is_integer():
            dtype, bits, threshold = np.dtype(kind), k, int(p * 2.0**k)
            break
    threshold = min(threshold, 2**bits - 1)
    per_word = 64 // bits
    words = rng.bit_generator.random_raw(-(-size // per_word))
    units = words.view(dtype)[:size]
    return torch.from_numpy(units >= dtype.type(threshold))


def _forward_parts(
    net: nn.Module,
) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """``(forward_trunk, forward_top)`` if the network splits its forward, else identity and net.

    MC dropout computes the trunk (which must hold no dropout) once per batch and reruns
    only the top for each pass.
    """
    trunk, top = getattr(net, "forward_trunk", None), getattr(net, "forward_top", None)
    if callable(trunk) and callable(top):
        return trunk, top
    return (lambda x: x), net


def _embedding_module(net: nn.Module, name: str | None) -> tuple[nn.Module, bool]:
    """The module whose output (False) or input (True) is the embedding."""
    modules = dict(net.named_modules())
    if name is not None:
        if name not in modules or name == "":
            names = [n for n in modules if n][:20]
            raise ModelError(f"no layer named {name!r} in the network; layers: {', '.join(names)}")
        return modules[name], False
    if "penultimate" in modules:
        return modules["penultimate"], False
    linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(
            "the network has no 'penultimate' module and no nn.Linear: pass embedding_layer"
        )
    return linears[-1], True


def _capture(
    module: nn.Module, use_input: bool, store: dict[str, torch.Tensor]
) -> torch.utils.hooks.RemovableHandle:
    """Register a hook that keeps the module's latest output (or input) in ``store``."""

    def keep(value: Any) -> None:
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"embedding layer returns {type(value).__name__}, not a tensor")
        store["out"] = value

    if use_input:
        return module.register_forward_pre_hook(lambda _m, args: keep(args[0]))
    return module.register_forward_hook(lambda _m, _args, out: keep(out))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


# -------------------------------------------------------------------------------- seeds


def _member_seed(seed: int, member: int) -> int:
    return int(np.random.SeedSequence([seed, 0, member]).generate_state(1)[0])


def _predict_seed(seed: int) -> int:
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch inside the block and restore the caller's RNG state afterwards."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
