"""Built-in networks for the PyTorch adapter: a small CNN for square images and an MLP.

Both take flat feature rows and mark their penultimate representation with an
``nn.Identity`` module named ``penultimate``, so embeddings default to it. Both split
``forward`` into ``forward_trunk`` (everything before the first dropout) and
``forward_top``, so MC-dropout inference computes the trunk once for all passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from exemplar.errors import ModelError

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the torch extra
    raise ModelError("PyTorch is not installed: pip install 'exemplar[torch]'") from exc

__all__ = ["MLP", "SmallCNN"]


class SmallCNN(nn.Module):
    """conv-relu-pool-conv-relu-pool-dropout-fc-relu-dropout-fc for square one-channel images.

    The layout follows the Keras MNIST network used by Gal et al. (2017), with the same
    two dropout layers, plus "same" padding (so 8×8 digits work too), fewer filters and a
    pooling step after each convolution. The extra pooling cuts the multiply-adds of the
    convolutions and of the fully connected layer, which MC dropout runs once per pass,
    by about 4× on 28×28 images, so scoring a pool with 20 passes stays cheap on a CPU.
    Rows are flat images: ``n_features`` must be ``side²`` with side at least 4
    (784 for 28×28 MNIST, 64 for 8×8 digits).

    Parameters
    ----------
    n_features : int
        Pixels per image (a perfect square, side at least 4).
    n_classes : int
        Output logits.
    channels : (int, int), default=(16, 32)
        Filters of the two convolutions.
    kernel_size : int, default=3
    hidden : int, default=128
        Width of the penultimate (fully connected) layer.
    dropout : (float, float), default=(0.25, 0.5)
        Dropout after the pooling and after the penultimate layer.

    References
    ----------
    Gal, Y., Islam, R., & Ghahramani, Z. (2017). Deep Bayesian active learning with
    image data. ICML.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        *,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        hidden: int = 128,
        dropout: Sequence[float] = (0.25, 0.5),
    ) -> None:
        super().__init__()
        side = math.isqrt(n_features) if n_features > 0 else 0
        if side < 4 or side * side != n_features:
            raise ModelError(
                f"SmallCNN needs square images as flat rows (side² features, e.g. 64 or 784), "
                f"got {n_features} features"
            )
        if len(channels) != 2 or len(dropout) != 2:
            raise ModelError("SmallCNN takes two channel counts and two dropout rates")
        c1, c2 = (int(c) for c in channels)
        self.side = side
        self.conv1 = nn.Conv2d(1, c1, kernel_size, padding="same")
        self.conv2 = nn.Conv2d(c1, c2, kernel_size, padding="same")
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(float(dropout[0]))
        self.fc = nn.Linear(c2 * (side // 2 // 2) ** 2, hidden)
        self.penultimate = nn.Identity()
        self.drop2 = nn.Dropout(float(dropout[1]))
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` for flat rows ``(batch, side²)``."""
        return self.forward_top(self.forward_trunk(x))

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic convolutions (no dropout)."""
        x = x.reshape(-1, 1, self.side, self.side)
        x = self.pool(self.relu(self.conv1(x)))
        return self.pool(self.relu(self.conv2(x)))

    def forward_top(self, h: torch.Tensor) -> torch.Tensor:
        """Dropout and the fully connected layers."""
        h = self.penultimate(self.relu(self.fc(self.drop1(h).flatten(1))))
        return self.head(self.drop2(h))


class MLP(nn.Module):
    """A multilayer perceptron with ReLU and dropout after every hidden layer.

    MC dropout over these layers approximates a Bayesian network (Gal & Ghahramani 2016).

    Parameters
    ----------
    n_features, n_classes : int
    hidden : sequence of int, default=(256, 128)
        Hidden layer widths; the last one is the penultimate (embedding) layer. Empty
        gives a linear model whose embedding is the input itself.
    dropout : float, default=0.5

    References
    ----------
    Gal, Y., & Ghahramani, Z. (2016). Dropout as a Bayesian approximation: representing
    model uncertainty in deep learning. ICML.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if n_features < 1:
            raise ModelError(f"MLP needs at least one feature, got {n_features}")
        sizes = [int(h) for h in hidden]
        widths = [n_features, *sizes]
        first: list[nn.Module] = [nn.Linear(widths[0], widths[1]), nn.ReLU()] if sizes else []
        rest: list[nn.Module] = []
        for width, size in zip(widths[1:-1], sizes[1:], strict=True):
            rest += [nn.Dropout(dropout), nn.Linear(width, size), nn.ReLU()]
        self.trunk = nn.Sequential(*first)
        self.body = nn.Sequential(*rest)
        self.penultimate = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)``."""
        return self.forward_top(self.forward_trunk(x))

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The first hidden layer (no dropout before it)."""
        return self.trunk(x)

    def forward_top(self, h: torch.Tensor) -> torch.Tensor:
        """The remaining layers, each hidden layer preceded by dropout."""
        return self.head(self.dropout(self.penultimate(self.body(h))))
