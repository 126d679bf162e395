"""``exemplar import``: the orchestration (which source, which writer, what to report).

The formats live in :mod:`exemplar.sources` (one module each; the registry picks one per
path), the featurizers in :mod:`exemplar.sources.features` and the batch writer in
:mod:`exemplar.sources.writer`. What an import guarantees:

* **Content hashes.** ``Item.uid`` is the SHA-256 (hex) of the item's content, so importing
  the same data twice adds nothing (the second time, every item counts as a duplicate):

  - image: the file's bytes (the value ``sha256sum`` prints);
  - text: ``b"text\\0"`` followed by the UTF-8 text, exactly as read (no stripping);
  - feature row: ``b"features\\0"`` followed by the row as little-endian float32 bytes, i.e.
    the values after conversion to float32 (two rows equal in float32 are the same item).

  A duplicate is left as it is: its label in the input is not applied (relabeling is the
  oracle's job, not the importer's).

* **Bad input is reported, never fatal, never silent.** A corrupt image, a malformed CSV line,
  a non-finite value, an empty text or a label naming a class the project lacks skips that one
  row or file and is listed in :attr:`ImportReport.skipped` with where it was (``"a.csv:17"``
  for line 17 of a CSV file, ``"a.npz#row5"`` for row 5 (0-based) of an array or Parquet
  file, or the image's path) and why. Problems with the whole input (a missing path, a
  binary file given as CSV, an unreadable header, a named column that does not exist,
  features of the wrong dimension) raise :class:`~exemplar.errors.DatasetError` or
  :class:`~exemplar.errors.ProjectError` before anything is written.

* **Images stay inside the imported folder.** Each image's real path (symbolic links
  resolved) is its URI; a link to a file or folder outside the imported folder is skipped
  and reported. Large images are decoded at a reduced scale or strip by strip, and images
  above ``[data] max_image_pixels`` are skipped and reported.

* **One transaction per batch** of ``rows_per_transaction`` items (see
  :mod:`exemplar.sources.writer`): a crash loses at most the batch in flight.

* **Bounded memory.** CSV and Parquet files are streamed batch by batch; ``.npy`` files are
  memory-mapped; images are decoded one batch at a time (``.npz`` archives are read whole,
  as zip members cannot be memory-mapped).

Featurization (the feature dimension is fixed by the project's first import):

* images: grayscale, resized to ``[data] image_size`` squared with Pillow (bilinear,
  antialiased), scaled to [0, 1] and flattened (``image_size ** 2`` features);
* text, ``[data] text_encoder = "hashing"`` (default): scikit-learn's stateless
  ``HashingVectorizer(n_features=[data] text_features, alternate_sign=False, norm="l2")``
  as dense float32; ``"minilm"``: frozen MiniLM sentence embeddings (384 float32), cached
  per content hash in the project's ``cache/embeddings`` (see :func:`text_featurizer`);
* feature rows: the values as given, stored as float32.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from exemplar.data.detection import tile_image, to_rows
from exemplar.errors import ConfigError, DatasetError
from exemplar.formats import AnnotatedImage, ObjectRecord
from exemplar.objects import Objects, outline_mask
from exemplar.sources.annotated import (
    AnnotatedSource,
    PixelRows,
    counts_as_labeled,
    read_pixels,
)
from exemplar.sources.base import PROBLEM_KINDS, Problem, Source, SourceOptions
from exemplar.sources.features import TextFeaturizer, grey_features, hashing_featurizer
from exemplar.sources.registry import open_source
from exemplar.sources.writer import BatchWriter, LabelsAs, Written, check_dim

if TYPE_CHECKING:  # the facade calls this module; a type hint only, not a cycle
    from exemplar.project.project import Project

__all__ = ["ImportReport", "LabelsAs", "import_path", "text_featurizer"]

ProgressCallback = Callable[[int, int | None], None]

#: What ``--labels-as ground_truth`` does, in words.
GROUND_TRUTH_MEANING = "hidden from the model, for the simulated oracle"


@dataclass
class ImportReport:
    """What one :func:`import_path` call did.

    Attributes
    ----------
    added : int
        Items written (committed).
    duplicates : int
        Items not added again: their content hash was already in the project, or repeated
        within the input.
    skipped : list of (str, str)
        ``(where, why)`` for each row or file not imported: ``"a.csv:17"`` (line 17),
        ``"a.npz#row5"`` (0-based row), or a file path.
    skipped_kinds : dict of str to int
        How many of ``skipped`` are of each sort (see ``exemplar.sources.base.PROBLEM_KINDS``).
    labeled : int
        Verified labels written (``labels_as="labels"``).
    ground_truth : int
        Ground truths set (``labels_as="ground_truth"``): hidden from the model, read only
        by the simulated oracle; these items are not labeled.
    labels_as : str
        How the input's labels were stored.
    kinds : dict of str to int
        Items added by kind (``image``, ``text``, ``features``).
    notes : list of str
        Facts about how the input was read (ignored columns, the text column used, ...).
    objects : int
        Objects (boxes, outlines) stored with the images of a detection or segmentation
        project.
    """

    added: int = 0
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_kinds: dict[str, int] = field(default_factory=dict)
    labeled: int = 0
    ground_truth: int = 0
    labels_as: str = "labels"
    kinds: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    objects: int = 0

    def skip(self, problem: Problem) -> None:
        """Record a row or file not imported (the sources' :class:`~exemplar.sources.Log`)."""
        self.skipped.append((problem.where, problem.reason))
        self.skipped_kinds[problem.kind] = self.skipped_kinds.get(problem.kind, 0) + 1

    def note(self, text: str) -> None:
        """Record a fact about how the input was read."""
        self.notes.append(text)

    def add(self, written: Written) -> None:
        """Count what the writer committed."""
        self.objects += written.objects
        self.added += written.added
        self.duplicates += written.duplicates
        if self.labels_as == "ground_truth":
            self.ground_truth += written.labeled
        else:
            self.labeled += written.labeled
        for kind, n in written.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n

    def lines(self) -> list[str]:
        """What happened, for people: added and labeled, duplicates, skipped by sort."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items()))
        added = (
            f"added {self.added} item(s){f' ({kinds})' if kinds else ''}, {self.labeled} labeled"
        )
        if self.labels_as == "ground_truth":
            added += f", {self.ground_truth} with ground truth ({GROUND_TRUTH_MEANING})"
        if self.objects:
            added += f", {self.objects} object(s)"
        lines = [added]
        if self.duplicates:
            lines.append(
                f"{self.duplicates} duplicate(s) not added again (same content as an item "
                "already in the project, or repeated in this input)"
            )
        if self.skipped:
            counts = sorted(self.skipped_kinds.items(), key=lambda kv: (-kv[1], kv[0]))
            sorts = ", ".join(f"{n} {PROBLEM_KINDS.get(k, k)}" for k, n in counts)
            lines.append(f"{len(self.skipped)} not imported: {sorts}")
        return lines

    def summary(self) -> str:
        """One line for people (:meth:`lines` joined)."""
        return "; ".join(self.lines())


def import_path(
    project: Project,
    path: Path | str,
    *,
    label_column: str | int | None = None,
    text_column: str | None = None,
    labels_as: LabelsAs = "labels",
    rows_per_transaction: int = 2000,
    on_progress: ProgressCallback | None = None,
    folder_labels: bool = True,
    batch_size: int | None = None,
    annotation_format: str | None = None,
    magnification: float | None = None,
    region_size: int | None = None,
    frame_step: int | None = None,
    objects: Path | str | None = None,
) -> ImportReport:
    """Import a folder of images, a CSV/Parquet table or an ``.npy``/``.npz`` file.

    Parameters
    ----------
    project : Project
        The open project to import into.
    path : path-like
        A folder of images (searched recursively; with ``folder_labels``, the name of each
        first-level subfolder is the label of the images under it), a single image, a
        ``.csv`` or ``.parquet`` table (header row required), or an ``.npy``/``.npz`` file
        (read as the simulator reads it: ``X``/``features`` plus ``y``/``labels``).
        :mod:`exemplar.sources.registry` decides which format reads it.
    label_column : str or int, optional
        Tables: the label column (name or 0-based index); by default a column named
        ``label``, ``class``, ``target`` or ``y`` (case-insensitive), else unlabeled.
        Arrays: as in :func:`exemplar.data.user.load_user_file`. An empty label cell
        leaves that row unlabeled.
    text_column : str, optional
        Tables: import the texts of this column (one text item per row) instead of numeric
        features. By default a non-numeric column named ``text`` selects text mode.
    labels_as : {"labels", "ground_truth"}
        ``"labels"``: each label becomes a verified label from source ``import`` (the item
        counts as labeled). ``"ground_truth"``: the label is stored in ``Item.ground_truth``,
        hidden from strategies and read only by the simulated oracle.
    rows_per_transaction : int
        Items written per database transaction (not the selection's ``batch_size``).
    on_progress : callable, optional
        Called after each transaction with ``(processed, total)``: inputs (rows or files)
        seen so far, and their total when known in advance (None for CSV and Parquet).
    folder_labels : bool
        Folders: take first-level subfolder names as labels. Set False for folders organized
        by something other than class (every image is then unlabeled).
    batch_size : int, optional
        The former name of ``rows_per_transaction``, still accepted.
    annotation_format : {"coco", "yolo", "voc", "labelstudio"}, optional
        Detection and segmentation projects: the format of ``path`` (detected when None).
        Each image's objects are stored as annotations with their status and provenance
        (``labels_as="ground_truth"``: hidden, for the simulated oracle); a folder with no
        annotation file imports its images unlabeled.
    magnification, region_size, frame_step : optional
        Override ``[data]``'s values for this import: a whole-slide image (``.svs``,
        ``.ndpi``, ``.mrxs``, a tiled pyramidal TIFF, ...) is cut into regions of
        ``region_size`` pixels at ``magnification`` (docs/slides.md); a video (``.mp4``,
        ``.avi``, ``.mov``, ``.mkv``, ``.webm``) imports every ``frame_step``-th frame
        (docs/video.md).
    objects : path-like, optional
        A slide's objects as GeoJSON (QuPath's export, level-0 pixels); without it the
        sidecar ``<slide>.geojson`` (or ``<slide stem>.geojson``) beside the slide is read
        when there is one. Each region carries the objects inside it and is labeled
        (``labels_as="ground_truth"``: hidden truth for the simulated oracle).

    Returns
    -------
    ImportReport

    Raises
    ------
    DatasetError
        The path is missing or of an unsupported type, or a whole file cannot be read (bad
        header, binary content, unknown named column, no feature columns, ...). Nothing
        was imported.
    ProjectError
        The input's feature dimension differs from the project's.
    StoreError
        The database refused a batch; earlier batches stay committed.
    """
    if labels_as not in ("labels", "ground_truth"):
        raise ConfigError(f"labels_as must be 'labels' or 'ground_truth', got {labels_as!r}")
    name, size = "rows_per_transaction", rows_per_transaction
    if batch_size is not None:
        name, size = "batch_size", batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{name} must be a positive integer, got {size!r}")
    path = Path(path)
    data = project.config.data
    report = ImportReport(labels_as=labels_as)
    options = SourceOptions(
        label_column=label_column,
        text_column=text_column,
        folder_labels=folder_labels,
        image_size=data.image_size,
        max_image_pixels=data.max_image_pixels,
        text_featurizer=lambda: text_featurizer(project),
        region_size=data.region_size if region_size is None else region_size,
        magnification=data.magnification if magnification is None else magnification,
        region_overlap=data.region_overlap,
        min_tissue=data.min_tissue,
        frame_step=data.frame_step if frame_step is None else frame_step,
        media_dir=project.root / "media",
    )
    _check_media_options(options)
    objects_path = None if objects is None else Path(objects)
    source = _open(project, path, options, report, annotation_format, objects_path)
    check_dim(project.feature_dim, source.dim, source.what)
    if labels_as == "ground_truth" and project.config.oracle.kind != "simulated":
        report.note(
            f"the project's oracle is {project.config.oracle.kind!r}: ground truth is read "
            'only by the simulated oracle ([oracle] kind = "simulated")'
        )
    writer = BatchWriter(project.db, project.arrays, project.classes, source.dim, labels_as, report)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for chunk in source.chunks(size, pool):
            report.add(writer.write(chunk, pool))
            if on_progress is not None:
                on_progress(chunk.progress, source.total)
    report.skipped.sort(key=lambda entry: _natural_key(entry[0]))
    return report


def _open(
    project: Project,
    path: Path,
    options: SourceOptions,
    report: ImportReport,
    annotation_format: str | None,
    objects: Path | None = None,
) -> Source:
    """The source reading ``path``: slides and videos by their suffix, annotated images for
    object tasks, else by file type."""
    media = _media_source(project, path, options, report, objects)
    if media is not None:
        return media
    if objects is not None:
        raise ConfigError(_not_a_slide(objects, path))
    if not project.config.project.objects:
        if annotation_format is not None:
            raise ConfigError(
                f"format {annotation_format!r} imports objects; this project's task is "
                f"{project.config.project.task!r} (start one with `exemplar init --task detection`)"
            )
        return open_source(path, options, report)
    if not path.exists():
        raise DatasetError(f"nothing to import: '{path}' does not exist")
    data = project.config.data
    side, channels = data.image_side, data.channels

    def rows(images: Sequence[np.ndarray]) -> np.ndarray:
        return to_rows(images, side, channels)[0]

    expand = None
    if data.tile_size is not None:
        expand = ImageTiler(
            project.root / "tiles", project.classes, data.tile_size, data.tile_overlap
        )
    return AnnotatedSource(
        path, project.classes, rows, channels * side * side, report, annotation_format, expand
    )


#: Suffixes of whole-slide formats (a ``.tif``/``.tiff`` is a slide when it is a tiled
#: pyramid: :func:`exemplar.media.slides.is_slide`).
SLIDE_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


def _check_media_options(options: SourceOptions) -> None:
    if options.region_size < 32:
        raise ConfigError(f"region_size must be at least 32 pixels, got {options.region_size}")
    if options.magnification is not None and not options.magnification > 0:
        raise ConfigError(f"magnification must be positive, got {options.magnification}")
    if options.frame_step < 1:
        raise ConfigError(f"frame_step must be a positive integer, got {options.frame_step}")


def _media_source(
    project: Project,
    path: Path,
    options: SourceOptions,
    report: ImportReport,
    objects: Path | None = None,
) -> Source | None:
    """A slide's regions or a video's frames, when ``path`` is one; else None."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix not in SLIDE_SUFFIXES | VIDEO_SUFFIXES | {".tif", ".tiff"}:
        return None
    if not path.exists():
        raise DatasetError(f"nothing to import: '{path}' does not exist")
    video = suffix in VIDEO_SUFFIXES
    _require(("av", "cv2") if video else ("openslide",), "video" if video else "slides")
    if suffix in {".tif", ".tiff"}:
        from exemplar.media.slides import is_slide

        if not is_slide(path):
            return None
    rows, dim = _pixel_rows(project)
    if suffix in VIDEO_SUFFIXES:
        from exemplar.sources.video import VideoSource

        if objects is not None:
            raise ConfigError(_not_a_slide(objects, path))

        return VideoSource(path, options, rows, dim, report)
    from exemplar.sources.slide_objects import slide_annotations
    from exemplar.sources.slides import SlideSource

    # objects drawn on the slide (QuPath GeoJSON beside it): each region gets its share
    if objects is not None and not project.config.project.objects:
        raise ConfigError(
            f"a slide's objects ({objects}) import into a detection or segmentation project; "
            f"this project's task is {project.config.project.task!r}"
        )
    found = (
        slide_annotations(path, project.classes, report, objects)
        if project.config.project.objects
        else None
    )
    return SlideSource(path, options, rows, dim, report, objects=found)


