"""Annotated images for detection and segmentation, and the helpers that prepare them.

A :class:`DetectionDataset` holds images (``uint8``, ``(h, w)`` or ``(h, w, c)``) with the
objects of each image as :class:`~exemplar.objects.Objects`: boxes ``x0, y0, x1, y1`` in
pixels and instance masks as COCO run-length encodings (see :mod:`exemplar.objects`).

Helpers:

- :func:`tile` cuts images into square tiles (edge tiles are *shifted inward* so that
  every tile is full size and holds only real pixels; an image smaller than the tile is
  zero padded at the bottom and right); :func:`grid_tiles` cuts each image into a fixed
  grid of equal tiles.
- :func:`fit_to_side` rescales every image so its longer side is ``S`` (objects follow).
- :func:`split` splits a dataset at random into parts.
- :func:`to_rows` turns images into the detector's input rows: each image scaled by
  ``S / max(h, w)`` (Pillow, bilinear) and letterboxed top-left into ``S x S``, zero
  padded, channel-first and flattened. :func:`scale_objects` maps objects the same way, and
  :func:`letterbox_dataset` does both for a dataset.
- :func:`normalize_intensity` maps 8-bit, 16-bit or float images to ``[0, 1]``: by the
  dtype's maximum (``"dtype"``), or by robust per-image percentiles (``"percentile"``:
  the 1st percentile maps to 0 and the 99.8th to 1, clipped; Weigert et al. 2018).

References
----------
Weigert, M., et al. (2018). Content-aware image restoration: pushing the limits of
fluorescence microscopy. Nature Methods 15, 1090-1097 (percentile normalization).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from exemplar.errors import DatasetError
from exemplar.objects import RLE, Objects

__all__ = [
    "PERCENTILES",
    "DetectionDataset",
    "Normalize",
    "box_of_mask",
    "crop_rle",
    "dataset_from_arrays",
    "dataset_to_arrays",
    "decode_rle",
    "encode_mask",
    "fit_to_side",
    "grid_tiles",
    "letterbox_dataset",
    "normalize_intensity",
    "rle_from_crop",
    "scale_objects",
    "split",
    "tile",
    "tile_image",
    "tile_starts",
    "to_rows",
    "to_uint8",
]

#: How :func:`normalize_intensity` maps pixel values to [0, 1].
Normalize = Literal["dtype", "percentile"]
#: Low and high percentiles of ``normalize="percentile"``.
PERCENTILES = (1.0, 99.8)


@dataclass(frozen=True)
class DetectionDataset:
    """Images with their annotated objects.

    Parameters
    ----------
    images : list of ndarray
        ``uint8`` arrays of shape ``(h, w)`` or ``(h, w, c)``.
    objects : list of Objects
        The objects of each image (boxes in that image's pixels; masks as COCO RLE of the
        image's size, or None).
    classes : list of str
        Class names; ``Objects.classes`` index into it.
    names : list of str
        A unique name for each image (where it came from).
    synthetic : bool
        True when the images were generated, not observed.
    """

    images: list[np.ndarray]
    objects: list[Objects]
    classes: list[str]
    names: list[str]
    synthetic: bool

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.objects) != n or len(self.names) != n:
            raise DatasetError(
                f"detection dataset: {n} images, {len(self.objects)} object lists and "
                f"{len(self.names)} names; they must match"
            )
        n_classes = len(self.classes)
        for image, objs, name in zip(self.images, self.objects, self.names, strict=True):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise DatasetError(
                    f"detection dataset: image {name!r} must be uint8 (h, w) or (h, w, c), "
                    f"got {image.dtype} {image.shape}"
                )
            if len(objs) and (objs.classes.min() < 0 or objs.classes.max() >= n_classes):
                raise DatasetError(
                    f"detection dataset: image {name!r} has a class index outside the "
                    f"{n_classes} classes {self.classes}"
                )
            if objs.masks is not None and len(objs):
                h, w = image.shape[:2]
                if any(list(m["size"]) != [h, w] for m in objs.masks):  # type: ignore[call-overload]
                    raise DatasetError(
                        f"detection dataset: image {name!r} has a mask whose size is not "
                        f"its own {h}x{w}"
                    )

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: Sequence[int] | np.ndarray) -> DetectionDataset:
        """The images at ``indices`` (in that order), with their objects."""
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        return DetectionDataset(
            [self.images[i] for i in idx],
            [self.objects[i] for i in idx],
            list(self.classes),
            [self.names[i] for i in idx],
            self.synthetic,
        )

    @property
    def n_objects(self) -> int:
        """Number of objects over all images."""
        return sum(len(o) for o in self.objects)

    def class_counts(self) -> dict[str, int]:
        """Number of objects of each class."""
        counts = np.zeros(len(self.classes), np.int64)
        for objs in self.objects:
            counts += np.bincount(objs.classes, minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, counts, strict=True)}


# --- masks ---------------------------------------------------------------------------------


def _as_str_rle(rle: dict[str, object]) -> RLE:
    counts = rle["counts"]
    text = counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
    return {"size": [int(s) for s in rle["size"]], "counts": text}  # type: ignore[attr-defined]


def encode_mask(mask: np.ndarray) -> RLE:
    """COCO RLE (``counts`` as str) of a full-frame ``(h, w)`` boolean mask."""
    fortran = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    return _as_str_rle(mask_utils.encode(fortran))


def rle_from_crop(crop: np.ndarray, top: int, left: int, height: int, width: int) -> RLE:
    """COCO RLE of a ``height x width`` frame that is empty except for ``crop`` at (top, left).

    Faster than encoding the whole frame when the object is small: the run lengths are
    computed from the crop's pixels alone (column-major, as COCO).
    """
    ys, xs = np.nonzero(np.asarray(crop, dtype=bool).T)[::-1]
    if ys.size == 0:
        return _as_str_rle(
            mask_utils.frPyObjects(
                {"size": [height, width], "counts": [height * width]}, height, width
            )
        )
    flat = (xs.astype(np.int64) + left) * height + (ys.astype(np.int64) + top)
    breaks = np.flatnonzero(np.diff(flat) != 1)
    starts = np.concatenate(([flat[0]], flat[breaks + 1]))
    ends = np.concatenate((flat[breaks] + 1, [flat[-1] + 1]))
    counts = np.empty(2 * starts.size + 1, np.int64)
    counts[0] = starts[0]
    counts[1:-1:2] = ends - starts
    counts[2:-1:2] = starts[1:] - ends[:-1]
    counts[-1] = height * width - ends[-1]
    runs = counts.tolist() if counts[-1] else counts[:-1].tolist()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return _as_str_rle(rle)


def decode_rle(rle: RLE) -> np.ndarray:
    """The ``(h, w)`` boolean mask of a COCO RLE."""
    counts = rle["counts"]
    size: Any = rle["size"]
    coded = {
        "size": [int(v) for v in size],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(coded).astype(bool)


def box_of_mask(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The tight box ``x0, y0, x1, y1`` (pixel edges) of a boolean mask, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def crop_rle(rle: RLE, top: int, left: int, height: int, width: int) -> RLE:
    """The part of a mask inside the window ``(top, left, height, width)``, in the window's
    frame; window pixels outside the original frame are empty (zero padding)."""
    full = decode_rle(rle)
    out = np.zeros((height, width), bool)
    h, w = full.shape
    y1, x1 = min(top + height, h), min(left + width, w)
    out[: y1 - top, : x1 - left] = full[top:y1, left:x1]
    return encode_mask(out)


# --- intensities ---------------------------------------------------------------------------


def normalize_intensity(
    image: np.ndarray,
    normalize: Normalize = "dtype",
    *,
    percentiles: tuple[float, float] = PERCENTILES,
) -> np.ndarray:
    """Map an image's pixel values to float32 in [0, 1].

    Parameters
    ----------
    image : ndarray
        Integer (8- or 16-bit, any unsigned or signed integer type) or float image.
    normalize : {"dtype", "percentile"}
        ``"dtype"``: integers are divided by their dtype's maximum (255, 65535), floats are
        taken as already in [0, 1] and clipped. ``"percentile"``: the image's low and high
        ``percentiles`` map to 0 and 1, clipped (robust to a few saturated pixels; Weigert
        et al. 2018); a constant image maps to zeros.
    percentiles : (float, float)
        Low and high percentiles for ``"percentile"``.

    Returns
    -------
    ndarray, float32, same shape
    """
    arr = np.asarray(image)
    if normalize == "percentile":
        values = arr.astype(np.float32)
        lo, hi = np.percentile(values, percentiles)
        if hi <= lo:
            return np.zeros(arr.shape, np.float32)
        return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if normalize != "dtype":
        raise DatasetError(f"normalize must be 'dtype' or 'percentile', got {normalize!r}")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return np.clip(arr.astype(np.float32) / float(info.max), 0.0, 1.0)
    if np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool:
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    raise DatasetError(f"cannot normalize an image of dtype {arr.dtype}")


def to_uint8(
    image: np.ndarray,
    normalize: Normalize = "dtype",
    *,
    percentiles: tuple[float, float] = PERCENTILES,
) -> np.ndarray:
    """An image as ``uint8`` via :func:`normalize_intensity` (``uint8`` input with
    ``"dtype"`` is returned unchanged)."""
    if image.dtype == np.uint8 and normalize == "dtype":
        return image
    unit = normalize_intensity(image, normalize, percentiles=percentiles)
    return np.round(unit * 255.0).astype(np.uint8)


# --- geometry ------------------------------------------------------------------------------


def scale_objects(
    objects: Objects, factor: float, *, canvas: int | tuple[int, int] | None = None
) -> Objects:
    """Objects of an image rescaled by ``factor`` (as :func:`to_rows` scales the image).

    Boxes are multiplied by ``factor``. Masks are resized with nearest-neighbour sampling to
    ``round(h * factor) x round(w * factor)`` (the size :func:`to_rows` gives the image) and,
    when ``canvas`` (``S`` or ``(height, width)``) is given, placed top-left on a zero canvas
    of that size (the letterbox frame); a mask that the resize would empty keeps the one
    pixel at its box's centre. Boxes are clipped to the new frame.
    """
    if factor <= 0:
        raise DatasetError(f"scale factor must be positive, got {factor}")
    boxes = objects.boxes * np.float32(factor)
    masks: list[RLE] | None = None
    if objects.masks is not None:
        masks = []
        for rle in objects.masks:
            h, w = (int(s) for s in rle["size"])  # type: ignore[attr-defined]
            nh, nw = _scaled_size(h, w, factor)
            full = decode_rle(rle)
            small = (
                np.asarray(
                    Image.fromarray(full.astype(np.uint8) * 255).resize(
                        (nw, nh), Image.Resampling.NEAREST
                    )
                )
                > 0
            )
            if not small.any():  # a tiny object keeps one pixel, at its box centre
                bx0, by0, bx1, by1 = (float(v) for v in boxes[len(masks)])
                small[min(int((by0 + by1) / 2), nh - 1), min(int((bx0 + bx1) / 2), nw - 1)] = True
            ch, cw = (canvas, canvas) if isinstance(canvas, int) else (canvas or (nh, nw))
            if ch < nh or cw < nw:
                raise DatasetError(f"canvas {ch}x{cw} is smaller than the scaled mask {nh}x{nw}")
            masks.append(rle_from_crop(small, 0, 0, ch, cw))
        if len(masks):
            ch, cw = (int(s) for s in masks[0]["size"])  # type: ignore[attr-defined]
            boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, cw)
            boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, ch)
    return Objects(boxes, objects.classes, objects.scores, objects.class_proba, masks)


def _scaled_size(h: int, w: int, factor: float) -> tuple[int, int]:
    return max(1, round(h * factor)), max(1, round(w * factor))


def _resize_unit(unit: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """Bilinear resize of a float (h, w) or (h, w, c) image with Pillow (mode ``F``)."""
    if unit.shape[:2] == (nh, nw):
        return unit
    if unit.ndim == 2:
        return np.asarray(
            Image.fromarray(unit, mode="F").resize((nw, nh), Image.Resampling.BILINEAR)
        )
    return np.stack([_resize_unit(unit[..., c], nh, nw) for c in range(unit.shape[2])], axis=-1)


def _channels_first(unit: np.ndarray, channels: int, name: str) -> np.ndarray:
    """(C, h, w) from an (h, w) or (h, w, c) image: gray is repeated, RGB(A) is averaged to
    gray for one channel, an alpha channel is dropped for three."""
    if unit.ndim == 2:
        return np.repeat(unit[None], channels, axis=0)
    c = unit.shape[2]
    if c == channels:
        return np.moveaxis(unit, -1, 0)
    if c == 4 and channels == 3:
        return np.moveaxis(unit[..., :3], -1, 0)
    if channels == 1:
        return unit[..., : min(c, 3)].mean(axis=-1)[None]
    if c == 1:
        return np.repeat(np.moveaxis(unit, -1, 0), channels, axis=0)
    raise DatasetError(f"{name}: cannot make {channels} channels from an image with {c}")


def to_rows(
    images: Sequence[np.ndarray],
    image_side: int,
    channels: int = 1,
    *,
    normalize: Normalize = "dtype",
) -> tuple[np.ndarray, np.ndarray]:
    """Images as the detector's input rows (SPEC-11, detector input).

    Each image is normalized to [0, 1] (:func:`normalize_intensity`), scaled by
    ``S / max(h, w)`` with Pillow's bilinear resize to ``round(h * s) x round(w * s)``, and
    placed top-left in an ``S x S`` zero canvas, channel first.

    Parameters
    ----------
    images : sequence of ndarray
        ``(h, w)`` or ``(h, w, c)`` images, 8-bit, 16-bit or float in [0, 1].
    image_side : int
        ``S``.
    channels : int
        ``C``: gray images are repeated, RGB averaged when ``C == 1``.
    normalize : {"dtype", "percentile"}
        See :func:`normalize_intensity`.

    Returns
    -------
    X : ndarray of shape (n, C * S * S), float32 in [0, 1]
    scales : ndarray of shape (n,), float64
        ``S / max(h, w)`` of each image; multiply an image's boxes by it (or use
        :func:`scale_objects`) to move them into the row's frame.
    """
    if image_side < 1 or channels < 1:
        raise DatasetError(
            f"image_side and channels must be positive, got {image_side}, {channels}"
        )
    n = len(images)
    side = int(image_side)
    X = np.zeros((n, channels, side, side), np.float32)
    scales = np.empty(n, np.float64)
    for i, image in enumerate(images):
        arr = np.asarray(image)
        if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise DatasetError(f"image {i}: expected (h, w) or (h, w, c), got shape {arr.shape}")
        h, w = arr.shape[:2]
        s = side / max(h, w)
        nh, nw = _scaled_size(h, w, s)
        unit = normalize_intensity(arr, normalize)
        resized = _resize_unit(unit, nh, nw)
        X[i, :, :nh, :nw] = np.clip(_channels_first(resized, channels, f"image {i}"), 0.0, 1.0)
        scales[i] = s
    return X.reshape(n, -1), scales


def letterbox_dataset(
    dataset: DetectionDataset,
    image_side: int,
    channels: int = 1,
    *,
    normalize: Normalize = "dtype",
) -> tuple[np.ndarray, list[Objects], np.ndarray]:
    """:func:`to_rows` of a dataset's images with its objects in the rows' ``S x S`` frame.

    Returns
    -------
    X : ndarray (n, C * S * S), float32
    objects : list of Objects
        Boxes scaled; masks (if any) scaled and letterboxed to ``S x S``.
    scales : ndarray (n,)
    """
    X, scales = to_rows(dataset.images, image_side, channels, normalize=normalize)
    objects = [
        scale_objects(o, float(s), canvas=int(image_side))
        for o, s in zip(dataset.objects, scales, strict=True)
    ]
    return X, objects, scales


# --- tiling --------------------------------------------------------------------------------


def tile_starts(length: int, size: int, step: int) -> list[int]:
    """Start offsets of tiles of ``size`` every ``step`` along ``length``; the last tile is
    shifted inward to end at ``length`` (one start, 0, when ``length <= size``)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _crop_objects(
    objects: Objects,
    top: int,
    left: int,
    height: int,
    width: int,
    min_visible: float,
) -> Objects:
    """The objects seen through a window, in its frame (see :func:`tile`)."""
    if not len(objects):
        return (
            Objects.empty()
            if objects.masks is None
            else Objects(np.empty((0, 4), np.float32), np.empty(0, np.int64), masks=[])
        )
    b = objects.boxes
    cx0 = np.clip(b[:, 0], left, left + width)
    cy0 = np.clip(b[:, 1], top, top + height)
    cx1 = np.clip(b[:, 2], left, left + width)
    cy1 = np.clip(b[:, 3], top, top + height)
    inside = (cx1 - cx0) * (cy1 - cy0)
    area = objects.areas
    visible = np.where(area > 0, inside / np.maximum(area, 1e-12), 0.0)
    keep = (inside > 0) & (visible >= min_visible)
    boxes = np.stack([cx0 - left, cy0 - top, cx1 - left, cy1 - top], axis=1)[keep]
    kept = np.flatnonzero(keep)
    masks: list[RLE] | None = None
    if objects.masks is not None:
        masks = []
        still = []
        for j, i in enumerate(kept):
            rle = crop_rle(objects.masks[int(i)], top, left, height, width)
            box = box_of_mask(decode_rle(rle))
            if box is None:
                continue
            boxes[j] = box
            masks.append(rle)
            still.append(j)
        boxes = boxes[still]
        kept = kept[still]
    return Objects(
        boxes,
        objects.classes[kept],
        None if objects.scores is None else objects.scores[kept],
        None if objects.class_proba is None else objects.class_proba[kept],
        masks,
    )


