"""A whole-slide image, imported as regions: each region at the chosen magnification is an item.

A slide (SVS, NDPI, MRXS, pyramidal TIFF, ...; see :mod:`exemplar.media.slides`) is far too
large to be one item. :class:`SlideSource` cuts it into square regions of
``options.region_size`` pixels at ``options.magnification`` (None: the slide's full
resolution), neighbours sharing ``options.region_overlap`` pixels, the last row and column
shifted inward so every region is whole (:func:`exemplar.media.slides.plan_regions`).

Background is not imported: each region is first read small (:data:`TISSUE_SIDE` pixels a
side, from a coarse pyramid level) and a region whose share of tissue
(:func:`exemplar.media.slides.tissue_fraction`) is below ``options.min_tissue`` is left
out and counted in a note, not reported as a problem. The others become image items:

* ``uid``: the SHA-256 of the slide's content hash, the region's level-0 origin, its scale
  and size, so importing the slide again adds nothing;
* ``uri``: ``"<slide path>#region=<x>,<y>,<w>,<h>"`` in level-0 pixels;
* ``width`` and ``height``: the region in item pixels (``region_size``), ``origin`` its
  top-left corner in level-0 pixels and ``scale`` the level-0 pixels per item pixel;
* ``media``: the slide's media row (kind ``slide``; size, microns per pixel, objective
  power, vendor and levels).

Their feature rows are computed from the region's pixels (read at the region's scale, in
the import's thread pool) only for regions not stored yet.

Given the slide's ``objects`` (level-0 pixels, e.g. its QuPath GeoJSON read by
:func:`exemplar.sources.slide_objects.slide_annotations`), each region carries the objects
that lie in it, clipped and in its item pixels
(:meth:`exemplar.sources.slide_objects.SlideObjects.region`), and is labeled
(:data:`~exemplar.store.annotations.OBJECTS_LABEL`) unless all its objects are a model's
proposals: the objects are taken as the slide's whole annotation, so a region with none is
labeled empty, as an image a COCO file lists with no objects is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from exemplar.errors import DatasetError
from exemplar.formats import AnnotatedImage, ObjectRecord
from exemplar.media.slides import (
    SlideInfo,
    open_slide,
    plan_regions,
    read_region,
    scale_for,
    slide_info,
    tissue_fraction,
)
from exemplar.sources.annotated import PixelRows, counts_as_labeled
from exemplar.sources.base import Chunk, Log, Problem, Record, Source, SourceOptions
from exemplar.sources.images import file_id
from exemplar.sources.slide_objects import SlideObjects
from exemplar.store.annotations import OBJECTS_LABEL
from exemplar.store.media import MediaRecord
from exemplar.store.schema import MediaKind

__all__ = ["HASHED_BYTES", "TISSUE_SIDE", "SlideSource", "slide_uid"]

#: The slide's content hash reads this many bytes at each end of the file.
HASHED_BYTES = 1 << 20
#: Regions are checked for tissue on a copy this many pixels a side.
TISSUE_SIDE = 64


def slide_uid(path: Path, quickhash: str | None = None) -> str:
    """The content hash of a slide: SHA-256 of its size and its first and last MiB.

    Slides are gigabytes, so the whole file is not read: its size and both ends (where
    TIFF-based formats keep their headers, directories and image descriptions) identify it.
    OpenSlide's own ``openslide.quickhash-1``, when given, is mixed in too (it covers the
    data files a MIRAX ``.mrxs`` index points to).
    """
    size = path.stat().st_size
    digest = hashlib.sha256(b"slide\0")
    digest.update(str(size).encode() + b"\0")
    with path.open("rb") as f:
        digest.update(f.read(HASHED_BYTES))
        if size > HASHED_BYTES:
            f.seek(max(HASHED_BYTES, size - HASHED_BYTES))
            digest.update(f.read(HASHED_BYTES))
    if quickhash:
        digest.update(b"\0" + quickhash.encode())
    return digest.hexdigest()


def region_uid(slide: str, x: int, y: int, scale: float, size: int) -> str:
    """The content hash of a region: its slide's hash, origin, scale and size."""
    text = f"region\0{slide}\0{x},{y}\0{scale!r}\0{size}"
    return hashlib.sha256(text.encode()).hexdigest()