def _not_a_slide(objects: Path, path: Path) -> str:
    return f"a GeoJSON of objects ({objects}) goes with a whole-slide image; '{path}' is not one"


def _require(modules: Sequence[str], extra: str) -> None:
    """Raise a clear error when an optional package of ``extra`` is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DatasetError(
            f"importing {'videos' if extra == 'video' else 'whole-slide images'} needs "
            f"{', '.join(missing)}: pip install 'exemplar[{extra}]'"
        )


def _pixel_rows(project: Project) -> tuple[PixelRows, int]:
    """How decoded images become feature rows here, and how many features each has: the
    detector's padded pixels for object tasks, grey ``image_size`` squared otherwise."""
    data = project.config.data
    if project.config.project.objects:
        side, channels = data.image_side, data.channels

        def detector_rows(images: Sequence[np.ndarray]) -> np.ndarray:
            return to_rows(images, side, channels)[0]

        return detector_rows, channels * side * side
    size = data.image_size

    def grey_rows(images: Sequence[np.ndarray]) -> np.ndarray:
        return grey_features(images, size)

    return grey_rows, size * size


class ImageTiler:
    """Cuts an annotated image larger than ``tile_size`` into tile files, each one item.

    Tiles are cut as :func:`exemplar.data.detection.tile` cuts them (edge tiles shifted
    inward; an object kept in a tile when at least half its box lies inside, clipped to
    it) and written as PNG files named ``<image>-<hash>@y<top>x<left>.png`` into
    ``folder`` (the same bytes each time, so importing the image again adds nothing).
    Objects keep their status and provenance. An image within ``tile_size`` is imported
    whole.
    """

    def __init__(self, folder: Path, classes: Sequence[str], tile_size: int, overlap: int) -> None:
        self.folder = folder
        self.classes = list(classes)
        self.tile_size = tile_size
        self.overlap = overlap

    def __call__(self, image: AnnotatedImage) -> list[AnnotatedImage]:
        if image.width and image.height and max(image.width, image.height) <= self.tile_size:
            return [image]
        pixels = read_pixels(image.path)
        height, width = pixels.shape[:2]
        if max(height, width) <= self.tile_size:
            return [image]
        if image.width and image.height and (image.width, image.height) != (width, height):
            raise ValueError(
                f"the annotations say the image is {image.width}x{image.height}, the file is "
                f"{width}x{height}: its objects would be misplaced"
            )
        labeled = counts_as_labeled(image)
        groups = _provenance_groups(image.objects, self.classes, (height, width))
        cuts: dict[tuple[int, int], tuple[np.ndarray, list[ObjectRecord]]] = {}
        size = (self.tile_size, self.tile_size)
        for (status, source, annotator, version), objs in groups:
            for top, left, window, kept in tile_image(pixels, objs, size, overlap=self.overlap):
                entry = cuts.setdefault((top, left), (window, []))
                entry[1].extend(
                    ObjectRecord(
                        self.classes[int(c)],
                        tuple(float(v) for v in box),  # type: ignore[arg-type]
                        rle=None if kept.masks is None else dict(kept.masks[k]),
                        score=None if kept.scores is None else float(kept.scores[k]),
                        status=status,
                        source=source,
                        annotator=annotator,
                        model_version=version,
                    )
                    for k, (box, c) in enumerate(zip(kept.boxes, kept.classes, strict=True))
                )
        if not groups:  # no objects: tiles of pixels only
            for top, left, window, _ in tile_image(
                pixels, Objects.empty(), size, overlap=self.overlap
            ):
                cuts[(top, left)] = (window, [])
        # The tile names carry the image's content hash: a changed image gets new tiles.
        digest = hashlib.sha256(image.path.read_bytes()).hexdigest()[:12]
        self.folder.mkdir(parents=True, exist_ok=True)
        tiles = []
        for (top, left), (window, records) in sorted(cuts.items()):
            path = self.folder / f"{image.path.stem}-{digest}@y{top}x{left}.png"
            if not path.exists():
                _save_png(window, path)
            tiles.append(
                AnnotatedImage(
                    path,
                    self.tile_size,
                    self.tile_size,
                    records,
                    {"tile_of": str(image.path), "top": top, "left": left, "labeled": labeled},
                )
            )
        return tiles


