"""SYNTHETIC annotated cell images for fast detection and segmentation tests.

Nothing here is observed data: :func:`synthetic_cells` draws fluorescence-like images with
exact instance masks, so that tests and examples run in seconds without any download. Use
:func:`exemplar.data.nuclei.load_nuclei` for real microscopy.

Each image has:

- objects of up to four shape families, one per class (in the order of ``classes``):
  0, large blurred ellipses ("nucleus": semi-axes 6-16 px, aspect 0.55-1, random angle,
  textured intensity); 1, small round blobs ("micronucleus": radius 1.8-3.5 px) placed
  next to a class-0 object when there is one; 2, elongated rods (aspect 0.2-0.35);
  3, rings (hollow ellipses, the mask is the ring itself);
- some overlap between objects (fluorescence adds up, drawn here as the pixelwise max; the
  masks overlap too);
- debris that is **not** an object: thin straight fibres, sharp-edged bright specks and
  dim out-of-focus haze, so that a detector must learn shape, not brightness;
- an intensity gradient (a random plane), Gaussian blur of the objects (sigma 1 px) and
  Gaussian noise.

Masks are exact: an object's mask is the set of pixels whose centres lie inside its shape,
cut to the image; an object less than half inside the image is not drawn. Boxes are the
masks' tight boxes. Image ``i`` depends only on ``seed`` and ``i`` (seeds spawned with
:class:`numpy.random.SeedSequence`), so the first ``k`` images of a longer run are the
images of a run of ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from exemplar.data.detection import DetectionDataset, rle_from_crop
from exemplar.errors import DatasetError
from exemplar.objects import Objects

__all__ = ["MAX_SYNTHETIC_CLASSES", "synthetic_cells"]

#: How many shape families (classes) the generator can draw.
MAX_SYNTHETIC_CLASSES = 4


def _ellipse(
    rng: np.random.Generator, cx: float, cy: float, a: float, b: float, size: int
) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """Normalized radius and in-shape mask of a rotated ellipse on its bounding window."""
    theta = rng.uniform(0.0, np.pi)
    r = int(np.ceil(max(a, b))) + 1
    top, left = max(int(cy) - r, 0), max(int(cx) - r, 0)
    bottom, right = min(int(cy) + r + 1, size), min(int(cx) + r + 1, size)
    if bottom <= top or right <= left:
        return None
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(theta), np.sin(theta)
    u, v = (dx * c + dy * s) / a, (-dx * s + dy * c) / b
    rho = np.sqrt(u * u + v * v)
    return rho, rho <= 1.0, top, left


def _draw_object(
    rng: np.random.Generator, kind: int, cx: float, cy: float, size: int
) -> tuple[np.ndarray, np.ndarray, int, int, float] | None:
    """Intensity patch, mask patch, top, left and full-shape area of one object."""
    if kind == 0:
        a = rng.uniform(6.0, 16.0)
        b = a * rng.uniform(0.55, 1.0)
    elif kind == 1:
        a = rng.uniform(1.8, 3.5)
        b = a * rng.uniform(0.75, 1.0)
    elif kind == 2:
        a = rng.uniform(9.0, 18.0)
        b = a * rng.uniform(0.2, 0.35)
    else:
        a = rng.uniform(7.0, 13.0)
        b = a * rng.uniform(0.7, 1.0)
    drawn = _ellipse(rng, cx, cy, a, b, size)
    if drawn is None:
        return None
    rho, mask, top, left = drawn
    amp = rng.uniform(0.35, 0.9)
    if kind == 3:
        mask = (rho <= 1.0) & (rho >= 0.6)
        patch = amp * np.exp(-(((rho - 0.8) / 0.18) ** 2))
        area = np.pi * a * b * (1 - 0.36)
    else:
        # a soft-edged dome with some texture: brighter inside, falls off at the edge
        patch = amp * np.clip(1.15 - 0.45 * rho**2, 0.0, None)
        patch *= 1.0 + 0.15 * rng.standard_normal(patch.shape).astype(np.float32)
        area = np.pi * a * b
    patch = np.where(rho <= 1.15, patch, 0.0).astype(np.float32)
    return patch, mask, top, left, float(area)


def _debris(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Draw clutter that is not an object: fibres, sharp specks and haze (in place)."""
    size = canvas.shape[0]
    for _ in range(int(rng.integers(1, 4))):  # thin straight fibres
        x0, y0 = rng.uniform(0, size, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(15, 45)
        t = np.linspace(0, length, int(length * 2))
        xs = np.clip((x0 + t * np.cos(angle)).astype(int), 0, size - 1)
        ys = np.clip((y0 + t * np.sin(angle)).astype(int), 0, size - 1)
        canvas[ys, xs] = np.maximum(canvas[ys, xs], rng.uniform(0.3, 0.8))
    for _ in range(int(rng.integers(1, 5))):  # sharp-edged bright specks (squares)
        side = int(rng.integers(2, 6))
        y, x = rng.integers(0, size - side, 2)
        block = canvas[y : y + side, x : x + side]
        np.maximum(block, rng.uniform(0.6, 1.0), out=block)
    for _ in range(int(rng.integers(0, 3))):  # dim, wide out-of-focus haze
        cy, cx = rng.uniform(0, size, 2)
        sigma = rng.uniform(10, 25)
        yy, xx = np.ogrid[:size, :size]
        canvas += rng.uniform(0.05, 0.15) * np.exp(
            -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)
        ).astype(np.float32)