class SlideSource(Source):
    """A whole-slide image cut into regions, each an image item (see the module docstring).

    Parameters
    ----------
    path : Path
        The slide.
    options : SourceOptions
        ``region_size``, ``magnification``, ``region_overlap`` and ``min_tissue``.
    rows : PixelRows
        Turns the regions' pixels into feature rows.
    dim : int
        Features per region.
    log : Log
        Receives the note on background regions and the regions that could not be read.
    objects : sequence of ObjectRecord, optional
        The slide's objects in level-0 pixels; each region carries those inside it (see
        the module docstring). None: the regions are imported unlabeled.

    Raises
    ------
    DatasetError
        The slide is missing or unreadable, or the options do not fit it (a magnification
        for a slide that records no objective power, a region size below 1, ...).
    """

    def __init__(
        self,
        path: Path,
        options: SourceOptions,
        rows: PixelRows,
        dim: int,
        log: Log,
        objects: Sequence[ObjectRecord] | None = None,
    ) -> None:
        if not 0.0 <= options.min_tissue <= 1.0:
            raise DatasetError(f"min_tissue must lie in [0, 1], got {options.min_tissue}")
        try:
            real = Path(os.path.realpath(path, strict=True))
            stat = real.stat()
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot read slide '{path}': {exc}") from exc
        self.path = Path(path)
        self.real = real
        self.rows = rows
        self.dim = dim
        self.log = log
        self.size = int(options.region_size)
        self.min_tissue = float(options.min_tissue)
        self.info: SlideInfo = slide_info(real)
        self.objects = None if objects is None else SlideObjects(objects)
        self.scale = scale_for(self.info, options.magnification)
        self.origins = plan_regions(self.info, self.scale, self.size, options.region_overlap)
        self.extent = max(1, round(self.size * self.scale))
        quickhash = open_slide(real).properties.get("openslide.quickhash-1")
        self.uid = slide_uid(real, quickhash)
        self.media = MediaRecord(
            uid=self.uid,
            kind=MediaKind.SLIDE.value,
            uri=str(real),
            file_id=file_id(stat),
            width=self.info.width,
            height=self.info.height,
            properties=self.info.properties(),
        )
        self.check_readable()
        at = "full resolution" if options.magnification is None else f"{options.magnification:g}x"
        self.what = f"regions of {self.size} px at {at} of slide '{path}'"
        self.total = len(self.origins)
        self.background = 0
        log.note(
            f"slide '{path}': {self.info.width}x{self.info.height} px, {self.info.levels} "
            f"level(s), cut into {len(self.origins)} region(s) of {self.size} px at {at} "
            f"(scale {self.scale:g})"
        )

    def check_readable(self) -> None:
        """Read one small region so that a slide whose pixels cannot be decoded fails now,
        before anything is imported."""
        x, y = self.origins[0]
        read_region(self.real, (x, y), self.extent / TISSUE_SIDE, TISSUE_SIDE)

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        for start in range(0, len(self.origins), size):
            part = self.origins[start : start + size]
            records = []
            for (x, y), shown in zip(part, pool.map(self._tissue, part), strict=True):
                if isinstance(shown, str):
                    self.log.skip(Problem(self._where(x, y), shown, "unreadable file"))
                elif shown < self.min_tissue:
                    self.background += 1
                else:
                    records.append(self._record(x, y))
            yield Chunk(records, None, start + len(part), featurize=self._featurize)
        if self.background:
            self.log.note(
                f"slide '{self.path}': {self.background} of {len(self.origins)} region(s) "
                f"are background (tissue below {self.min_tissue:.0%}) and were not imported"
            )

    def _where(self, x: int, y: int) -> str:
        return f"{self.path}#region={x},{y},{self.extent},{self.extent}"

    def _tissue(self, origin: tuple[int, int]) -> float | str:
        try:
            small = read_region(self.real, origin, self.extent / TISSUE_SIDE, TISSUE_SIDE)
        except DatasetError as exc:
            return str(exc)
        return tissue_fraction(small, stride=1)

    def _record(self, x: int, y: int) -> Record:
        label = objects = None
        if self.objects is not None:
            objects = self.objects.region((x, y), self.scale, self.size)
            region = AnnotatedImage(self.real, self.size, self.size, objects)
            label = OBJECTS_LABEL if counts_as_labeled(region) else None
        return Record(
            uid=region_uid(self.uid, x, y, self.scale, self.size),
            uri=f"{self.real}#region={x},{y},{self.extent},{self.extent}",
            where=self._where(x, y),
            kind="image",
            label=label,
            objects=objects,
            file_id=self.media.file_id,
            width=self.size,
            height=self.size,
            media=self.media,
            origin=(x, y),
            scale=self.scale,
        )

    def _read(self, record: Record) -> np.ndarray | str:
        assert record.origin is not None
        try:
            return read_region(self.real, record.origin, self.scale, self.size)
        except DatasetError as exc:
            return str(exc)

    def _featurize(
        self, records: list[Record], pool: ThreadPoolExecutor
    ) -> tuple[list[int], np.ndarray]:
        done: list[int] = []
        pixels: list[np.ndarray] = []
        for i, read in enumerate(pool.map(self._read, records)):
            if isinstance(read, str):
                self.log.skip(Problem(records[i].where, read, "unreadable file"))
                continue
            done.append(i)
            pixels.append(read)
        if not pixels:
            return done, np.empty((0, self.dim), np.float32)
        return done, self.rows(pixels)
