"""Real nuclei and micronuclei: the annotated images shipped in the mnfinder wheel.

mnfinder==1.2.3 (MIT) carries 49 single-channel fluorescence images of DNA-stained cells
(RPE-1, U2OS, HeLa, MCC13, HFF) with instance masks of nuclei and micronuclei. The files
are read directly; mnfinder itself is never imported (it imports TensorFlow).

Layout (found under ``mnfinder_root()``): ``<set>-data/<batch>/images/<name>.png`` with
``nucleus_masks/<name>.png`` and ``mn_masks/<name>.png`` of the same name, for the sets
``training`` (30 images), ``validation`` (3) and ``test`` (16). Images are 8-bit (mode
``L``) or 16-bit (mode ``I;16``; the eight U2OS images), 768x869, 512x512 or 1024x1024.

Mask encoding (checked on every file): masks are RGBA ``uint8`` with alpha 0 or 255. In a
nucleus mask, red is 255 wherever alpha is, and the **blue** channel is the nucleus id.
In a micronucleus mask, blue is the id of the parent nucleus and **green** a colour, so a
micronucleus is a (green, blue) pair. Two findings matter:

- one id is not always one object: 596 of the 1,800 (green, blue) pairs cover two or more
  separate 8-connected blobs (one image draws every micronucleus green 255, so all micronuclei of a cell share
  a pair), and 28 nucleus ids cover two separate regions (one image reuses ids 9-28 for
  two nuclei each). mnfinder's own training code labels connected components of each
  pair (``skimage.measure.label``), so by default an instance here is an 8-connected
  component of one id (``instances="components"``); ``instances="ids"`` keeps one
  instance per id or pair instead;
- seven alpha regions in nucleus masks have blue 0 (no id; mnfinder skips id 0): they are
  left out. Micronuclei are kept whatever their blue (parent) value: 8 pairs have blue 0
  and 26 name a parent absent from the nucleus mask.

Counts over the 49 images (``min_area=1``): ``instances="ids"`` gives 3,195 nuclei and
1,800 micronucleus pairs (one of them with green 0); ``instances="components"`` gives
3,226 nuclei and 2,651 micronuclei. The default ``min_area=4`` drops specks of 1-3 pixels
(see :func:`load_nuclei`). Median box width: nuclei 29 px, micronuclei 6 px.

Images are stored as ``uint8``; by default each image is normalized by its own 1st and
99.8th percentiles (16-bit images have about 0.1 % of pixels saturated at 65535, and all
images are dim: median about 3.5 % of full scale), as microscopy pipelines do (mnfinder
uses percentiles 4 and 99).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from exemplar.data.cache import default_cache_dir, load_arrays, save_arrays
from exemplar.data.detection import (
    DetectionDataset,
    Normalize,
    dataset_from_arrays,
    dataset_to_arrays,
    fit_to_side,
    grid_tiles,
    rle_from_crop,
    to_uint8,
)
from exemplar.data.detection import (
    tile as tile_dataset,
)
from exemplar.errors import DatasetError
from exemplar.objects import Objects

__all__ = [
    "INSTALL_HINT",
    "NUCLEI_CLASSES",
    "NUCLEI_SETS",
    "decode_instances",
    "load_nuclei",
    "mnfinder_root",
    "nuclei_files",
    "nuclei_tiles",
]

logger = logging.getLogger(__name__)

#: How to install the wheel that carries the images (never import it: it pulls TensorFlow).
INSTALL_HINT = "pip install --no-deps mnfinder==1.2.3"
#: The two classes, in this order: class 0 is a nucleus, class 1 a micronucleus.
NUCLEI_CLASSES = ("nucleus", "micronucleus")
#: The sets, as the wheel splits them.
NUCLEI_SETS = ("training", "validation", "test")
# Bump when decoding or the cached layout changes.
_VERSION = 1

Instances = Literal["components", "ids"]
_EIGHT = np.ones((3, 3), bool)


def mnfinder_root() -> Path:
    """The mnfinder package folder, found without importing mnfinder.

    Raises
    ------
    DatasetError
        If mnfinder is not installed or its wheel has no ``*-data`` folders.
    """
    try:
        spec = importlib.util.find_spec("mnfinder")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise DatasetError(
            f"the nuclei dataset needs mnfinder, which is not installed; run: {INSTALL_HINT}"
        )
    root = Path(folders[0])
    if not any(root.glob("*-data")):
        raise DatasetError(
            f"mnfinder at '{root}' has no *-data folders (not the 1.2.3 wheel?); run: {INSTALL_HINT}"
        )
    return root


def nuclei_files(sets: Sequence[str] = NUCLEI_SETS) -> list[tuple[str, Path, Path, Path]]:
    """``(name, image, nucleus mask, micronucleus mask)`` of every image of ``sets``, sorted.

    ``name`` is ``"<set>/<batch>/<file stem>"``.

    Raises
    ------
    DatasetError
        For an unknown set, or an image whose masks are missing.
    """
    unknown = [s for s in sets if s not in NUCLEI_SETS]
    if unknown or not sets:
        raise DatasetError(
            f"unknown nuclei set(s) {unknown or list(sets)}; choose from {NUCLEI_SETS}"
        )
    root = mnfinder_root()
    found = []
    for set_name in dict.fromkeys(sets):
        for image in sorted((root / f"{set_name}-data").glob("*/images/*.png")):
            batch = image.parent.parent
            nuc, mn = batch / "nucleus_masks" / image.name, batch / "mn_masks" / image.name
            for mask in (nuc, mn):
                if not mask.is_file():
                    raise DatasetError(f"{image}: its mask {mask} is missing")
            found.append((f"{set_name}/{batch.name}/{image.stem}", image, nuc, mn))
    return found


def _read_rgba(path: Path, shape: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGBA") if im.mode != "RGBA" else im)
    if arr.shape[:2] != shape:
        raise DatasetError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, image is {shape[1]}x{shape[0]}"
        )
    return arr


def _instances_of(
    ids: np.ndarray, instances: Instances, min_area: int
) -> list[tuple[int, int, np.ndarray]]:
    """``(top, left, crop mask)`` of each instance of a label image (0 = background)."""
    found: list[tuple[int, int, np.ndarray]] = []
    for label, window in enumerate(ndimage.find_objects(ids), start=1):
        if window is None:
            continue
        region = ids[window] == label
        top, left = window[0].start, window[1].start
        if instances == "ids":
            if region.sum() >= min_area:
                found.append((top, left, region))
            continue
        parts, _ = ndimage.label(region, structure=_EIGHT)
        for j, part in enumerate(ndimage.find_objects(parts), start=1):
            crop = parts[part] == j
            if crop.sum() >= min_area:
                found.append((top + part[0].start, left + part[1].start, crop))
    return found


def decode_instances(
    nucleus_rgba: np.ndarray,
    mn_rgba: np.ndarray,
    *,
    instances: Instances = "components",
    min_area: int = 4,
) -> list[list[tuple[int, int, np.ndarray]]]:
    """Instances of the two classes from mnfinder's RGBA masks (see the module docstring).

    Returns
    -------
    list of two lists
        ``[nuclei, micronuclei]``, each a list of ``(top, left, crop mask)``.
    """
    if instances not in ("components", "ids"):
        raise DatasetError(f"instances must be 'components' or 'ids', got {instances!r}")
    nuc_alpha = nucleus_rgba[..., 3] > 0
    nuc_ids = np.where(nuc_alpha, nucleus_rgba[..., 2], 0).astype(np.int32)
    mn_alpha = mn_rgba[..., 3] > 0
    # (green, blue) pairs -> dense labels 1..k through a lookup table (0 = background)
    pair = np.where(mn_alpha, mn_rgba[..., 1].astype(np.int32) * 256 + mn_rgba[..., 2] + 1, 0)
    present = np.bincount(pair.ravel(), minlength=256 * 256 + 1) > 0
    present[0] = False
    lookup = np.where(present, np.cumsum(present), 0).astype(np.int32)
    mn_ids = lookup[pair]
    return [
        _instances_of(nuc_ids, instances, min_area),
        _instances_of(mn_ids, instances, min_area),
    ]


def _decode_all(
    sets: Sequence[str],
    classes: Sequence[str],
    normalize: Normalize,
    instances: Instances,
    min_area: int,
) -> DetectionDataset:
    keep = [NUCLEI_CLASSES.index(c) for c in classes]
    images, objects, names = [], [], []
    for name, image_path, nuc_path, mn_path in nuclei_files(sets):
        with Image.open(image_path) as im:
            raw = np.asarray(im)
        if raw.ndim == 3:  # never seen in 1.2.3; take the first channel of a colour file
            raw = raw[..., 0]
        shape = raw.shape[:2]
        per_class = decode_instances(
            _read_rgba(nuc_path, shape),
            _read_rgba(mn_path, shape),
            instances=instances,
            min_area=min_area,
        )
        boxes, labels, masks = [], [], []
        for new_index, source_index in enumerate(keep):
            for top, left, crop in per_class[source_index]:
                rows, cols = np.flatnonzero(crop.any(axis=1)), np.flatnonzero(crop.any(axis=0))
                boxes.append(
                    (left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1)
                )
                labels.append(new_index)
                masks.append(rle_from_crop(crop, top, left, *shape))
        images.append(to_uint8(raw, normalize))
        objects.append(
            Objects(
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(labels, np.int64),
                masks=masks,
            )
        )
        names.append(name)
    return DetectionDataset(images, objects, list(classes), names, synthetic=False)


def _cached(
    key: str, cache_dir: Path | None, use_cache: bool, build: Callable[[], DetectionDataset]
) -> DetectionDataset:
    if not use_cache:
        return build()
    try:
        version = importlib.metadata.version("mnfinder")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    full_key = f"nuclei;v={_VERSION};mnfinder={version};{key}"
    digest = hashlib.sha256(full_key.encode()).hexdigest()[:16]
    path = (cache_dir if cache_dir is not None else default_cache_dir()) / f"nuclei-{digest}.npz"
    arrays = load_arrays(path, full_key)
    if arrays is not None:
        try:
            return dataset_from_arrays(arrays)
        except (KeyError, ValueError, DatasetError) as exc:
            logger.warning("ignoring malformed cache file %s (%s); rebuilding it", path, exc)
    started = time.perf_counter()
    dataset = build()
    logger.info(
        "decoded the nuclei dataset in %.1f s; caching it in %s",
        time.perf_counter() - started,
        path,
    )
    save_arrays(path, dataset_to_arrays(dataset), full_key)
    return dataset


def _check_classes(classes: Sequence[str]) -> list[str]:
    names = [str(c) for c in classes]
    bad = [c for c in names if c not in NUCLEI_CLASSES]
    if bad or not names or len(set(names)) != len(names):
        raise DatasetError(
            f"nuclei classes must be distinct names from {NUCLEI_CLASSES}, got {names}"
        )
    return names


def load_nuclei(
    sets: Sequence[str] = NUCLEI_SETS,
    *,
    classes: Sequence[str] = NUCLEI_CLASSES,
    tile: int | None = None,
    overlap: int = 0,
    min_visible: float = 0.5,
    normalize: Normalize = "percentile",
    instances: Instances = "components",
    min_area: int = 4,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
) -> DetectionDataset:
    """The mnfinder nuclei and micronuclei as a :class:`DetectionDataset` (real data).

    Parameters
    ----------
    sets : sequence of str
        Any of ``"training"``, ``"validation"``, ``"test"``.
    classes : sequence of str
        Which of ``"nucleus"``, ``"micronucleus"`` to keep, in the order wanted.
    tile : int, optional
        Cut the images into ``tile x tile`` tiles (:func:`exemplar.data.detection.tile`,
        edge tiles shifted inward) with ``overlap`` and ``min_visible``.
    normalize : {"percentile", "dtype"}
        How 8- and 16-bit images become ``uint8``
        (:func:`exemplar.data.detection.normalize_intensity`).
    instances : {"components", "ids"}
        An instance is an 8-connected component of one id (default, as mnfinder's own
        training code), or one whole id / (green, blue) pair.
    min_area : int
        Instances of fewer pixels are dropped (stray annotation specks).
    cache_dir : path, optional
        Where the decoded dataset is cached (decoding takes several seconds); defaults to
        :func:`exemplar.data.cache.default_cache_dir`.
    use_cache : bool
        False decodes the files every time and writes no cache.

    Returns
    -------
    DetectionDataset
        ``synthetic=False``; images named ``"<set>/<batch>/<stem>"`` (tiles
        ``"...@y<top>x<left>"``); boxes from the masks' tight extents.
    """
    names = _check_classes(classes)
    if normalize not in ("percentile", "dtype"):
        raise DatasetError(f"normalize must be 'percentile' or 'dtype', got {normalize!r}")
    if instances not in ("components", "ids"):
        raise DatasetError(f"instances must be 'components' or 'ids', got {instances!r}")
    set_list = list(dict.fromkeys(sets))
    nuclei_files(set_list)  # validates the sets and finds the files before any cache look-up
    folder = Path(cache_dir).expanduser() if cache_dir is not None else None
    key = f"sets={set_list};classes={names};normalize={normalize};instances={instances};min_area={min_area}"
    dataset = _cached(
        key,
        folder,
        use_cache,
        lambda: _decode_all(set_list, names, normalize, instances, min_area),
    )
    if tile is not None:
        dataset = tile_dataset(dataset, tile, overlap=overlap, min_visible=min_visible)
    return dataset


def nuclei_tiles(
    *,
    grid: int = 2,
    side: int = 256,
    sets: Sequence[str] = NUCLEI_SETS,
    classes: Sequence[str] = NUCLEI_CLASSES,
    min_visible: float = 0.5,
    normalize: Normalize = "percentile",
    instances: Instances = "components",
    min_area: int = 4,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
) -> DetectionDataset:
    """About 200 annotated tiles of the real nuclei, small enough for active-learning curves.

    Recipe: every image of ``sets`` is cut into a ``grid x grid`` grid of equal tiles
    (:func:`exemplar.data.detection.grid_tiles`; 768x869 images give 384x435 tiles), each
    tile is resized so its longer side is ``side`` (Pillow bilinear; masks nearest-neighbour,
    boxes scaled) and objects less than ``min_visible`` inside a tile are dropped there.
    With the defaults, 49 images give 196 tiles. The tiles are cached.

    Parameters are those of :func:`load_nuclei`, plus ``grid`` (tiles per side) and
    ``side`` (``S``, the longer side of each tile).
    """
    if grid < 1 or side < 1:
        raise DatasetError(f"grid and side must be positive, got {grid}, {side}")
    names = _check_classes(classes)
    set_list = list(dict.fromkeys(sets))
    nuclei_files(set_list)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else None

    def build() -> DetectionDataset:
        full = load_nuclei(
            set_list,
            classes=names,
            normalize=normalize,
            instances=instances,
            min_area=min_area,
            cache_dir=folder,
            use_cache=use_cache,
        )
        return fit_to_side(grid_tiles(full, grid, grid, min_visible=min_visible), side)

    key = (
        f"tiles;grid={grid};side={side};min_visible={min_visible};sets={set_list};"
        f"classes={names};normalize={normalize};instances={instances};min_area={min_area}"
    )
    return _cached(key, folder, use_cache, build)
