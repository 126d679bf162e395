"""The built-in detector: a small CenterNet in plain PyTorch, with samples and views.

Inputs are image rows: ``X`` of shape ``(n, C·S·S)`` float32 in [0, 1], each row one image
flattened channel first (``S`` = ``image_side``, ``C`` = ``channels``), the item's image
letterboxed top-left into ``S x S``. Targets are one :class:`~exemplar.objects.Objects` per
image in that frame. Rows are read ``chunk_size`` at a time (training reads only the rows
of each batch), so a memory-mapped pool never enters memory whole.

Outputs (:meth:`DetectorAdapter.predict`) follow "Objects as Points" (Zhou et al. 2019):

- Peaks of the center heat map (3x3 max-pool, top ``max_objects``, score at least
  ``score_threshold``) become boxes ``center ± size / 2``, scored by the peak's value.
- ``class_proba`` of a box is the column of heat values of every class at its peak,
  divided by their sum (no softmax: the heat maps are independent sigmoids, and this keeps
  their ratios); ``classes`` is the class whose peak made the box.
- ``counts`` is the expected number of objects: the sum of the peak values of at least
  ``count_threshold`` over all classes.
- ``samples``: ``mc_passes`` forward passes with dropout on before the heads
  (Gal & Ghahramani 2016), or the ``ensemble`` members (Lakshminarayanan et al. 2017), with
  ``count_samples`` their counts. An ensemble's ``images`` decode the mean of its members'
  outputs.
- ``views``: predictions on a horizontal flip, a vertical flip and a shift by
  ``view_shift`` pixels right and down (zero padded), boxes mapped back into the original
  frame, for localization stability (Kao et al. 2018).
- ``embeddings``: the global average of the deepest backbone features, ``(n, 4·width)``.
- Masks (``segmentation=True``): a class-agnostic foreground head at stride 4, upsampled
  bilinearly to ``S x S``; each box's mask is the foreground (probability above 0.5) inside
  its box, one COCO RLE per box. Overlapping boxes share their overlap's foreground. Masks
  are given for ``images`` only; samples and views carry boxes, classes and scores.

References
----------
Zhou, X., Wang, D., & Krähenbühl, P. (2019). Objects as points. arXiv:1904.07850.
Gal, Y., & Ghahramani, Z. (2016). Dropout as a Bayesian approximation. ICML.
Lakshminarayanan, B., Pritzel, A., & Blundell, C. (2017). Simple and scalable predictive
uncertainty estimation using deep ensembles. NeurIPS.
Kao, C.-C., Lee, T.-Y., Sen, P., & Liu, M.-Y. (2018). Localization-aware active learning
for object detection. ACCV.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.errors import ConfigError, ModelError
from exemplar.models.base import DEFAULT_CHUNK_SIZE
from exemplar.objects import ObjectPredictions, Objects
from exemplar.predictions import Predictions

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - exercised only without the torch extra
    raise ModelError("PyTorch is not installed: pip install 'exemplar[torch]'") from exc

from exemplar.models.detector_net import STRIDE, CenterNet, center_loss, encode_targets
from exemplar.models.torch_adapter import resolve_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "DetectorAdapter",
    "DetectorConfig",
    "checkpoint_classes",
    "make_detector",
]

#: Format tag written into every detector checkpoint; a file without it is not one.
CHECKPOINT_FORMAT = "exemplar.detector/1"
#: Largest float32 chunk of image rows converted at once, whatever ``chunk_size`` says.
MAX_CHUNK_BYTES = 64 * 1024**2
_LOAD_ERRORS = (RuntimeError, EOFError, OSError, ValueError, LookupError, TypeError)


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that defines a detector apart from its weights (JSON-able; saved with it).

    Parameters
    ----------
    classes : list of str, optional
        Class names, position = class index of the targets. Default: ``"0" .. "K-1"`` for
        the largest class index the first ``fit`` sees.
    image_side : int, default=256
        ``S``: images are ``S x S``; a multiple of 4 (the output stride), at least 16.
    channels : int, default=1
    segmentation : bool, default=False
        Train and predict instance masks.
    ensemble : int, default=1
        Independently seeded networks; 2 or more make the members the samples.
    mc_passes : int, default=8
        MC-dropout passes when ``ensemble == 1``.
    dropout : float, default=0.1
        Dropout before the heads.
    width : int, default=16
        Filters of the first backbone block.
    epochs : int, default=10
        Passes over the labeled images, sized so that one training round on 200 tiles of
        256 x 256 (one channel) stays under a minute on two CPU threads
        (bench/detector_speed.py).
    batch_size : int, default=8
    lr : float, default=2e-3
        Adam's learning rate.
    weight_decay : float, default=0.0
    augment : bool, default=True
        Random horizontal and vertical flips in training.
    negative_weight : float, default=4.0
        Weight of the background term at the center of a hard negative (see
        :func:`~exemplar.models.detector_net.encode_targets`).
    score_threshold : float, default=0.1
        Lowest score of a reported box.
    max_objects : int, default=100
        Peaks kept per image (top-K).
    count_threshold : float, default=0.05
        Lowest peak value counted in ``counts``.
    view_shift : int, default=8
        Shift of the shifted view, in pixels.
    seed : int, default=0
        Seeds initialization, batch order, flips, dropout and MC passes.
    """

    classes: list[str] | None = None
    image_side: int = 256
    channels: int = 1
    segmentation: bool = False
    ensemble: int = 1
    mc_passes: int = 8
    dropout: float = 0.1
    width: int = 16
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.0
    augment: bool = True
    negative_weight: float = 4.0
    score_threshold: float = 0.1
    max_objects: int = 100
    count_threshold: float = 0.05
    view_shift: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", [str(c) for c in self.classes])
        checks = {
            "image_side": self.image_side >= 16 and self.image_side % STRIDE == 0,
            "channels": self.channels >= 1,
            "ensemble": self.ensemble >= 1,
            "mc_passes": self.mc_passes >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "width": self.width >= 1,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "negative_weight": self.negative_weight >= 1,
            "score_threshold": 0.0 <= self.score_threshold <= 1.0,
            "max_objects": self.max_objects >= 1,
            "count_threshold": 0.0 <= self.count_threshold <= 1.0,
            "view_shift": 0 <= self.view_shift < self.image_side,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            hint = " (image_side: a multiple of 4, at least 16)" if "image_side" in bad else ""
            raise ConfigError(f"invalid detector settings: {values}{hint}")

    @property
    def row_width(self) -> int:
        """Values per image row, ``C·S·S``."""
        return self.channels * self.image_side**2


class DetectorAdapter:
    """Train the built-in CenterNet on image rows and predict objects with uncertainty.

    Parameters
    ----------
    classes : sequence of str, optional
    device : str, default="cpu"
        "cpu", "cuda", "cuda:N" or "auto".
    chunk_size : int, default=65536
        Rows read and converted at once when predicting, capped so one chunk of float32
        pixels stays under 64 MiB.
    predict_batch_size : int, default=16
        Images per forward pass when predicting.
    **settings
        Any other :class:`DetectorConfig` field (``image_side``, ``epochs``, ...).

    Attributes
    ----------
    classes_ : ndarray of str, shape (K,)
    nets_ : list of CenterNet
        The trained networks (one, or ``ensemble``), in eval mode.
    history_ : list of list of float
        Mean training loss per epoch of each network.
    """

    classes_: np.ndarray
    nets_: list[CenterNet]
    history_: list[list[float]]

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        predict_batch_size: int = 16,
        **settings: Any,
    ) -> None:
        names = {f.name for f in dataclasses.fields(DetectorConfig)} - {"classes"}
        unknown = sorted(set(settings) - names)
        if unknown:
            valid = ", ".join(sorted(names | {"classes", "device", "chunk_size"}))
            raise ConfigError(
                f"unknown parameter(s) for the detector: {', '.join(unknown)}; valid: {valid}"
            )
        if chunk_size < 1 or predict_batch_size < 1:
            raise ConfigError("chunk_size and predict_batch_size must be positive")
        self.config = DetectorConfig(classes=None if classes is None else list(classes), **settings)
        self.device = device
        self.device_ = resolve_device(device)
        self.chunk_size = chunk_size
        self.predict_batch_size = predict_batch_size

    # ----------------------------------------------------------------------------- fit

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[Objects],
        *,
        negatives: Sequence[Objects] | None = None,
    ) -> DetectorAdapter:
        """Train from scratch on images ``X`` and their objects ``y``.

        ``negatives`` (one :class:`Objects` per image, optional) are boxes a reviewer
        rejected: the background term of the heat map of their class is weighted up to
        ``negative_weight`` around their centers (hard negatives).
        """
        cfg = self.config
        n = self._check_X(X)
        y = self._check_objects(y, n, "y")
        neg = self._check_objects(negatives, n, "negatives") if negatives is not None else None
        n_classes = self._n_classes(y, neg)
        if cfg.classes is None:
            self.config = dataclasses.replace(cfg, classes=[str(k) for k in range(n_classes)])
            cfg = self.config
        foreground = [_foreground(o, cfg.image_side) for o in y] if cfg.segmentation else None
        nets: list[CenterNet] = []
        history: list[list[float]] = []
        for member in range(cfg.ensemble):
            seed = _seed(cfg.seed, 0, member)
            with _seeded(seed):
                net = self._build(n_classes).to(self.device_)
            history.append(self._train(net, X, y, neg, foreground, seed))
            nets.append(net.eval())
        self.nets_ = nets
        self.history_ = history
        self.classes_ = np.asarray(cfg.classes)
        return self

    def _train(
        self,
        net: CenterNet,
        X: np.ndarray,
        y: list[Objects],
        negatives: list[Objects] | None,
        foreground: list[np.ndarray] | None,
        seed: int,
    ) -> list[float]:
        cfg = self.config
        rng = np.random.default_rng(seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(y)
        losses: list[float] = []
        with _seeded(seed):
            for _ in range(cfg.epochs):
                net.train()
                total = 0.0
                order = rng.permutation(n)
                for start in range(0, n, cfg.batch_size):
                    rows = np.sort(order[start : start + cfg.batch_size])
                    flips = rng.random((rows.size, 2)) < 0.5 if cfg.augment else None
                    xb, targets = self._batch(X, rows, y, negatives, foreground, flips)
                    optimizer.zero_grad(set_to_none=True)
                    loss = center_loss(net(xb), targets)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * rows.size
                losses.append(total / n)
        return losses

    def _batch(
        self,
        X: np.ndarray,
        rows: np.ndarray,
        y: list[Objects],
        negatives: list[Objects] | None,
        foreground: list[np.ndarray] | None,
        flips: np.ndarray | None,
    ) -> tuple[torch.Tensor, Any]:
        """Images and targets of training rows ``rows``, flipped where ``flips`` says."""
        cfg = self.config
        s = cfg.image_side
        images = self._images(np.asarray(X[rows], dtype=np.float32))
        boxes, classes, negs, fgs = [], [], [], []
        for j, row in enumerate(rows):
            fh, fv = (bool(flips[j, 0]), bool(flips[j, 1])) if flips is not None else (False, False)
            box = _flip_boxes(y[row].boxes, s, fh, fv)
            boxes.append(box)
            classes.append(y[row].classes)
            if negatives is not None:
                negs.append((_flip_boxes(negatives[row].boxes, s, fh, fv), negatives[row].classes))
            else:
                negs.append((np.empty((0, 4), np.float32), np.empty(0, np.int64)))
            if foreground is not None:
                fg = foreground[row]
                fgs.append(fg[:, ::-1] if fh else fg)
                if fv:
                    fgs[-1] = fgs[-1][::-1]
                fgs[-1] = np.ascontiguousarray(fgs[-1])
            dims = [d for d, on in ((3, fh), (2, fv)) if on]
            if dims:
                images[j] = images[j].flip(dims=[d - 1 for d in dims])
        targets = encode_targets(
            boxes,
            classes,
            negs,
            fgs if foreground is not None else None,
            len(self.config.classes or ()),
            s,
            cfg.negative_weight,
        )
        return images.to(self.device_), targets.to(self.device_)

    # ------------------------------------------------------------------------- predict

    def predict(
        self,
        X: np.ndarray,
        *,
        samples: bool = False,
        embeddings: bool = False,
        views: bool = False,
    ) -> Predictions:
        """Objects of every image, and optionally samples, views and embeddings.

        Rows are read ``chunk_size`` at a time (capped at 64 MiB of float32 pixels) and
        pushed through the networks ``predict_batch_size`` at a time under
        ``torch.inference_mode``. MC-dropout passes are seeded from ``seed``, so the same
        model predicts the same samples for the same rows.
        """
        nets = self._fitted()
        n = self._check_X(X)
        cfg = self.config
        k = len(self.classes_)
        mc = samples and len(nets) == 1
        if mc and cfg.dropout == 0:
            raise ModelError(
                "the detector has dropout=0, so its MC-dropout samples would all be equal; "
                "set dropout > 0 or ensemble >= 2"
            )
        t = (cfg.mc_passes if mc else len(nets)) if samples else 0
        images: list[Objects] = []
        sampled: list[list[Objects]] = [[] for _ in range(t)]
        viewed: list[list[Objects]] = [[] for _ in range(3 if views else 0)]
        counts = np.empty(n, np.float32)
        count_samples = np.empty((t, n), np.float32) if samples else None
        emb = np.empty((n, nets[0].embedding_dim), np.float32) if embeddings else None
        with torch.inference_mode(), _seeded(_seed(cfg.seed, 1, 0)):
            for start, xb in self._batches(X, n):
                rows = slice(start, start + xb.shape[0])
                features, pooled = zip(*(net.forward_trunk(xb) for net in nets), strict=True)
                outs = [net.forward_top(f) for net, f in zip(nets, features, strict=True)]
                mean = _mean_outputs(outs)
                decoded, batch_counts = self._decode(mean, masks=cfg.segmentation)
                images += decoded
                counts[rows] = batch_counts
                if emb is not None:
                    emb[rows] = torch.stack(pooled).mean(dim=0).float().cpu().numpy()
                if samples:
                    assert count_samples is not None
                    passes = self._mc_passes(nets[0], features[0]) if mc else outs
                    for i, out in enumerate(passes):
                        objs, c = self._decode(out)
                        sampled[i] += objs
                        count_samples[i, rows] = c
                if views:
                    for i, view in enumerate(self._views(nets, xb)):
                        viewed[i] += view
        objects = ObjectPredictions(
            images,
            k,
            samples=sampled if samples else None,
            views=viewed if views else None,
            counts=counts,
            count_samples=count_samples,
        )
        return Predictions(embeddings=emb, classes=self.classes_, objects=objects)

    def predict_objects(self, X: np.ndarray) -> list[Objects]:
        """The objects of every image (the deterministic prediction)."""
        objects = self.predict(X).objects
        assert objects is not None
        return list(objects.images)

    def describe_objects(
        self, X: np.ndarray, objects: Sequence[Objects]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and embeddings of *given* objects (for curation).

        Curation reads the model on objects someone labeled, not on the ones it found:
        confident learning ranks object label errors by the probability of each object's
        given class (:func:`exemplar.curation.object_label_errors`), and a class split
        clusters the objects of one class by their embeddings
        (:func:`exemplar.curation.propose_split`).

        - Probabilities: at the stride-4 cell holding a box's center, the center heat
          value of every class, divided by their sum (as ``class_proba`` of a predicted
          box at its peak; Zhou et al. 2019). An ensemble's heat maps are averaged first.
        - Embeddings: the stride-4 neck features (the ones the heads read, ``2·width``
          values) averaged over the cells the box covers (at least its center cell), in
          eval mode (no dropout); an ensemble's members are averaged, as
          ``predict(embeddings=True)`` does.

        Parameters
        ----------
        X : ndarray, shape (n, C·S·S)
            Image rows, as :meth:`predict` takes them.
        objects : sequence of n Objects
            The objects of each image, boxes in the ``S x S`` frame of the rows (as given
            to :meth:`fit`); their classes are not read.

        Returns
        -------
        proba : ndarray of float32, shape (m, K)
            ``m`` = total number of objects, in image order then object order; rows sum
            to 1.
        embeddings : ndarray of float32, shape (m, 2·width)
        """
        nets = self._fitted()
        n = self._check_X(X)
        objs = list(objects)
        if len(objs) != n:
            raise ModelError(f"describe_objects: {len(objs)} Objects for {n} images")
        for i, o in enumerate(objs):
            if not isinstance(o, Objects):
                raise ModelError(f"describe_objects: objects[{i}] is a {type(o).__name__}")
        k = len(self.classes_)
        dim = 2 * self.config.width
        sizes = np.fromiter((len(o) for o in objs), dtype=np.int64, count=n)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        proba = np.zeros((int(starts[-1]), k), np.float32)
        emb = np.zeros((int(starts[-1]), dim), np.float32)
        cells = self.config.image_side // STRIDE
        with torch.inference_mode():
            for first, xb in self._batches(X, n):
                features = [net.forward_trunk(xb)[0] for net in nets]
                heat = torch.stack(
                    [
                        torch.sigmoid(net.forward_top(f)["heat"].float())
                        for net, f in zip(nets, features, strict=True)
                    ]
                ).mean(dim=0)
                feat = torch.stack(features).float().mean(dim=0)
                # summed-area table of the features: any box's sum is four look-ups
                table = F.pad(feat.cumsum(dim=2).cumsum(dim=3), (1, 0, 1, 0))
                heat_np, table_np = heat.cpu().numpy(), table.cpu().numpy()
                for j in range(xb.shape[0]):
                    o = objs[first + j]
                    if not len(o):
                        continue
                    rows = slice(int(starts[first + j]), int(starts[first + j + 1]))
                    grid = o.boxes / np.float32(STRIDE)
                    cx = np.clip(((grid[:, 0] + grid[:, 2]) / 2).astype(np.int64), 0, cells - 1)
                    cy = np.clip(((grid[:, 1] + grid[:, 3]) / 2).astype(np.int64), 0, cells - 1)
                    column = heat_np[j][:, cy, cx].T
                    proba[rows] = column / np.maximum(column.sum(axis=1, keepdims=True), 1e-12)
                    c0 = np.minimum(np.clip(np.floor(grid[:, 0]).astype(np.int64), 0, cells), cx)
                    r0 = np.minimum(np.clip(np.floor(grid[:, 1]).astype(np.int64), 0, cells), cy)
                    c1 = np.maximum(np.clip(np.ceil(grid[:, 2]).astype(np.int64), 0, cells), cx + 1)
                    r1 = np.maximum(np.clip(np.ceil(grid[:, 3]).astype(np.int64), 0, cells), cy + 1)
                    t = table_np[j]
                    total = t[:, r1, c1] - t[:, r0, c1] - t[:, r1, c0] + t[:, r0, c0]
                    emb[rows] = (total / ((r1 - r0) * (c1 - c0))[None, :]).T
        return proba, emb

    def predict_labels(self, X: np.ndarray) -> np.ndarray:
        """Not defined for a detector: a ModelError."""
        raise ModelError(
            "a detector predicts objects, not one label per image: use predict_objects()"
        )

    def _mc_passes(self, net: CenterNet, features: torch.Tensor) -> Iterator[dict[str, Any]]:
        """``mc_passes`` outputs of the heads with dropout active (batch norm stays eval)."""
        net.dropout.train(True)
        try:
            for _ in range(self.config.mc_passes):
                yield net.forward_top(features)
        finally:
            net.dropout.train(False)

    def _views(self, nets: list[CenterNet], xb: torch.Tensor) -> list[list[Objects]]:
        """Objects on the flipped and shifted images, boxes mapped back to the original frame."""
        cfg = self.config
        s, d = cfg.image_side, cfg.view_shift
        shifted = F.pad(xb, (d, 0, d, 0))[..., :s, :s].contiguous()
        result = []
        for image, back in (
            (xb.flip(dims=[3]), lambda b: _flip_boxes(b, s, True, False)),
            (xb.flip(dims=[2]), lambda b: _flip_boxes(b, s, False, True)),
            (shifted, lambda b: b - np.float32(d)),
        ):
            out = _mean_outputs([net(image) for net in nets])
            objs, _ = self._decode(out)
            result.append([_map_back(o, back, s) for o in objs])
        return result

    def _decode(
        self, out: dict[str, torch.Tensor], *, masks: bool = False
    ) -> tuple[list[Objects], np.ndarray]:
        """Objects of each image of a batch from the heads' outputs, and expected counts."""
        cfg = self.config
        heat = torch.sigmoid(out["heat"].float())
        b, k, h, w = heat.shape
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        counts = (peaks * (peaks >= cfg.count_threshold)).sum(dim=(1, 2, 3))
        top = min(cfg.max_objects, k * h * w)
        scores, index = peaks.reshape(b, -1).topk(top, dim=1)
        cls = index // (h * w)
        pix = index % (h * w)
        gather = pix[:, None, :]
        size = out["size"].float().reshape(b, 2, -1).gather(2, gather.expand(b, 2, top))
        offset = out["offset"].float().reshape(b, 2, -1).gather(2, gather.expand(b, 2, top))
        column = heat.reshape(b, k, -1).gather(2, gather.expand(b, k, top))
        proba = column / column.sum(dim=1, keepdim=True).clamp(min=1e-12)
        cx = ((pix % w).float() + offset[:, 0]) * STRIDE
        cy = ((pix // w).float() + offset[:, 1]) * STRIDE
        half_w = size[:, 0].clamp(min=0) * (STRIDE / 2)
        half_h = size[:, 1].clamp(min=0) * (STRIDE / 2)
        s = float(cfg.image_side)
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2).clamp(
            0.0, s
        )
        fg: np.ndarray | None = None
        if masks and "foreground" in out:
            side = (cfg.image_side, cfg.image_side)
            up = F.interpolate(out["foreground"].float(), size=side, mode="bilinear")
            fg = (up[:, 0] > 0).cpu().numpy()
        scores_np, cls_np = scores.cpu().numpy(), cls.cpu().numpy()
        boxes_np, proba_np = boxes.cpu().numpy(), proba.transpose(1, 2).cpu().numpy()
        objects = []
        for i in range(b):
            keep = scores_np[i] >= cfg.score_threshold
            rles = None if fg is None else _masks(fg[i], boxes_np[i][keep])
            objects.append(
                Objects(
                    boxes_np[i][keep], cls_np[i][keep], scores_np[i][keep], proba_np[i][keep], rles
                )
            )
        return objects, counts.cpu().numpy()

    # -------------------------------------------------------------------- save / load

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config (JSON) and every network's state dict to one file, atomically."""
        nets = self._fitted()
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": json.dumps(dataclasses.asdict(self.config)),
            "members": [
                {k: v.detach().cpu().clone() for k, v in net.state_dict().items()} for net in nets
            ],
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        predict_batch_size: int = 16,
    ) -> DetectorAdapter:
        """A detector saved by :meth:`save` (``torch.load(weights_only=True)`` only)."""
        path = Path(path)
        payload = _read_checkpoint(path)
        try:
            config = _config(payload)
            states = list(payload["members"])
        except (LookupError, TypeError, ValueError, ConfigError) as exc:
            raise ModelError(f"{path} is not an exemplar detector checkpoint ({exc})") from exc
        settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "classes"}
        adapter = cls(
            config.classes,
            device=device,
            chunk_size=chunk_size,
            predict_batch_size=predict_batch_size,
            **settings,
        )
        nets = []
        for state in states:
            net = adapter._build(len(config.classes or ()))
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise ModelError(f"checkpoint {path}: weights do not fit the network: {first}")
            nets.append(net.to(adapter.device_).eval())
        adapter.nets_ = nets
        adapter.history_ = []
        adapter.classes_ = np.asarray(config.classes)
        return adapter

    # ------------------------------------------------------------------------ helpers

    def _build(self, n_classes: int) -> CenterNet:
        cfg = self.config
        return CenterNet(
            n_classes,
            cfg.channels,
            width=cfg.width,
            dropout=cfg.dropout,
            segmentation=cfg.segmentation,
        )

    def _fitted(self) -> list[CenterNet]:
        if not hasattr(self, "nets_"):
            raise ModelError("the detector is not fitted yet; call fit() first")
        return self.nets_

    def _check_X(self, X: Any) -> int:
        shape = getattr(X, "shape", None)
        if shape is None:
            raise ModelError(f"detector input must be an array of image rows, got {type(X)}")
        width = self.config.row_width
        if len(shape) != 2 or shape[1] != width:
            cfg = self.config
            raise ModelError(
                f"detector input: expected rows of {width} values (channels={cfg.channels} x "
                f"image_side={cfg.image_side}²), got an array of shape {tuple(shape)}"
            )
        return int(shape[0])

    @staticmethod
    def _check_objects(objs: Sequence[Objects], n: int, name: str) -> list[Objects]:
        objs = list(objs)
        if len(objs) != n:
            raise ModelError(f"detector fit: {name} has {len(objs)} entries for {n} images")
        for i, o in enumerate(objs):
            if not isinstance(o, Objects):
                raise ModelError(f"detector fit: {name}[{i}] is a {type(o).__name__}, not Objects")
        return objs

    def _n_classes(self, y: list[Objects], negatives: list[Objects] | None) -> int:
        found = [o.classes for o in y + (negatives or [])]
        top = max((int(c.max()) for c in found if c.size), default=0)
        low = min((int(c.min()) for c in found if c.size), default=0)
        if low < 0:
            raise ModelError(f"detector fit: class index {low} is negative")
        if self.config.classes is None:
            return top + 1
        k = len(self.config.classes)
        if top >= k:
            raise ModelError(
                f"detector fit: class index {top} found but the detector has {k} classes "
                f"({', '.join(self.config.classes)})"
            )
        return k

    def _rows_per_chunk(self) -> int:
        row_bytes = 4 * self.config.row_width
        return max(1, min(self.chunk_size, MAX_CHUNK_BYTES // row_bytes))

    def _images(self, rows: np.ndarray) -> torch.Tensor:
        cfg = self.config
        if not rows.flags.writeable or not rows.flags.c_contiguous:
            rows = np.array(rows, dtype=np.float32)
        return torch.from_numpy(rows).reshape(-1, cfg.channels, cfg.image_side, cfg.image_side)

    def _batches(self, X: np.ndarray, n: int) -> Iterator[tuple[int, torch.Tensor]]:
        step = self._rows_per_chunk()
        for start in range(0, n, step):
            chunk = self._images(np.asarray(X[start : start + step], dtype=np.float32))
            for offset in range(0, chunk.shape[0], self.predict_batch_size):
                batch = chunk[offset : offset + self.predict_batch_size]
                yield start + offset, batch.to(self.device_)


def make_detector(
    seed: int = 0,
    *,
    device: str = "cpu",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **params: Any,
) -> DetectorAdapter:
    """A fresh detector; ``params`` are ``classes``, ``predict_batch_size`` or any
    :class:`DetectorConfig` field. An unknown name is a ConfigError listing the valid ones."""
    params = dict(params)
    classes = params.pop("classes", None)
    batch = params.pop("predict_batch_size", 16)
    return DetectorAdapter(
        classes,
        device=device,
        chunk_size=chunk_size,
        predict_batch_size=batch,
        **{"seed": seed, **params},
    )


def checkpoint_classes(path: str | os.PathLike[str]) -> np.ndarray:
    """The classes of a detector checkpoint, read from its config (no network is built)."""
    path = Path(path)
    payload = _read_checkpoint(path)
    try:
        return np.asarray(_config(payload).classes)
    except (LookupError, TypeError, ValueError, ConfigError) as exc:
        raise ModelError(f"{path} is not an exemplar detector checkpoint ({exc})") from exc


# ------------------------------------------------------------------------------ helpers


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


def _config(payload: Any) -> DetectorConfig:
    if not isinstance(payload, Mapping) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(f"format {found!r}")
    values = json.loads(payload["config"])
    if not isinstance(values, dict) or not isinstance(values.get("classes"), list):
        raise TypeError("config is not a JSON object with a class list")
    return DetectorConfig(**values)


def _seed(seed: int, stream: int, member: int) -> int:
    return int(np.random.SeedSequence([seed, stream, member]).generate_state(1)[0])


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch inside the block and restore the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _mean_outputs(outs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One output: the members' outputs averaged (heat maps as probabilities, then logits)."""
    if len(outs) == 1:
        return outs[0]
    mean = {key: torch.stack([o[key] for o in outs]).mean(dim=0) for key in outs[0]}
    heat = torch.stack([torch.sigmoid(o["heat"]) for o in outs]).mean(dim=0)
    mean["heat"] = torch.logit(heat.clamp(1e-6, 1 - 1e-6))
    return mean


def _flip_boxes(boxes: np.ndarray, side: int, horizontal: bool, vertical: bool) -> np.ndarray:
    """Boxes of an image flipped left-right and/or top-bottom (a flip is its own inverse)."""
    out = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if horizontal:
        out[:, [0, 2]] = side - out[:, [2, 0]]
    if vertical:
        out[:, [1, 3]] = side - out[:, [3, 1]]
    return out


def _map_back(objs: Objects, back: Any, side: int) -> Objects:
    """Objects of a view with boxes mapped into the original frame (clipped, empty dropped)."""
    if not len(objs):
        return objs
    boxes = np.clip(back(objs.boxes), 0.0, float(side))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    moved = Objects(boxes, objs.classes, objs.scores, objs.class_proba)
    return moved.take(keep)


def _foreground(objs: Objects, side: int) -> np.ndarray:
    """Share of each stride-4 cell covered by the objects (their masks, else their boxes)."""
    full = np.zeros((side, side), np.float32)
    if objs.masks is not None and len(objs):
        from pycocotools import mask as mask_utils

        for rle in objs.masks:
            m = mask_utils.decode(dict(rle))
            if m.shape != (side, side):
                raise ModelError(
                    f"detector fit: a mask of shape {m.shape} in a {side}x{side} image frame"
                )
            np.maximum(full, m.astype(np.float32), out=full)
    else:
        for x0, y0, x1, y1 in objs.boxes:
            full[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 1.0
    cells = side // STRIDE
    return full.reshape(cells, STRIDE, cells, STRIDE).mean(axis=(1, 3))


def _masks(foreground: np.ndarray, boxes: np.ndarray) -> list[dict[str, object]]:
    """One COCO RLE per box: the foreground pixels inside the box."""
    from pycocotools import mask as mask_utils

    side = foreground.shape[0]
    rles = []
    for x0, y0, x1, y1 in boxes:
        m = np.zeros((side, side), np.uint8, order="F")
        c0, r0 = int(np.floor(x0)), int(np.floor(y0))
        c1, r1 = int(np.ceil(x1)), int(np.ceil(y1))
        m[r0:r1, c0:c1] = foreground[r0:r1, c0:c1]
        rle = mask_utils.encode(m)
        counts = rle["counts"]
        rles.append({"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii")})
    return rles