#: An imported object's status and provenance: status, source, annotator, model version.
Provenance = tuple[str, str, str | None, str | None]


def _provenance_groups(
    records: Sequence[ObjectRecord], classes: Sequence[str], size: tuple[int, int]
) -> list[tuple[Provenance, Objects]]:
    """The objects of an image grouped by status and provenance, as :class:`Objects`
    (outlines as masks of the image; a model's scores kept per object)."""
    index = {name: k for k, name in enumerate(classes)}
    grouped: dict[tuple[str, str, str | None, str | None, bool, bool], list[ObjectRecord]] = {}
    for rec in records:
        outline = bool(rec.polygons or rec.rle)  # boxes stay boxes, outlines masks
        key = (rec.status, rec.source, rec.annotator, rec.model_version, outline)
        grouped.setdefault((*key, rec.score is not None), []).append(rec)
    out = []
    for (status, source, annotator, version, outlined, scored), recs in grouped.items():
        masks = (
            [outline_mask(r.polygons, r.rle, r.box, 1.0, size) for r in recs] if outlined else None
        )
        objects = Objects(
            np.asarray([r.box for r in recs], np.float32),
            np.asarray([index[r.label] for r in recs], np.int64),
            np.asarray([r.score for r in recs], np.float32) if scored else None,
            masks=masks,
        )
        out.append(((status, source, annotator, version), objects))
    return out


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Write a tile losslessly (16-bit grey stays 16-bit), atomically (a temporary name of
    this process's own, so two imports never write the same temporary file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    image = Image.fromarray(pixels)
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def text_featurizer(project: Project) -> TextFeaturizer:
    """The project's text featurizer (MiniLM is loaded lazily, on the first cache miss).

    It lives here, not in :mod:`exemplar.sources.features`, because MiniLM comes from
    :mod:`exemplar.models`, which reads :mod:`exemplar.data`, which reads its files
    through :mod:`exemplar.sources`.
    """
    data = project.config.data
    if data.text_encoder == "minilm":
        from exemplar.models.text import MINILM_DIM, CachedEncoder, SentenceEncoder

        encoder = CachedEncoder(
            SentenceEncoder(device=project.config.model.device),
            cache_dir=project.root / "cache" / "embeddings",
        )
        return TextFeaturizer(MINILM_DIM, "text as MiniLM sentence embeddings", encoder.encode)
    return hashing_featurizer(data.text_features)


def _natural_key(where: str) -> list[Any]:
    """Sort key that puts ``a.csv:9`` before ``a.csv:10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", where)]


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
