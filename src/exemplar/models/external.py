"""Any detector as an exemplar model: files in, the user's commands, JSON predictions out.

:class:`ExternalAdapter` trains and runs a detector exemplar does not ship (YOLO through its
own command line, Detectron2, MMDetection, a lab's script) through a file contract,
documented in ``docs/external_trainer.md``:

1. ``fit`` writes the labeled images as a YOLO or COCO folder
   (:func:`exemplar.formats.write_annotations`) in a fresh run folder and runs the user's
   ``train`` command, which must leave the trained weights at ``{weights}``;
2. ``predict`` writes the images to predict as ``pool.txt`` (one path a line) and
   ``pool.json`` (COCO images and categories), runs the user's ``predict`` command, and
   reads the objects it wrote to ``{predictions}``: exemplar's JSON schema or the COCO
   results list that Detectron2 and MMDetection emit, validated strictly.

A feature row cannot name an image file, so rows are indexes: the caller binds the item
images once with :meth:`ExternalAdapter.bind_items` (paths and each item's pixel size) and
passes ``X`` as the positions of the rows to fit or predict in that list. The tool works in
the pixels of the image files; the :class:`~exemplar.objects.Objects` given to ``fit`` and
returned by ``predict`` are in each item's own pixel frame (``sizes``), scaled per axis when
the two differ.

Commands run with a timeout, their output captured to a log in the run folder; a failure
raises :class:`~exemplar.errors.ModelError` quoting the log's last lines and leaves the
adapter as it was, with no half-written run folder (only the failed run's log is kept).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shlex
import shutil
import signal
import string
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.errors import ConfigError, ModelError
from exemplar.models.base import DEFAULT_CHUNK_SIZE
from exemplar.objects import ObjectPredictions, Objects
from exemplar.predictions import Predictions

__all__ = [
    "CHECKPOINT_KIND",
    "DATASET_FORMATS",
    "PREDICT_PLACEHOLDERS",
    "TRAIN_PLACEHOLDERS",
    "ExternalAdapter",
    "checkpoint_classes",
    "read_predictions",
]

#: Annotation formats the labeled set can be written in for the train command.
DATASET_FORMATS = ("yolo", "coco")

#: Placeholders a train command may use.
TRAIN_PLACEHOLDERS = (
    "dataset",
    "data_yaml",
    "coco_json",
    "weights",
    "workdir",
    "seed",
    "classes",
    "device",
)

#: Placeholders a predict command may use (the training set's stay valid: it is kept).
PREDICT_PLACEHOLDERS = (*TRAIN_PLACEHOLDERS, "pool", "pool_json", "predictions")

#: The ``kind`` field of a checkpoint written by :meth:`ExternalAdapter.save`.
CHECKPOINT_KIND = "exemplar-external-model"
_CHECKPOINT_VERSION = 1

#: How far (pixels) a predicted box may reach outside its image before it is an error;
#: within it, the box is clipped to the image.
BOX_TOLERANCE = 1.0

#: Lines of a failed command's log quoted in the error.
_TAIL_LINES = 5
_TAIL_WIDTH = 200

_ENTRY_FIELDS = frozenset(
    {
        "file",
        "index",
        "width",
        "height",
        "boxes",
        "classes",
        "scores",
        "class_proba",
        "masks",
        "samples",
        "embedding",
    }
)
_PASS_FIELDS = frozenset({"boxes", "classes", "scores", "class_proba", "masks"})
_TOP_FIELDS = frozenset({"images", "classes", "info"})
_COCO_RESULT_FIELDS = frozenset({"image_id", "category_id", "bbox", "score", "segmentation"})


@dataclass(frozen=True)
class PoolImage:
    """One image file and the frame its :class:`Objects` are exchanged in with the loop.

    ``width``/``height`` are the file's pixels (the tool's frame). A point ``(x, y)`` of the
    file is ``(x * fx, y * fy)`` in the frame, whose masks are ``frame_height`` x
    ``frame_width``; the image covers ``width * fx`` x ``height * fy`` of it.
    """

    path: Path
    width: int
    height: int
    fx: float = 1.0
    fy: float = 1.0
    frame_width: int = 0
    frame_height: int = 0

    def __post_init__(self) -> None:
        if not self.frame_width:
            object.__setattr__(self, "frame_width", round(self.width * self.fx))
        if not self.frame_height:
            object.__setattr__(self, "frame_height", round(self.height * self.fy))

    @property
    def extent(self) -> tuple[float, float]:
        """Width and height the image covers in the frame."""
        return self.width * self.fx, self.height * self.fy


@dataclass(frozen=True)
class ParsedImage:
    """The objects read for one pool image, in the item's frame."""

    objects: Objects
    samples: list[Objects] | None
    embedding: np.ndarray | None


