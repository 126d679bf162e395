"""The CenterNet-style network of the built-in detector, its training targets and losses.

A small convolutional backbone (output strides 2, 4, 8 and 16), a feature-pyramid-like
neck that brings the deepest features back to stride 4 by upsampling and adding 1x1
lateral projections (Lin et al. 2017), dropout, and three heads at stride 4 as in
"Objects as Points" (Zhou et al. 2019): a center heat map per class, the box size
``(w, h)`` and the sub-cell offset of the center. An optional fourth head predicts a
class-agnostic foreground map for instance masks (see :mod:`exemplar.models.detector`).
Plain PyTorch; no torchvision.

References
----------
Zhou, X., Wang, D., & Krähenbühl, P. (2019). Objects as points. arXiv:1904.07850.
Law, H., & Deng, J. (2018). CornerNet: Detecting objects as paired keypoints. ECCV.
Lin, T.-Y., Dollár, P., Girshick, R., et al. (2017). Feature pyramid networks for object
detection. CVPR.
"""

from __future__ import annotations

import math

import numpy as np

from exemplar.errors import ModelError

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the torch extra
    raise ModelError("PyTorch is not installed: pip install 'exemplar[torch]'") from exc

__all__ = ["STRIDE", "CenterNet", "DetectionTargets", "center_loss", "encode_targets"]

#: Output stride of the heads: one heat-map cell per 4x4 input pixels.
STRIDE = 4
#: Initial bias of the heat-map logits, sigmoid(-2.19) = 0.1 (Zhou et al. 2019, after
#: the focal-loss prior of Lin et al. 2017), so training starts with few false peaks.
HEAT_PRIOR = -2.19


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _head(c_in: int, c_out: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1)
    )
    last = head[-1]
    assert isinstance(last, nn.Conv2d) and last.bias is not None
    nn.init.constant_(last.bias, bias)
    return head