def _one_image(
    rng: np.random.Generator,
    size: int,
    n_classes: int,
    objects_per_image: tuple[int, int],
    clutter: bool,
    channels: int,
) -> tuple[np.ndarray, Objects]:
    n_target = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    weights = (
        np.array([0.6] + [0.4 / (n_classes - 1)] * (n_classes - 1)) if n_classes > 1 else np.ones(1)
    )
    kinds = rng.choice(n_classes, size=n_target, p=weights / weights.sum())
    kinds = np.sort(kinds)  # large objects first, so small ones can sit next to them
    layers = np.zeros((n_classes, size, size), np.float32)
    centres: list[tuple[float, float, float]] = []
    boxes, classes, masks = [], [], []
    for kind in kinds:
        for _attempt in range(10):
            if kind == 1 and centres:
                px, py, pr = centres[int(rng.integers(len(centres)))]
                ang, dist = rng.uniform(0, 2 * np.pi), pr + rng.uniform(3.0, 9.0)
                cx, cy = px + dist * np.cos(ang), py + dist * np.sin(ang)
            else:
                cx, cy = rng.uniform(0, size, 2)
            crowded = any((cx - x) ** 2 + (cy - y) ** 2 < (0.7 * r) ** 2 for x, y, r in centres)
            if not (0 <= cx < size and 0 <= cy < size) or (kind != 1 and crowded):
                continue
            drawn = _draw_object(rng, int(kind), cx, cy, size)
            if drawn is None:
                continue
            patch, mask, top, left, area = drawn
            if mask.sum() < max(0.5 * area, 1.0):
                continue
            h, w = patch.shape
            region = layers[int(kind), top : top + h, left : left + w]
            np.maximum(region, patch, out=region)
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            boxes.append((left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1))
            classes.append(int(kind))
            masks.append(rle_from_crop(mask, top, left, size, size))
            if kind != 1:
                centres.append((cx, cy, float(np.sqrt(area / np.pi))))
            break
    signal = ndimage.gaussian_filter(layers.max(axis=0), sigma=1.0)
    clutter_layer = np.zeros((size, size), np.float32)
    if clutter:
        _debris(rng, clutter_layer)
        clutter_layer = ndimage.gaussian_filter(clutter_layer, sigma=0.5)
    gy, gx = rng.uniform(-0.12, 0.12, 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    background = rng.uniform(0.04, 0.12) + gy * (yy - 0.5) + gx * (xx - 0.5)
    planes = []
    for c in range(channels):
        if c == 0:
            gain = np.ones(n_classes, np.float32)
        else:
            gain = rng.uniform(0.2, 1.0, n_classes).astype(np.float32)
        per_class = (
            ndimage.gaussian_filter((layers * gain[:, None, None]).max(axis=0), sigma=1.0)
            if c
            else signal
        )
        noise = rng.normal(0.0, rng.uniform(0.02, 0.05), (size, size)).astype(np.float32)
        planes.append(np.clip(background + per_class + clutter_layer + noise, 0.0, 1.0))
    stack = np.stack(planes, axis=-1) if channels > 1 else planes[0]
    image = np.round(stack * 255.0).astype(np.uint8)
    objects = Objects(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64), masks=masks
    )
    return image, objects


def synthetic_cells(
    n_images: int,
    *,
    size: int = 256,
    classes: Sequence[str] = ("nucleus", "micronucleus"),
    objects_per_image: tuple[int, int] = (5, 40),
    seed: int = 0,
    clutter: bool = True,
    channels: int = 1,
) -> DetectionDataset:
    """SYNTHETIC fluorescence-like cell images with exact boxes and instance masks.

    Parameters
    ----------
    n_images : int
        Number of images.
    size : int
        Side of the square images, in pixels (at least 32).
    classes : sequence of str
        One to four class names; class ``k`` gets shape family ``k`` (see the module
        docstring: ellipses, small blobs, rods, rings).
    objects_per_image : (int, int)
        Inclusive range of the number of objects attempted per image (crowded images may
        get a few fewer).
    seed : int
        Image ``i`` depends only on ``seed`` and ``i``.
    clutter : bool
        Draw debris (fibres, specks, haze) that is not annotated.
    channels : int
        1 gives ``(size, size)`` images; more gives ``(size, size, channels)``, where each
        extra channel shows the classes with random relative brightness.

    Returns
    -------
    DetectionDataset
        ``synthetic=True``; images named ``"synthetic-<seed>-<i>"``.
    """
    names = [str(c) for c in classes]
    if not 1 <= len(names) <= MAX_SYNTHETIC_CLASSES or len(set(names)) != len(names):
        raise DatasetError(
            f"synthetic_cells: classes must be 1 to {MAX_SYNTHETIC_CLASSES} distinct names, "
            f"got {names}"
        )
    lo, hi = objects_per_image
    if n_images < 0 or size < 32 or channels < 1 or not 0 <= lo <= hi:
        raise DatasetError(
            f"synthetic_cells: need n_images >= 0, size >= 32, channels >= 1 and "
            f"0 <= objects_per_image[0] <= [1]; got {n_images}, {size}, {channels}, "
            f"{objects_per_image}"
        )
    images, objects = [], []
    for child in np.random.SeedSequence(seed).spawn(n_images):
        image, objs = _one_image(
            np.random.default_rng(child), size, len(names), (lo, hi), clutter, channels
        )
        images.append(image)
        objects.append(objs)
    return DetectionDataset(
        images,
        objects,
        names,
        [f"synthetic-{seed}-{i:05d}" for i in range(n_images)],
        synthetic=True,
    )