def _window(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    out = np.zeros((height, width, *image.shape[2:]), image.dtype)
    part = image[top : top + height, left : left + width]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def tile(
    dataset: DetectionDataset,
    tile_size: int | tuple[int, int],
    *,
    overlap: int = 0,
    min_visible: float = 0.5,
) -> DetectionDataset:
    """Cut every image into tiles.

    Tiles start every ``tile_size - overlap`` pixels; the last row and column of tiles are
    **shifted inward** so they end at the image's edge (every tile is full size and holds
    only real pixels, so edge tiles overlap their neighbours more). An image smaller than
    the tile along a side gives one tile there, **zero padded** at the bottom or right.

    An object is clipped to each tile it touches and kept there when at least
    ``min_visible`` of its box area lies inside (and some of it does); masks are cropped to
    the tile and the box is then the cropped mask's tight box (an object whose cropped mask
    is empty is dropped).

    Parameters
    ----------
    dataset : DetectionDataset
    tile_size : int or (int, int)
        Tile side, or ``(height, width)``.
    overlap : int
        Pixels shared by neighbouring tiles (before the edge shift).
    min_visible : float
        In [0, 1]; 0 keeps any object that touches the tile.

    Returns
    -------
    DetectionDataset
        Tiles named ``"<image name>@y<top>x<left>"``, in image then row-major order.
    """
    th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if th < 1 or tw < 1:
        raise DatasetError(f"tile_size must be positive, got {tile_size}")
    if not 0 <= overlap < min(th, tw):
        raise DatasetError(f"overlap must be in [0, tile size), got {overlap}")
    if not 0.0 <= min_visible <= 1.0:
        raise DatasetError(f"min_visible must be in [0, 1], got {min_visible}")
    images, objects, names = [], [], []
    for image, objs, name in zip(dataset.images, dataset.objects, dataset.names, strict=True):
        for top, left, window, kept in tile_image(
            image, objs, (th, tw), overlap=overlap, min_visible=min_visible
        ):
            images.append(window)
            objects.append(kept)
            names.append(f"{name}@y{top}x{left}")
    return DetectionDataset(images, objects, list(dataset.classes), names, dataset.synthetic)


def tile_image(
    image: np.ndarray,
    objects: Objects,
    tile_size: tuple[int, int],
    *,
    overlap: int = 0,
    min_visible: float = 0.5,
) -> list[tuple[int, int, np.ndarray, Objects]]:
    """One image (of any dtype) cut as :func:`tile` cuts: ``(top, left, pixels, objects)``
    per tile, in row-major order."""
    th, tw = tile_size
    h, w = image.shape[:2]
    return [
        (
            top,
            left,
            _window(image, top, left, th, tw),
            _crop_objects(objects, top, left, th, tw, min_visible),
        )
        for top in tile_starts(h, th, th - overlap)
        for left in tile_starts(w, tw, tw - overlap)
    ]


def grid_tiles(
    dataset: DetectionDataset, rows: int = 2, cols: int = 2, *, min_visible: float = 0.5
) -> DetectionDataset:
    """Cut every image into a ``rows x cols`` grid of equal tiles of
    ``ceil(h / rows) x ceil(w / cols)`` pixels (the last row and column are shifted inward
    by at most one pixel when ``h`` or ``w`` does not divide); objects as in :func:`tile`."""
    if rows < 1 or cols < 1:
        raise DatasetError(f"rows and cols must be positive, got {rows}, {cols}")
    images, objects, names = [], [], []
    for image, objs, name in zip(dataset.images, dataset.objects, dataset.names, strict=True):
        h, w = image.shape[:2]
        th, tw = -(-h // rows), -(-w // cols)
        for r in range(rows):
            for c in range(cols):
                top, left = min(r * th, max(h - th, 0)), min(c * tw, max(w - tw, 0))
                images.append(_window(image, top, left, th, tw))
                objects.append(_crop_objects(objs, top, left, th, tw, min_visible))
                names.append(f"{name}@y{top}x{left}")
    return DetectionDataset(images, objects, list(dataset.classes), names, dataset.synthetic)


def fit_to_side(dataset: DetectionDataset, side: int) -> DetectionDataset:
    """Rescale every image so its longer side is ``side`` (Pillow bilinear on the uint8
    image; objects by :func:`scale_objects`, masks nearest-neighbour)."""
    if side < 1:
        raise DatasetError(f"side must be positive, got {side}")
    images, objects = [], []
    for image, objs in zip(dataset.images, dataset.objects, strict=True):
        h, w = image.shape[:2]
        s = side / max(h, w)
        nh, nw = _scaled_size(h, w, s)
        if (nh, nw) == (h, w):
            images.append(image)
            objects.append(objs)
            continue
        resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))
        images.append(resized)
        objects.append(scale_objects(objs, s))
    return DetectionDataset(
        images, objects, list(dataset.classes), list(dataset.names), dataset.synthetic
    )