class CenterNet(nn.Module):
    """Backbone, neck and CenterNet heads for ``channels``-channel square images.

    Parameters
    ----------
    n_classes : int
        Heat-map channels, one per class.
    channels : int, default=1
        Input channels.
    width : int, default=16
        Filters of the first block; deeper blocks have 2x and 4x as many.
    dropout : float, default=0.1
        Element-wise dropout on the neck's output, before every head (MC dropout).
    segmentation : bool, default=False
        Add the foreground head for masks.

    Notes
    -----
    ``forward_trunk(x)`` returns the stride-4 features and the pooled stride-16 embedding;
    ``forward_top(features)`` applies dropout and the heads. MC dropout runs the trunk
    once and the top once per pass.
    """

    def __init__(
        self,
        n_classes: int,
        channels: int = 1,
        *,
        width: int = 16,
        dropout: float = 0.1,
        segmentation: bool = False,
    ) -> None:
        super().__init__()
        w = width
        self.stem = _block(channels, w, 2)
        self.layer4 = nn.Sequential(_block(w, 2 * w, 2), _block(2 * w, 2 * w, 1))
        self.layer8 = nn.Sequential(_block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1))
        self.layer16 = nn.Sequential(_block(4 * w, 4 * w, 2), _block(4 * w, 4 * w, 1))
        self.lateral16 = nn.Conv2d(4 * w, 2 * w, 1)
        self.lateral8 = nn.Conv2d(4 * w, 2 * w, 1)
        self.lateral4 = nn.Conv2d(2 * w, 2 * w, 1)
        self.smooth = _block(2 * w, 2 * w, 1)
        self.dropout = nn.Dropout(dropout)
        self.heat = _head(2 * w, n_classes, HEAT_PRIOR)
        self.size = _head(2 * w, 2)
        self.offset = _head(2 * w, 2)
        self.foreground = _head(2 * w, 1) if segmentation else None
        self.embedding_dim = 4 * w

    def forward_trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stride-4 neck features ``(n, 2w, S/4, S/4)`` and the pooled embedding ``(n, 4w)``."""
        c4 = self.layer4(self.stem(x))
        c8 = self.layer8(c4)
        c16 = self.layer16(c8)
        p = self.lateral16(c16)
        p = self.lateral8(c8) + F.interpolate(p, size=c8.shape[-2:], mode="nearest")
        p = self.lateral4(c4) + F.interpolate(p, size=c4.shape[-2:], mode="nearest")
        return self.smooth(p), c16.mean(dim=(2, 3))

    def forward_top(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs: ``heat`` logits (n, K, F, F), ``size`` and ``offset`` (n, 2, F, F),
        and ``foreground`` logits (n, 1, F, F) with segmentation."""
        h = self.dropout(features)
        out = {"heat": self.heat(h), "size": self.size(h), "offset": self.offset(h)}
        if self.foreground is not None:
            out["foreground"] = self.foreground(h)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``forward_top(forward_trunk(x)[0])``."""
        return self.forward_top(self.forward_trunk(x)[0])


# ------------------------------------------------------------------------------ targets


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """Radius of the Gaussian around an object's center, from its size in cells.

    The smallest of CornerNet's three radii within which a shifted box keeps IoU
    ``min_overlap`` with the true box, computed exactly as in the CornerNet and CenterNet
    code (Law & Deng 2018; Zhou et al. 2019).
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(max(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(max(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(max(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return min(r1, r2, r3)


def draw_gaussian(heat: np.ndarray, cx: int, cy: int, radius: int, value: float = 1.0) -> None:
    """Splat ``value · exp(-d²/2σ²)``, σ = (2r+1)/6, around ``(cx, cy)`` by element-wise max."""
    sigma = (2 * radius + 1) / 6
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma)) * value
    h, w = heat.shape
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    left, right = min(cx, radius), min(w - cx, radius + 1)
    if bottom <= 0 or right <= 0 or top < 0 or left < 0:
        return
    window = heat[cy - top : cy + bottom, cx - left : cx + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(window, patch, out=window)


class DetectionTargets:
    """Training targets of a batch at stride 4, as tensors.

    Attributes
    ----------
    heat : (b, K, F, F) float32
        Gaussian center targets (1 at each object's center cell).
    neg_weight : (b, K, F, F) float32
        Weight of each cell's background term: 1, raised around hard negatives.
    index : (m, 4) int64
        ``(image, class, y, x)`` of each object's center cell.
    size : (m, 2) float32
        Box ``(w, h)`` in cells.
    offset : (m, 2) float32
        Center minus its cell's corner, in cells.
    foreground : (b, 1, F, F) float32 or None
        Share of each cell covered by an object (segmentation).
    """

    def __init__(
        self,
        heat: np.ndarray,
        neg_weight: np.ndarray,
        index: np.ndarray,
        size: np.ndarray,
        offset: np.ndarray,
        foreground: np.ndarray | None,
    ) -> None:
        self.heat = torch.from_numpy(heat)
        self.neg_weight = torch.from_numpy(neg_weight)
        self.index = torch.from_numpy(index)
        self.size = torch.from_numpy(size)
        self.offset = torch.from_numpy(offset)
        self.foreground = None if foreground is None else torch.from_numpy(foreground)

    def to(self, device: torch.device) -> DetectionTargets:
        """The targets moved to ``device`` (in place; returns self)."""
        for name in ("heat", "neg_weight", "index", "size", "offset", "foreground"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self


def encode_targets(
    boxes: list[np.ndarray],
    classes: list[np.ndarray],
    negatives: list[tuple[np.ndarray, np.ndarray]],
    foreground: list[np.ndarray] | None,
    n_classes: int,
    side: int,
    negative_weight: float,
) -> DetectionTargets:
    """CenterNet targets for a batch of images (boxes xyxy in the ``side`` x ``side`` frame).

    Each object puts a Gaussian of CornerNet's radius on its class's heat map at its
    center cell and gives one size and one offset target there (Zhou et al. 2019). Each
    hard negative (a box a reviewer rejected: ``(boxes, classes)`` per image) raises the
    weight of the background term of its class's heat map around its center, by up to
    ``negative_weight`` at the center, following the same Gaussian, so the network learns
    to keep that place dark.
    """
    cells = side // STRIDE
    b = len(boxes)
    heat = np.zeros((b, n_classes, cells, cells), np.float32)
    neg = np.zeros((b, n_classes, cells, cells), np.float32)
    index: list[tuple[int, int, int, int]] = []
    size: list[tuple[float, float]] = []
    offset: list[tuple[float, float]] = []
    for i in range(b):
        for box, k in zip(boxes[i], classes[i], strict=True):
            placed = _center(box, cells)
            if placed is None:
                continue
            cx, cy, fx, fy, w, h, radius = placed
            draw_gaussian(heat[i, k], cx, cy, radius)
            index.append((i, int(k), cy, cx))
            size.append((w, h))
            offset.append((fx - cx, fy - cy))
        for box, k in zip(*negatives[i], strict=True):
            placed = _center(box, cells)
            if placed is not None:
                draw_gaussian(neg[i, k], placed[0], placed[1], placed[6])
    fg = None if foreground is None else np.stack(foreground)[:, None].astype(np.float32)
    return DetectionTargets(
        heat,
        1.0 + (negative_weight - 1.0) * neg,
        np.asarray(index, np.int64).reshape(-1, 4),
        np.asarray(size, np.float32).reshape(-1, 2),
        np.asarray(offset, np.float32).reshape(-1, 2),
        fg,
    )


def _center(box: np.ndarray, cells: int) -> tuple[int, int, float, float, float, float, int] | None:
    x0, y0, x1, y1 = (float(v) / STRIDE for v in box)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return None
    fx, fy = (x0 + x1) / 2, (y0 + y1) / 2
    cx, cy = min(int(fx), cells - 1), min(int(fy), cells - 1)
    if cx < 0 or cy < 0:
        return None
    radius = max(0, int(gaussian_radius(math.ceil(h), math.ceil(w))))
    return cx, cy, fx, fy, w, h, radius


# ------------------------------------------------------------------------------- losses


def center_loss(
    out: dict[str, torch.Tensor], targets: DetectionTargets, size_weight: float = 0.1
) -> torch.Tensor:
    """CenterNet's loss: focal loss on the heat map, L1 on size and offset at the centers.

    The heat-map term is the penalty-reduced pixel-wise focal loss of CornerNet
    (α = 2, β = 4), its background terms weighted by ``targets.neg_weight``, normalized by
    the number of objects; size (weight ``size_weight``) and offset are L1 losses at the
    object centers (Zhou et al. 2019). With a foreground head, a binary cross-entropy
    against the per-cell object coverage is added.
    """
    logits = out["heat"]
    gt = targets.heat
    log_p = F.logsigmoid(logits).clamp(min=math.log(1e-4))
    log_not_p = F.logsigmoid(-logits).clamp(min=math.log(1e-4))
    p = torch.sigmoid(logits)
    pos = gt.eq(1).float()
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_not_p * p**2 * (1 - gt) ** 4 * (1 - pos) * targets.neg_weight).sum()
    m = targets.index.shape[0]
    loss = -(pos_loss + neg_loss) / max(m, 1)
    if m:
        i, _, y, x = targets.index.unbind(1)
        size = out["size"][i, :, y, x]
        off = out["offset"][i, :, y, x]
        loss = loss + size_weight * F.l1_loss(size, targets.size, reduction="sum") / m
        loss = loss + F.l1_loss(off, targets.offset, reduction="sum") / m
    if "foreground" in out and targets.foreground is not None:
        loss = loss + F.binary_cross_entropy_with_logits(out["foreground"], targets.foreground)
    return loss
