"""Image files: a single image, or a folder searched recursively (class subfolders).

Every image's path is resolved with :func:`os.path.realpath`: the item's URI is the real
path, and a file (or folder) of an imported folder whose real path lies outside that
folder, through a symbolic link, is not imported and is reported with its path. Each
image item records ``file_id`` = ``"<st_dev>:<st_ino>:<st_size>:<st_mtime_ns>"`` of its
real file when it was hashed, so the server can refuse a file replaced since.

Images are hashed first (the SHA-256 of the file's bytes is the item's uid) and decoded
only when the uid is new, one batch at a time, by :func:`decode_image`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from exemplar.errors import DatasetError
from exemplar.sources.base import Chunk, Log, Problem, Record, Source, SourceOptions
from exemplar.sources.features import ImageTooLargeError, image_features

__all__ = ["IMAGE_SUFFIXES", "ImageSource", "decode_image", "file_id"]

#: Image file types read from folders (matched case-insensitively).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
#: Files up to this size are read into memory once (hash check and decode from the same
#: bytes); larger ones are decoded from the file and hashed again afterwards.
IN_MEMORY_BYTES = 64 << 20


def file_id(stat: os.stat_result) -> str:
    """``"<st_dev>:<st_ino>:<st_size>:<st_mtime_ns>"``: which file, and which version of it."""
    return f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"


def _inside(real: str, root: str) -> bool:
    return real == root or os.path.commonpath([real, root]) == root


class ImageSource(Source):
    """Image files: a single file, or a folder searched recursively."""

    def __init__(self, path: Path, options: SourceOptions, log: Log):
        for name in ("label_column", "text_column"):
            if getattr(options, name) is not None:
                raise DatasetError(
                    f"{name} applies to tables and arrays, not to images ('{path}'); "
                    "image labels come from class subfolders"
                )
        self.log = log
        self.size = options.image_size
        self.max_pixels = options.max_image_pixels
        self.dim = self.size * self.size
        self.what = f"images at data.image_size = {self.size}"
        self.files, others = self._scan(path, options.folder_labels)
        if not self.files:
            hint = f" ({others} other file(s) were found, none with an image extension)"
            raise DatasetError(f"no image files found in '{path}'{hint if others else ''}")
        self.total = len(self.files)
        labels = sorted({label for _, _, label in self.files if label is not None})
        if labels:
            log.note(f"labels from subfolder names: {', '.join(labels)}")

    def _scan(
        self, root: Path, folder_labels: bool
    ) -> tuple[list[tuple[Path, str, str | None]], int]:
        """``(path as found, real path, label)`` of each image, and the count of other files."""
        if root.is_file():
            return [(root, os.path.realpath(root), None)], 0
        log = self.log
        top = os.path.realpath(root)
        files: list[tuple[Path, str, str | None]] = []
        others = 0
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            kept: list[str] = []
            for name in sorted(d for d in dirnames if not d.startswith(".")):
                folder = here / name
                if folder.is_symlink():  # os.walk does not follow it; say so
                    real = os.path.realpath(folder)
                    if _inside(real, top):
                        why = (
                            f"a symbolic link to the folder '{real}', inside the imported "
                            "folder: its images are imported from there, not through the link"
                        )
                    else:
                        why = (
                            f"a symbolic link to the folder '{real}', outside the imported "
                            f"folder '{top}'; not imported"
                        )
                    log.skip(Problem(str(folder), why, "linked folder"))
                    continue
                kept.append(name)
            dirnames[:] = kept
            rel = here.relative_to(root)
            label = rel.parts[0] if folder_labels and rel.parts else None
            for name in sorted(filenames):
                if name.startswith("."):
                    continue  # hidden files (.DS_Store, editor swap files)
                file = here / name
                suffix = file.suffix.lower()
                if suffix not in IMAGE_SUFFIXES:
                    others += 1
                    why = f"not an image file (extension {suffix or '(none)'!r}); ignored"
                    log.skip(Problem(str(file), why, "not an image"))
                    continue
                real = os.path.realpath(file)
                if not _inside(real, top):
                    why = (
                        f"a symbolic link to '{real}', outside the imported folder '{top}'; "
                        "not imported"
                    )
                    log.skip(Problem(str(file), why, "link outside"))
                    continue
                files.append((file, real, label))
        return files, others

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        for start in range(0, len(self.files), size):
            part = self.files[start : start + size]
            records: list[Record] = []
            hashed = pool.map(hash_file, [real for _, real, _ in part])
            for (file, real, label), (digest, ident) in zip(part, hashed, strict=True):
                if ident is None:
                    self.log.skip(Problem(str(file), digest, "unreadable file"))
                    continue
                records.append(
                    Record(digest, real, str(file), "image", label, path=Path(real), file_id=ident)
                )
            yield Chunk(records, None, start + len(part), featurize=self.featurize)

    def featurize(
        self, records: list[Record], pool: ThreadPoolExecutor
    ) -> tuple[list[int], np.ndarray]:
        """Decode ``records`` (in parallel); return the indices decoded and their rows."""
        size, limit = self.size, self.max_pixels

        def decode(rec: Record) -> np.ndarray | tuple[str, str]:
            assert rec.path is not None
            return decode_image(rec.path, rec.uid, size, limit)

        rows: list[np.ndarray] = []
        decoded: list[int] = []
        for i, result in enumerate(pool.map(decode, records)):
            if isinstance(result, tuple):
                kind, why = result
                self.log.skip(Problem(records[i].where, why, kind))
            else:
                rows.append(result)
                decoded.append(i)
        X = np.stack(rows) if rows else np.empty((0, size * size), dtype=np.float32)
        return decoded, X


def hash_file(path: str | Path) -> tuple[str, str | None]:
    """``(SHA-256 of the file's bytes, file_id)``, or ``(why, None)`` when it cannot be read."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            ident = file_id(os.fstat(fh.fileno()))
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}", None
    return digest.hexdigest(), ident


def decode_image(
    path: Path, uid: str, size: int, max_pixels: int | None = None
) -> np.ndarray | tuple[str, str]:
    """The image's feature row, or ``(kind, why)`` when it could not be read.

    The bytes decoded are checked against ``uid`` (the hash taken when the folder was
    scanned), so a file changed in between is reported instead of imported wrongly.
    """
    from PIL import UnidentifiedImageError

    changed = ("unreadable file", "the file changed while it was being imported; import it again")
    try:
        if path.stat().st_size <= IN_MEMORY_BYTES:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != uid:
                return changed
            return image_features(data, size, max_pixels)
        with path.open("rb") as fh:
            row = image_features(fh, size, max_pixels)
        if hash_file(path)[0] != uid:
            return changed
        return row
    except ImageTooLargeError as exc:
        return "too large", str(exc)
    except UnidentifiedImageError:
        return "unreadable file", "not a readable image (unknown format, or a corrupt file)"
    except OSError as exc:
        if exc.strerror:
            return "unreadable file", f"cannot read the file: {exc.strerror}"
        return "unreadable file", f"not a readable image ({type(exc).__name__}: {exc})"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt input
        return "unreadable file", f"not a readable image ({type(exc).__name__}: {exc})"