def split(
    dataset: DetectionDataset, fractions: Sequence[float], seed: int = 0
) -> list[DetectionDataset]:
    """Split a dataset at random into parts of the given fractions (they must sum to 1).

    Part sizes are ``round(cumsum(fractions) * n)`` differences, so they add up to ``n``.
    Split before tiling: tiles of one image in two parts leak information between them.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise DatasetError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    n = len(dataset)
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(fr) * n).astype(int)
    bounds[-1] = n
    parts, start = [], 0
    for end in bounds:
        parts.append(dataset.take(np.sort(order[start:end])))
        start = int(end)
    return parts


# --- cache ---------------------------------------------------------------------------------


def dataset_to_arrays(dataset: DetectionDataset) -> dict[str, np.ndarray]:
    """A dataset as plain arrays (no objects, no pickles) for :mod:`exemplar.data.cache`.

    Scores and class probabilities are not kept (datasets hold ground truth); masks are kept
    when every image has them.
    """
    with_masks = all(o.masks is not None for o in dataset.objects)
    n_objects = [len(o) for o in dataset.objects]
    masks = [str(m["counts"]) for o in dataset.objects for m in (o.masks or [])]
    return {
        "pixels": np.concatenate([im.reshape(-1) for im in dataset.images])
        if dataset.images
        else np.empty(0, np.uint8),
        "shapes": np.array(
            [(*im.shape[:2], im.shape[2] if im.ndim == 3 else 0) for im in dataset.images], np.int64
        ).reshape(-1, 3),
        "boxes": np.concatenate([o.boxes for o in dataset.objects]).reshape(-1, 4)
        if dataset.objects
        else np.empty((0, 4), np.float32),
        "classes": np.concatenate([o.classes for o in dataset.objects])
        if dataset.objects
        else np.empty(0, np.int64),
        "n_objects": np.asarray(n_objects, np.int64),
        "masks": np.array(masks if with_masks else [], dtype=str),
        "class_names": np.array(dataset.classes, dtype=str),
        "names": np.array(dataset.names, dtype=str),
        "synthetic": np.array(dataset.synthetic),
    }


def dataset_from_arrays(arrays: dict[str, np.ndarray]) -> DetectionDataset:
    """The inverse of :func:`dataset_to_arrays`."""
    shapes = arrays["shapes"]
    images, objects = [], []
    pixel_at = object_at = 0
    with_masks = arrays["masks"].size == arrays["boxes"].shape[0]
    for (h, w, c), k in zip(shapes.tolist(), arrays["n_objects"].tolist(), strict=True):
        shape = (h, w, c) if c else (h, w)
        size = int(np.prod(shape))
        images.append(arrays["pixels"][pixel_at : pixel_at + size].reshape(shape))
        pixel_at += size
        masks: list[RLE] | None = (
            [{"size": [h, w], "counts": str(s)} for s in arrays["masks"][object_at : object_at + k]]
            if with_masks
            else None
        )
        objects.append(
            Objects(
                arrays["boxes"][object_at : object_at + k],
                arrays["classes"][object_at : object_at + k],
                masks=masks,
            )
        )
        object_at += k
    return DetectionDataset(
        images,
        objects,
        [str(c) for c in arrays["class_names"]],
        [str(n) for n in arrays["names"]],
        bool(arrays["synthetic"]),
    )