class ExternalAdapter:
    """A detector trained and run by the user's own commands (the external-trainer contract).

    Parameters
    ----------
    classes : sequence of str
        The task's class names; class ``i`` of the :class:`Objects` is ``classes[i]``.
    train, predict : str or sequence of str
        The commands. A string runs through ``/bin/sh`` (placeholder values are shell
        quoted); a list runs as is, without a shell. Placeholders (``{name}``, ``{{`` for a
        brace): :data:`TRAIN_PLACEHOLDERS` for ``train``, :data:`PREDICT_PLACEHOLDERS` for
        ``predict``; see ``docs/external_trainer.md``.
    format : {"yolo", "coco"}
        How the labeled set is written for ``train``.
    weights : str
        Where, relative to the run folder, ``train`` leaves its weights (a file or a folder);
        ``{weights}`` is its absolute path. Default ``"weights"``.
    timeout : float
        Seconds each command may run before it is killed (with its child processes).
    workdir : str, optional
        Folder that holds the run folders; by default a new temporary folder. A project
        should give a lasting one: checkpoints point into it.
    copy_images : bool, optional
        Copy the images into the dataset folder (``images/`` beside ``labels/``, the layout
        Ultralytics needs) instead of listing them where they are. Default: True for YOLO,
        False for COCO (its ``file_name`` is then the image's absolute path).
    image_side : int, optional
        The frame of the :class:`Objects`: by default each item's own pixels (see
        :meth:`bind_items`); with ``image_side`` the loop's detector frame, the item scaled
        by ``image_side / max(width, height)`` and padded at the bottom and right to an
        ``image_side`` square (masks are ``image_side`` x ``image_side``).
    channels : int, optional
        Unused (the tool reads the image files itself); accepted because the loop builds
        every detector candidate with its ``[data]`` image side and channels.
    env : mapping of str to str, optional
        Extra environment variables for the commands.
    seed : int
        Passed as ``{seed}``.
    device : str
        Passed as ``{device}`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``).
    chunk_size : int
        Images per predict command run (bounds the size of the files exchanged).
    """

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        *,
        train: str | Sequence[str] | None = None,
        predict: str | Sequence[str] | None = None,
        format: str = "yolo",
        weights: str = "weights",
        timeout: float = 3600.0,
        workdir: str | os.PathLike[str] | None = None,
        copy_images: bool | None = None,
        image_side: int | None = None,
        channels: int | None = None,
        env: Mapping[str, str] | None = None,
        seed: int = 0,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if format not in DATASET_FORMATS:
            raise ConfigError(
                f"external model: format must be one of {', '.join(DATASET_FORMATS)}, "
                f"got {format!r}"
            )
        self.format = format
        self.train = _check_command(train, "train", TRAIN_PLACEHOLDERS, format)
        self.predict_command = _check_command(predict, "predict", PREDICT_PLACEHOLDERS, format)
        weights_rel = Path(str(weights))
        if not str(weights).strip() or weights_rel.is_absolute() or ".." in weights_rel.parts:
            raise ConfigError(
                f"external model: weights must be a path inside the run folder "
                f"(relative, no '..'), got {weights!r}"
            )
        self.weights = str(weights)
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"external model: timeout must be a positive number, got {timeout!r}")
        self.timeout = float(timeout)
        self.workdir = None if workdir is None else str(workdir)
        self.copy_images = format == "yolo" if copy_images is None else bool(copy_images)
        if image_side is not None and int(image_side) < 1:
            raise ConfigError(f"external model: image_side must be positive, got {image_side}")
        self.image_side = None if image_side is None else int(image_side)
        self.channels = channels
        if env is not None and not (
            isinstance(env, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ConfigError("external model: env must map variable names to strings")
        self.env = dict(env or {})
        self.seed = int(seed)
        self.device = str(device)
        if int(chunk_size) < 1:
            raise ConfigError(f"external model: chunk_size must be positive, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self.classes = None if classes is None else _check_classes(classes)
        self._paths: list[Path] = []
        self._sizes: list[tuple[int, int] | None] = []
        self._file_sizes: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------ items

    def bind_items(
        self,
        paths: Sequence[str | os.PathLike[str]],
        sizes: Sequence[tuple[int, int] | None] | None = None,
    ) -> ExternalAdapter:
        """Name the image file of every row: row ``i`` of ``X`` is ``paths[i]``.

        Parameters
        ----------
        paths : sequence of paths
            One image file per item (made absolute here; read only when used).
        sizes : sequence of (width, height), optional
            Each item's own pixel frame, the frame of the :class:`Objects` given to
            :meth:`fit` and returned by :meth:`predict`. By default the file's size (read
            from its header when first needed).
        """
        if sizes is not None and len(sizes) != len(paths):
            raise ModelError(f"bind_items: {len(paths)} paths but {len(sizes)} sizes")
        bound: list[tuple[int, int] | None] = []
        for i, size in enumerate(sizes if sizes is not None else [None] * len(paths)):
            if size is None:
                bound.append(None)
                continue
            w, h = (int(v) for v in size)
            if w <= 0 or h <= 0:
                raise ModelError(f"bind_items: item {i} ({paths[i]}) has size {w}x{h}")
            bound.append((w, h))
        self._paths = [Path(os.path.abspath(p)) for p in paths]
        self._sizes = bound
        self._file_sizes = {}
        return self

    @property
    def n_items(self) -> int:
        """How many item images are bound."""
        return len(self._paths)

    def _rows(self, X: Any) -> np.ndarray:
        arr = np.asarray(X)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or not (
            np.issubdtype(arr.dtype, np.integer)
            or (np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0))
        ):
            raise ModelError(
                "an external model's rows are positions in the images given to bind_items: "
                f"pass an integer array of shape (n,), got {arr.dtype} {arr.shape}"
            )
        rows = arr.astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self._paths)):
            raise ModelError(
                f"row {int(rows.max() if rows.max() >= 0 else rows.min())} is not one of the "
                f"{len(self._paths)} images given to bind_items (call bind_items first)"
            )
        return rows

    def _image(self, row: int) -> PoolImage:
        path = self._paths[row]
        if row not in self._file_sizes:
            self._file_sizes[row] = _file_size(path)
        w, h = self._file_sizes[row]
        iw, ih = self._sizes[row] or (w, h)
        if self.image_side is None:
            return PoolImage(path, w, h, iw / w, ih / h, iw, ih)
        g = self.image_side / max(iw, ih)
        return PoolImage(path, w, h, iw * g / w, ih * g / h, self.image_side, self.image_side)

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        X: Any,
        y: Sequence[Objects],
        *,
        negatives: Sequence[Objects] | None = None,
    ) -> ExternalAdapter:
        """Write the labeled set, run the train command, and keep its weights.

        ``y[i]`` holds the objects of image ``X[i]`` in the adapter's frame. Each fit trains
        from scratch in a new run folder under ``workdir``. ``negatives`` (hard negatives)
        are accepted and not passed on: YOLO and COCO folders have no place for them, and
        every unlabeled region of a labeled image is background to the tool anyway.
        """
        classes = self._require_classes()
        rows = self._rows(X)
        if len(y) != rows.size:
            raise ModelError(f"fit got {rows.size} images but {len(y)} object sets")
        images = [self._annotated(int(r), objs, classes) for r, objs in zip(rows, y, strict=True)]
        root = self._root()
        run = _new_folder(root, "run")
        log = root / f"{run.name}.train.log"
        try:
            dataset, data_yaml, coco_json = self._write_dataset(images, classes, run / "dataset")
            weights = run / self.weights
            values = self._values(run, weights, classes)
            values.update(dataset=str(dataset), data_yaml=data_yaml, coco_json=coco_json)
            self._run(self.train, values, run, log, "train")
            if not weights.exists():
                raise ModelError(
                    f"the train command succeeded but left no weights at {weights} "
                    f"(log: {log}); make it write there, or set the recipe's 'weights' to "
                    "where it writes them"
                )
            _write_json_atomically(run / "config.json", self._config(classes))
        except BaseException:
            shutil.rmtree(run, ignore_errors=True)
            raise
        self.classes = classes
        self.classes_ = np.asarray(classes)
        self.run_dir_ = run
        self.weights_path_ = weights
        self.dataset_ = dataset
        self.data_yaml_ = data_yaml
        self.coco_json_ = coco_json
        return self

    def _annotated(self, row: int, objects: Objects, classes: list[str]) -> Any:
        from exemplar.formats import AnnotatedImage, ObjectRecord

        image = self._image(row)
        ew, eh = image.extent
        records = []
        for k in range(len(objects)):
            x0, y0, x1, y1 = (float(v) for v in objects.boxes[k])
            c = int(objects.classes[k])
            if not 0 <= c < len(classes):
                raise ModelError(f"{image.path}: object {k} has class {c}, not one of {classes}")
            t = BOX_TOLERANCE
            if x0 < -t or y0 < -t or x1 > ew + t or y1 > eh + t:
                raise ModelError(
                    f"{image.path}: object {k} box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies "
                    f"outside the image ({ew:g}x{eh:g} in the model's frame)"
                )
            box = (
                min(max(x0, 0.0), ew) / image.fx,
                min(max(y0, 0.0), eh) / image.fy,
                min(max(x1, 0.0), ew) / image.fx,
                min(max(y1, 0.0), eh) / image.fy,
            )
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ModelError(f"{image.path}: object {k} box has zero size")
            rle = None
            if objects.masks is not None:
                rle = _resample_rle(
                    objects.masks[k],
                    (image.height, image.width),
                    1 / image.fy,
                    1 / image.fx,
                    f"{image.path}: mask of object {k}",
                )
            records.append(ObjectRecord(label=classes[c], box=box, rle=rle, source="human"))
        return AnnotatedImage(
            path=image.path, width=image.width, height=image.height, objects=records
        )

    def _write_dataset(
        self, images: list[Any], classes: list[str], dest: Path
    ) -> tuple[Path, str, str]:
        from exemplar.formats import write_annotations

        written = Path(
            write_annotations(images, classes, dest, self.format, copy_images=self.copy_images)
        )
        if self.format == "yolo":
            return dest, str(dest / "data.yaml"), ""
        return dest, "", str(written)

    # ------------------------------------------------------------------ predict

    def predict(
        self,
        X: Any,
        *,
        samples: bool = False,
        embeddings: bool = False,
        views: bool = False,
    ) -> Predictions:
        """Run the predict command on images ``X`` and read the objects it found.

        ``samples=True`` needs the command to write stochastic passes (``"samples"``) and
        ``embeddings=True`` an ``"embedding"`` per image; augmented views are not part of
        the contract.
        """
        self._check_fitted()
        if views:
            raise ModelError(
                "an external model gives no augmented views; use a strategy that does not "
                "compare views (localization stability needs the built-in detector)"
            )
        rows = self._rows(X)
        parsed: list[ParsedImage] = []
        for start in range(0, rows.size, self.chunk_size):
            parsed.extend(self._predict_chunk(rows[start : start + self.chunk_size]))
        n_classes = len(self.classes_)
        pass_lists = None
        if samples:
            if rows.size and any(p.samples is None for p in parsed):
                raise ModelError(
                    "this strategy reads stochastic passes, but the predict command wrote no "
                    "'samples' for the images (see docs/external_trainer.md)"
                )
            t = len(parsed[0].samples or []) if parsed else 0
            pass_lists = [[p.samples[j] for p in parsed if p.samples] for j in range(t)]
        emb = None
        if embeddings:
            if rows.size and any(p.embedding is None for p in parsed):
                raise ModelError(
                    "this strategy reads embeddings, but the predict command wrote no "
                    "'embedding' for the images (see docs/external_trainer.md)"
                )
            emb = (
                np.stack([p.embedding for p in parsed if p.embedding is not None])
                if parsed
                else np.empty((0, 0), np.float32)
            )
        objects = ObjectPredictions([p.objects for p in parsed], n_classes, samples=pass_lists)
        return Predictions(embeddings=emb, classes=self.classes_, objects=objects)

    def predict_objects(self, X: Any) -> list[Objects]:
        """The objects found on each image of ``X`` (item frame)."""
        return list(self.predict(X).require_objects().images)

    def predict_labels(self, X: Any) -> np.ndarray:
        """Not defined for a detector: a :class:`ModelError`."""
        raise ModelError("an external detector predicts objects, not one label per item")

    def _predict_chunk(self, rows: np.ndarray) -> list[ParsedImage]:
        classes = list(self.classes_)
        pool = [self._image(int(r)) for r in rows]
        folder = _new_folder(self.run_dir_, "predict")
        log = self.run_dir_ / f"{folder.name}.log"
        try:
            pool_txt, pool_json = folder / "pool.txt", folder / "pool.json"
            pool_txt.write_text("".join(f"{im.path}\n" for im in pool), encoding="utf-8")
            _write_json_atomically(pool_json, _pool_document(pool, classes))
            predictions = folder / "predictions.json"
            values = self._values(self.run_dir_, self.weights_path_, classes)
            values.update(
                dataset=str(self.dataset_),
                data_yaml=self.data_yaml_,
                coco_json=self.coco_json_,
                pool=str(pool_txt),
                pool_json=str(pool_json),
                predictions=str(predictions),
            )
            self._run(self.predict_command, values, self.run_dir_, log, "predict")
            if not predictions.is_file():
                raise ModelError(
                    f"the predict command succeeded but wrote no {predictions} (log: {log})"
                )
            parsed = read_predictions(predictions, pool, classes)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # the log stays beside it
            raise
        shutil.rmtree(folder, ignore_errors=True)
        log.unlink(missing_ok=True)
        return parsed

    # ------------------------------------------------------------------ commands

    def _values(self, workdir: Path, weights: Path, classes: list[str]) -> dict[str, str]:
        return {
            "weights": str(weights),
            "workdir": str(workdir),
            "seed": str(self.seed),
            "classes": ",".join(classes),
            "device": self.device,
        }

    def _run(
        self,
        command: str | list[str],
        values: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        what: str,
    ) -> None:
        shell = isinstance(command, str)
        if shell:
            quoted = {k: shlex.quote(v) for k, v in values.items()}
            args: str | list[str] = _substitute(str(command), quoted)
            shown = args
        else:
            args = [_substitute(a, values) for a in command]
            shown = shlex.join(args)
        env = {**os.environ, **self.env}
        env.update({f"EXEMPLAR_{k.upper()}": v for k, v in values.items()})
        with open(log_path, "ab") as log:
            log.write(f"$ {shown}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    args,
                    shell=shell,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=os.name == "posix",
                )
            except OSError as exc:
                raise ModelError(f"cannot run the {what} command {shown!r}: {exc}") from None
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise ModelError(
                    f"the {what} command ran past its timeout of {self.timeout:g} s and was "
                    f"killed; {_tail(log_path)}"
                ) from None
            except BaseException:
                _kill(proc)
                raise
        if code != 0:
            raise ModelError(f"the {what} command failed (exit status {code}); {_tail(log_path)}")

    # ------------------------------------------------------------------ checkpoints

    def _config(self, classes: list[str]) -> dict[str, Any]:
        return {
            "classes": list(classes),
            "train": self.train,
            "predict": self.predict_command,
            "format": self.format,
            "weights": self.weights,
            "timeout": self.timeout,
            "workdir": self.workdir,
            "copy_images": self.copy_images,
            "env": self.env,
            "seed": self.seed,
            "image_side": self.image_side,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the checkpoint: a JSON file naming the run folder, its weights and the config.

        The weights stay in the run folder (they are the tool's own files); the checkpoint
        refers to them by absolute path.
        """
        self._check_fitted()
        path = Path(path)
        document = {
            "kind": CHECKPOINT_KIND,
            "version": _CHECKPOINT_VERSION,
            "config": self._config(list(self.classes_)),
            "run_dir": str(self.run_dir_),
            "weights_path": str(self.weights_path_),
            "dataset": str(self.dataset_),
            "data_yaml": self.data_yaml_,
            "coco_json": self.coco_json_,
        }
        _write_json_atomically(path, document)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ExternalAdapter:
        """The fitted adapter of a checkpoint written by :meth:`save` (bind items before use)."""
        path = Path(path)
        document = _read_checkpoint(path)
        config = dict(document["config"])
        classes = config.pop("classes")
        try:
            model = cls(classes, device=device, chunk_size=chunk_size, **config)
        except (ConfigError, TypeError) as exc:
            raise ModelError(f"checkpoint {path} holds an invalid configuration: {exc}") from None
        weights = Path(document["weights_path"])
        if not weights.exists():
            raise ModelError(
                f"checkpoint {path}: its weights {weights} are missing (the run folder "
                f"{document['run_dir']} was moved or deleted)"
            )
        model.classes_ = np.asarray(model.classes)
        model.run_dir_ = Path(document["run_dir"])
        model.weights_path_ = weights
        model.dataset_ = Path(document["dataset"])
        model.data_yaml_ = str(document.get("data_yaml", ""))
        model.coco_json_ = str(document.get("coco_json", ""))
        return model

    # ------------------------------------------------------------------ helpers

    def _require_classes(self) -> list[str]:
        if not self.classes:
            raise ModelError("an external model needs the task's class names: pass classes=[...]")
        return list(self.classes)

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_path_"):
            raise ModelError("this external model is not fitted: call fit (or load a checkpoint)")

    def _root(self) -> Path:
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="exemplar-external-")
        root = Path(os.path.abspath(self.workdir))
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(f"cannot create the external model's workdir {root}: {exc}") from None
        return root


# ---------------------------------------------------------------------- predictions


def read_predictions(
    path: str | os.PathLike[str],
    pool: Sequence[PoolImage],
    classes: Sequence[str],
) -> list[ParsedImage]:
    """Read and validate a predictions file for ``pool``, objects in each item's frame.

    Parameters
    ----------
    path : path
        exemplar's schema (``{"images": [...]}``) or a COCO results list
        (``[{"image_id", "category_id", "bbox", "score"}, ...]``).
    pool : sequence of PoolImage
        The images asked about, in ``pool.txt`` order (COCO image id ``i + 1``).
    classes : sequence of str
        Class names; a predicted class is a name or an index into them.

    Raises
    ------
    ModelError
        Naming the file and the image for any malformed entry.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            document = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from None
    reader = _Reader(path, pool, list(classes))
    if isinstance(document, list):
        return reader.coco_results(document)
    if isinstance(document, dict) and "images" in document:
        return reader.schema(document)
    got = type(document).__name__
    if isinstance(document, dict):
        got += " with keys " + ", ".join(map(str, document)) if document else " (empty)"
    raise ModelError(f'{path}: expected {{"images": [...]}} or a COCO results list, got {got}')


class _Reader:
    """Validates one predictions file against its pool."""

    def __init__(
        self,
        path: Path,
        pool: Sequence[PoolImage],
        classes: list[str],
    ) -> None:
        self.path = path
        self.pool = pool
        self.classes = classes
        self.by_name = {c: i for i, c in enumerate(classes)}
        self.by_category = {i + 1: i for i in range(len(classes))}
        self.lookup: dict[str, int] = {}
        names: dict[str, list[int]] = {}
        for i, im in enumerate(pool):
            self.lookup[str(im.path)] = i
            names.setdefault(im.path.name, []).append(i)
        self.names = {n: v[0] for n, v in names.items() if len(v) == 1}

    def fail(self, where: str, message: str) -> ModelError:
        return ModelError(f"{self.path}: {where}: {message}")

    # exemplar's schema ------------------------------------------------------

    def schema(self, document: dict[str, Any]) -> list[ParsedImage]:
        unknown = set(document) - _TOP_FIELDS
        if unknown:
            raise ModelError(
                f"{self.path}: unknown top-level field(s): {', '.join(sorted(unknown))}"
            )
        if "classes" in document and list(document["classes"]) != self.classes:
            raise ModelError(
                f"{self.path}: its classes {document['classes']!r} are not the task's "
                f"{self.classes!r} (in that order)"
            )
        entries = document["images"]
        if not isinstance(entries, list):
            raise ModelError(f"{self.path}: 'images' must be a list")
        out: list[ParsedImage | None] = [None] * len(self.pool)
        n_passes: int | None = None
        for e, entry in enumerate(entries):
            where = f"images[{e}]"
            if not isinstance(entry, dict):
                raise self.fail(where, "must be an object")
            i = self.position(entry, where)
            image = self.pool[i]
            where = f"images[{e}] ({image.path.name})"
            if out[i] is not None:
                raise self.fail(where, "the image is listed twice")
            unknown = set(entry) - _ENTRY_FIELDS
            if unknown:
                raise self.fail(where, f"unknown field(s): {', '.join(sorted(unknown))}")
            for key, size in (("width", image.width), ("height", image.height)):
                if key in entry and entry[key] != size:
                    raise self.fail(where, f"{key} {entry[key]!r} is not the file's {size} pixels")
            objects = self.objects(entry, image, where)
            passes = None
            if "samples" in entry:
                raw = entry["samples"]
                if not isinstance(raw, list) or not raw:
                    raise self.fail(where, "'samples' must be a non-empty list of passes")
                passes = []
                for j, p in enumerate(raw):
                    pw = f"{where} samples[{j}]"
                    if not isinstance(p, dict):
                        raise self.fail(pw, "must be an object with boxes, classes and scores")
                    extra = set(p) - _PASS_FIELDS
                    if extra:
                        raise self.fail(pw, f"unknown field(s): {', '.join(sorted(extra))}")
                    passes.append(self.objects(p, image, pw))
                if n_passes is not None and len(passes) != n_passes:
                    raise self.fail(
                        where, f"has {len(passes)} sample passes, other images {n_passes}"
                    )
                n_passes = len(passes)
            embedding = None
            if "embedding" in entry:
                embedding = self.numbers(entry["embedding"], where, "embedding")
            out[i] = ParsedImage(objects, passes, embedding)
        missing = [self.pool[i].path.name for i, p in enumerate(out) if p is None]
        if missing:
            raise ModelError(
                f"{self.path}: {len(missing)} image(s) of the pool are not listed "
                f"(list an image with no objects with empty lists), e.g. {missing[0]}"
            )
        parsed = [p for p in out if p is not None]
        if any(p.samples is None for p in parsed) and any(p.samples is not None for p in parsed):
            raise ModelError(f"{self.path}: some images have 'samples' and others not")
        emb = [p.embedding for p in parsed if p.embedding is not None]
        if emb and (len(emb) != len(parsed) or len({e.shape for e in emb}) != 1):
            raise ModelError(
                f"{self.path}: every image needs an 'embedding' of the same length, or none"
            )
        return parsed

    def position(self, entry: dict[str, Any], where: str) -> int:
        if "index" in entry:
            index = entry["index"]
            if isinstance(index, bool) or not isinstance(index, int):
                raise self.fail(where, f"index must be an integer, got {index!r}")
            if not 0 <= index < len(self.pool):
                raise self.fail(
                    where, f"index {index} is not a line of the {len(self.pool)}-image pool"
                )
            if "file" in entry and self.find(entry["file"]) != index:
                raise self.fail(where, f"file {entry['file']!r} is not pool line {index}")
            return index
        if "file" not in entry:
            raise self.fail(where, "needs 'file' (a path from the pool) or 'index'")
        found = self.find(entry["file"])
        if found is None:
            raise self.fail(where, f"file {entry['file']!r} is not one of the pool's images")
        return found

    def find(self, file: Any) -> int | None:
        if not isinstance(file, str) or not file:
            return None
        if file in self.lookup:
            return self.lookup[file]
        if os.path.isabs(file):
            return self.lookup.get(os.path.normpath(file))
        return self.names.get(file) if os.path.basename(file) == file else None

    def objects(self, entry: dict[str, Any], image: PoolImage, where: str) -> Objects:
        boxes_raw = entry.get("boxes")
        if not isinstance(boxes_raw, list):
            raise self.fail(where, "'boxes' must be a list of [x0, y0, x1, y1]")
        k = len(boxes_raw)
        for key in ("classes", "scores"):
            value = entry.get(key)
            if not isinstance(value, list):
                raise self.fail(where, f"{key!r} must be a list (one per box)")
            if len(value) != k:
                raise self.fail(where, f"{k} boxes but {len(value)} {key}")
        boxes = np.array(
            [self.box(b, image, f"{where} box {j}") for j, b in enumerate(boxes_raw)],
            dtype=np.float64,
        ).reshape(-1, 4)
        classes = np.array(
            [self.class_index(c, f"{where} box {j}") for j, c in enumerate(entry["classes"])],
            dtype=np.int64,
        )
        scores = np.array(
            [self.score(s, f"{where} box {j}") for j, s in enumerate(entry["scores"])],
            dtype=np.float32,
        )
        proba = None
        if "class_proba" in entry:
            proba = self.class_proba(entry["class_proba"], k, where)
        masks = None
        if "masks" in entry:
            raw = entry["masks"]
            if not isinstance(raw, list) or len(raw) != k:
                raise self.fail(where, f"'masks' must be a list of {k} masks (one per box)")
            masks = [self.mask(m, image, f"{where} mask {j}") for j, m in enumerate(raw)]
        return self.to_item(image, boxes, classes, scores, proba, masks)

    def to_item(
        self,
        image: PoolImage,
        boxes: np.ndarray,
        classes: np.ndarray,
        scores: np.ndarray,
        proba: np.ndarray | None,
        masks: list[dict[str, Any]] | None,
    ) -> Objects:
        boxes = boxes * np.array([image.fx, image.fy, image.fx, image.fy])
        if masks is not None:
            masks = [
                _resample_rle(
                    m,
                    (image.frame_height, image.frame_width),
                    image.fy,
                    image.fx,
                    f"{self.path}: {image.path.name} mask {j}",
                )
                for j, m in enumerate(masks)
            ]
        return Objects(boxes.astype(np.float32), classes, scores, proba, masks)

    def box(self, raw: Any, image: PoolImage, where: str) -> list[float]:
        if not isinstance(raw, list) or len(raw) != 4:
            raise self.fail(where, f"a box is [x0, y0, x1, y1], got {raw!r}")
        x0, y0, x1, y1 = self.numbers(raw, where, "box").tolist()
        if x1 < x0 or y1 < y0:
            raise self.fail(where, f"box {raw!r} has x1 < x0 or y1 < y0")
        t = BOX_TOLERANCE
        if x0 < -t or y0 < -t or x1 > image.width + t or y1 > image.height + t:
            raise self.fail(
                where,
                f"box {raw!r} lies outside the {image.width}x{image.height} image "
                "(boxes are in the image file's pixels)",
            )
        return [
            min(max(x0, 0.0), image.width),
            min(max(y0, 0.0), image.height),
            min(max(x1, 0.0), image.width),
            min(max(y1, 0.0), image.height),
        ]

    def numbers(self, raw: Any, where: str, what: str) -> np.ndarray:
        if not isinstance(raw, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in raw
        ):
            raise self.fail(where, f"{what} must be a list of numbers, got {raw!r}")
        arr = np.asarray(raw, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise self.fail(where, f"{what} has NaN or infinite values")
        return arr.astype(np.float32) if what == "embedding" else arr

    def class_index(self, raw: Any, where: str) -> int:
        if isinstance(raw, str):
            if raw not in self.by_name:
                raise self.fail(where, f"unknown class {raw!r}; the classes are {self.classes}")
            return self.by_name[raw]
        if isinstance(raw, int) and not isinstance(raw, bool):
            if not 0 <= raw < len(self.classes):
                raise self.fail(
                    where, f"unknown class {raw}: an index must be in 0..{len(self.classes) - 1}"
                )
            return raw
        raise self.fail(where, f"a class is a name or an index, got {raw!r}")

    def score(self, raw: Any, where: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
            raise self.fail(where, f"score must be a number in [0, 1], got {raw!r}")
        return float(raw)

    def class_proba(self, raw: Any, k: int, where: str) -> np.ndarray:
        c = len(self.classes)
        if not isinstance(raw, list) or len(raw) != k:
            raise self.fail(where, f"'class_proba' must be {k} rows of {c} probabilities")
        rows = [self.numbers(r, where, "class_proba row") for r in raw]
        if any(r.shape != (c,) for r in rows):
            raise self.fail(where, f"'class_proba' rows must have {c} values (one per class)")
        proba = np.array(rows, dtype=np.float64).reshape(k, c)
        if (proba < 0).any() or (k and np.abs(proba.sum(axis=1) - 1).max() > 1e-3):
            raise self.fail(where, "'class_proba' rows must be probabilities summing to 1")
        return proba.astype(np.float32)

    def mask(self, raw: Any, image: PoolImage, where: str) -> dict[str, Any]:
        from pycocotools import mask as mask_utils

        h, w = image.height, image.width
        if isinstance(raw, dict):
            size, counts = raw.get("size"), raw.get("counts")
            if set(raw) != {"size", "counts"} or size != [h, w]:
                raise self.fail(
                    where, f'an RLE mask is {{"size": [{h}, {w}], "counts": ...}} for this image'
                )
            if isinstance(counts, list):
                if not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts
                ):
                    raise self.fail(where, "uncompressed RLE counts must be non-negative integers")
                if sum(counts) != h * w:
                    raise self.fail(where, f"RLE counts cover {sum(counts)} pixels, not {h * w}")
                rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
            elif isinstance(counts, str):
                total = _compressed_total(counts)
                if total != h * w:
                    raise self.fail(
                        where,
                        "compressed RLE counts are malformed"
                        if total is None
                        else f"RLE counts cover {total} pixels, not {h * w}",
                    )
                rle = {"size": [h, w], "counts": counts}
            else:
                raise self.fail(where, "RLE counts must be a string or a list of integers")
            return _rle_str(rle)
        if isinstance(raw, list) and raw and all(isinstance(p, list) for p in raw):
            polygons = []
            for j, poly in enumerate(raw):
                values = self.numbers(poly, where, f"polygon {j}")
                if values.size < 6 or values.size % 2:
                    raise self.fail(where, f"polygon {j} needs at least 3 x, y points")
                xs, ys = values[0::2], values[1::2]
                t = BOX_TOLERANCE
                if xs.min() < -t or ys.min() < -t or xs.max() > w + t or ys.max() > h + t:
                    raise self.fail(where, f"polygon {j} lies outside the {w}x{h} image")
                polygons.append(values.tolist())
            parts = mask_utils.frPyObjects(polygons, h, w)
            return _rle_str(mask_utils.merge(parts))
        raise self.fail(where, "a mask is a COCO RLE dict or a list of polygons")

    # COCO results ---------------------------------------------------------

    def coco_results(self, results: list[Any]) -> list[ParsedImage]:
        per_image: list[list[tuple[list[float], int, float, Any]]] = [[] for _ in self.pool]
        for r, det in enumerate(results):
            where = f"result {r}"
            if not isinstance(det, dict):
                raise self.fail(where, "must be an object with image_id, category_id, bbox, score")
            missing = {"image_id", "category_id", "bbox", "score"} - set(det)
            if missing:
                raise self.fail(where, f"missing field(s): {', '.join(sorted(missing))}")
            unknown = set(det) - _COCO_RESULT_FIELDS
            if unknown:
                raise self.fail(where, f"unknown field(s): {', '.join(sorted(unknown))}")
            image_id = det["image_id"]
            if (
                isinstance(image_id, bool)
                or not isinstance(image_id, int)
                or not (1 <= image_id <= len(self.pool))
            ):
                raise self.fail(
                    where, f"image_id {image_id!r} is not an id of pool.json (1..{len(self.pool)})"
                )
            image = self.pool[image_id - 1]
            where = f"result {r} (image {image_id}, {image.path.name})"
            cat = det["category_id"]
            if isinstance(cat, bool) or not isinstance(cat, int) or cat not in self.by_category:
                raise self.fail(
                    where,
                    f"unknown class: category_id {cat!r} is not one of pool.json's "
                    f"{sorted(self.by_category)}",
                )
            bbox = det["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise self.fail(where, f"bbox is [x, y, width, height], got {bbox!r}")
            x, y, bw, bh = self.numbers(bbox, where, "bbox").tolist()
            if bw < 0 or bh < 0:
                raise self.fail(where, f"bbox {bbox!r} has a negative width or height")
            box = self.box([x, y, x + bw, y + bh], image, where)
            score = self.score(det["score"], where)
            mask = None
            if "segmentation" in det:
                mask = self.mask(det["segmentation"], image, f"{where} segmentation")
            per_image[image_id - 1].append((box, self.by_category[cat], score, mask))
        out = []
        for i, dets in enumerate(per_image):
            image = self.pool[i]
            has_mask = {d[3] is not None for d in dets}
            if len(has_mask) > 1:
                raise ModelError(
                    f"{self.path}: image {i + 1} ({image.path.name}): some results have a "
                    "segmentation and others not"
                )
            boxes = np.array([d[0] for d in dets], dtype=np.float64).reshape(-1, 4)
            masks = [d[3] for d in dets] if dets and dets[0][3] is not None else None
            objects = self.to_item(
                image,
                boxes,
                np.array([d[1] for d in dets], dtype=np.int64),
                np.array([d[2] for d in dets], dtype=np.float32),
                None,
                masks,
            )
            out.append(ParsedImage(objects, None, None))
        return out


# ---------------------------------------------------------------------- module helpers


def checkpoint_classes(path: str | os.PathLike[str]) -> np.ndarray:
    """The classes of an external model's checkpoint (nothing is run)."""
    path = Path(path)
    return np.asarray(_read_checkpoint(path)["config"]["classes"])


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"checkpoint {path} is missing")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != CHECKPOINT_KIND:
        raise ModelError(f"checkpoint {path} is not an external model's checkpoint")
    if document.get("version") != _CHECKPOINT_VERSION:
        raise ModelError(
            f"checkpoint {path} has version {document.get('version')!r}; this exemplar "
            f"reads version {_CHECKPOINT_VERSION}"
        )
    config = document.get("config")
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("classes"), list)
        or not all(isinstance(document.get(k), str) for k in ("run_dir", "weights_path", "dataset"))
    ):
        raise ModelError(f"checkpoint {path} lacks its config, classes or weights path")
    return document


def _check_classes(classes: Sequence[str]) -> list[str]:
    names = [c for c in classes]
    if not names or not all(isinstance(c, str) and c for c in names):
        raise ConfigError(f"external model: classes must be non-empty names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"external model: class names repeat: {names!r}")
    if any("," in c for c in names):
        raise ConfigError(f"external model: a class name may not contain ',': {names!r}")
    return names


def _check_command(
    command: str | Sequence[str] | None, what: str, allowed: Sequence[str], fmt: str
) -> str | list[str]:
    if command is None:
        raise ConfigError(
            f"external model: give a {what!r} command (a shell string or a list of arguments)"
        )
    if isinstance(command, str):
        parts = [command]
        if not command.strip():
            raise ConfigError(f"external model: the {what!r} command is empty")
        checked: str | list[str] = command
    else:
        parts = list(command)
        if not parts or not all(isinstance(p, str) for p in parts):
            raise ConfigError(
                f"external model: the {what!r} command must be a string or a non-empty "
                "list of strings"
            )
        checked = parts
    for part in parts:
        for name in _fields(part, what):
            if name not in allowed:
                raise ConfigError(
                    f"external model: the {what!r} command uses {{{name}}}; it may use "
                    + ", ".join(f"{{{a}}}" for a in allowed)
                )
            if name == "data_yaml" and fmt != "yolo":
                raise ConfigError(
                    f'external model: {{data_yaml}} needs format = "yolo", not {fmt!r}'
                )
            if name == "coco_json" and fmt != "coco":
                raise ConfigError(
                    f'external model: {{coco_json}} needs format = "coco", not {fmt!r}'
                )
    return checked


def _fields(text: str, what: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(
            f"external model: the {what!r} command {text!r} has unbalanced braces ({exc}); "
            "write {{ and }} for literal braces"
        ) from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ConfigError(
                f"external model: the {what!r} command has {{{name}"
                f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; "
                "placeholders are plain {name}"
            )
        names.append(name)
    return names


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return text.format_map(values)


def _file_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except FileNotFoundError:
        raise ModelError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ModelError(f"{path}: cannot read the image: {exc}") from None


def _pool_document(pool: Sequence[PoolImage], classes: list[str]) -> dict[str, Any]:
    """``pool.json``: COCO images (id = line + 1) and categories (id = class index + 1)."""
    return {
        "images": [
            {"id": i + 1, "file_name": str(im.path), "width": im.width, "height": im.height}
            for i, im in enumerate(pool)
        ],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
        "annotations": [],
    }


def _compressed_total(counts: str) -> int | None:
    """Pixels a compressed COCO RLE string covers, or None when it is malformed.

    The decoding of pycocotools' ``rleFrString`` (6-bit chunks offset by 48, run lengths
    from the third on stored as differences), done here because pycocotools reads a
    malformed string without complaint.
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                return None
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return sum(runs)


def _rle_str(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def _resample_rle(
    rle: Any, size: tuple[int, int], fy: float, fx: float, what: str
) -> dict[str, Any]:
    """Mask ``rle`` in a frame where source pixel ``(x, y)`` lands at ``(x * fx, y * fy)``.

    The new frame is ``size = (height, width)``; nearest-neighbour sampling, pixels that
    fall outside the source are background (the padding of a letterboxed frame).
    """
    from pycocotools import mask as mask_utils

    try:
        src_size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
        coded = {"size": src_size, "counts": counts.encode() if isinstance(counts, str) else counts}
        if isinstance(counts, list):
            coded = mask_utils.frPyObjects(coded, *src_size)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{what} is not a COCO RLE: {exc}") from None
    height, width = size
    if src_size == [height, width] and fx == fy == 1.0:
        return _rle_str(coded)
    grid = mask_utils.decode(coded)
    ys = np.floor((np.arange(height) + 0.5) / fy).astype(np.int64)
    xs = np.floor((np.arange(width) + 0.5) / fx).astype(np.int64)
    out = np.zeros((height, width), np.uint8)
    keep_y, keep_x = ys < src_size[0], xs < src_size[1]
    out[np.ix_(keep_y, keep_x)] = grid[np.ix_(ys[keep_y], xs[keep_x])]
    return _rle_str(mask_utils.encode(np.asfortranarray(out)))


def _new_folder(parent: Path, prefix: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        folder = parent / f"{prefix}-{stamp}-{secrets.token_hex(3)}"
        try:
            folder.mkdir(parents=False)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ModelError(f"cannot create {folder}: {exc}") from None
        return folder


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill a command and everything it started (its process group on POSIX)."""
    if proc.poll() is None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:
            pass
    proc.wait()


def _tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"its log {log_path} cannot be read"
    lines = [ln.strip()[:_TAIL_WIDTH] for ln in lines if ln.strip()][-_TAIL_LINES:]
    return f"last lines of {log_path}: " + " | ".join(lines) if lines else f"{log_path} is empty"


def _write_json_atomically(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
