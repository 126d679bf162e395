"""Encoded tiles cached on disk and in a bounded in-memory LRU (no OpenSlide needed).

:class:`TileCache` keeps encoded tiles (or any small files) twice: on disk under a folder
the caller gives (``<key>/.../<name>``, written to a temporary file and moved into place
with :func:`os.replace`, so a reader never sees half a file and two writers never clash),
and in a :class:`ByteLRU` bounded in bytes. An entry missing from both is made once:
concurrent requests for it wait for the first one to make it instead of making it again.
Everything here is safe to share between threads. :mod:`exemplar.media.deepzoom` makes the
tiles; this module is apart so that the server can import it without openslide installed.

The disk cache is bounded too (:data:`DEFAULT_DISK_BYTES`): each :class:`TileCache` keeps
a running total of the folder's bytes (measured by one scan at its first write, then
counting its own writes) and, when the total passes the bound, scans the folder again and
deletes the least recently used files (by modification time: a file read from disk is
touched) until it holds :data:`LOW_WATER` of the bound. Several threads and processes may
share the folder: a process also rescans after writing a sixteenth of the bound, so the
others' writes are counted; a file deleted under a reader that has opened it reads whole
(POSIX), and one deleted before is made again, like any missing tile.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from PIL import Image

__all__ = [
    "DEFAULT_DISK_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "ByteLRU",
    "NoSuchTileError",
    "TileCache",
    "TileFormat",
    "encode_image",
]

TileFormat = Literal["jpeg", "png"]
#: The in-memory tile cache's default bound: 64 MiB of encoded tiles (about 4,000 JPEG
#: tiles of 256x256).
DEFAULT_MEMORY_BYTES = 64 << 20
#: The disk cache's default bound: 2 GiB of files under its folder (about 270,000 JPEG
#: tiles of 256x256).
DEFAULT_DISK_BYTES = 2 << 30
#: After eviction the disk cache holds at most this share of its bound.
LOW_WATER = 0.9

log = logging.getLogger("exemplar.media")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


class NoSuchTileError(LookupError):
    """A tile address outside the pyramid (level, column or row out of range, or a format
    the pyramid is not served in)."""


class ByteLRU:
    """A least-recently-used map of byte strings bounded by their total size, thread-safe.

    Parameters
    ----------
    max_bytes : int
        The bound; values larger than a quarter of it are not kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The bytes of ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: bytes) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used over the bound."""
        if len(value) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._data[key] = value
            self.size += len(value)
            while self.size > self.max_bytes and self._data:
                _, dropped = self._data.popitem(last=False)
                self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._data)


class TileCache:
    """Encoded tiles on disk under ``root`` and in a shared :class:`ByteLRU`.

    Parameters
    ----------
    root : Path
        The folder of the disk cache (created when the first tile is written).
    memory : ByteLRU, optional
        The in-memory cache (a new one of :data:`DEFAULT_MEMORY_BYTES` when None).
    max_disk_bytes : int
        The bound on the files under ``root`` (see the module).
    """

    def __init__(
        self,
        root: Path,
        memory: ByteLRU | None = None,
        max_disk_bytes: int = DEFAULT_DISK_BYTES,
    ) -> None:
        if max_disk_bytes < 1:
            raise ValueError(f"max_disk_bytes must be positive, got {max_disk_bytes}")
        self.root = Path(root)
        self.memory = memory if memory is not None else ByteLRU()
        self.max_disk_bytes = int(max_disk_bytes)
        self.made = 0
        self.from_disk = 0
        self.evicted = 0
        self.scans = 0
        self._locks = [threading.Lock() for _ in range(64)]
        self._disk_bytes: int | None = None  # the running total; None until the first scan
        self._since_scan = 0
        self._total_lock = threading.Lock()
        self._scanning = threading.Lock()

    def path_of(self, name: str) -> Path:
        """The disk path of a cached entry named ``"<key>/.../<file>"``.

        Raises
        ------
        ValueError
            A segment is empty, ``..`` or holds characters other than letters, digits,
            ``.``, ``_``, ``=`` and ``-``.
        """
        parts = name.split("/")
        if not all(_SEGMENT.match(p) and p not in (".", "..") for p in parts):
            raise ValueError(f"not a tile cache name: {name!r}")
        return self.root.joinpath(*parts)

    def peek(self, name: str) -> bytes | None:
        """The bytes of ``name`` if they are in memory (no disk access)."""
        return self.memory.get(name)

    def get(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The bytes of ``name``: from memory, else from disk, else made by ``make`` and
        stored in both."""
        found = self.memory.get(name)
        if found is not None:
            return found
        path = self.path_of(name)
        wrote = False
        with self._locks[zlib.crc32(name.encode()) % len(self._locks)]:
            found = self.memory.get(name)  # made while this thread waited
            if found is not None:
                return found
            try:
                data = path.read_bytes()
                self.from_disk += 1
                _touch(path)
            except FileNotFoundError:  # never made, or evicted (by any process)
                data = make()
                wrote = self._write(path, data)
                self.made += 1
            self.memory.put(name, data)
        if wrote:
            self._count(len(data))
        return data

    def disk_bytes(self) -> int | None:
        """The running total of the disk cache's bytes (None before the first write)."""
        return self._disk_bytes

    def _write(self, path: Path, data: bytes) -> bool:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full or read-only disk: serve from memory only
            return False
        return True

    def _count(self, size: int) -> None:
        """Add a written file to the running total; scan (and evict) when it is due."""
        with self._total_lock:
            if self._disk_bytes is None:
                due = True
            else:
                self._disk_bytes += size
                self._since_scan += size
                due = (
                    self._disk_bytes > self.max_disk_bytes
                    or self._since_scan > self.max_disk_bytes // 16
                )
        if due:
            self.trim()

    def trim(self) -> None:
        """Measure the disk cache and, over the bound, delete its least recently used files
        down to :data:`LOW_WATER` of it. One thread of a process at a time (another
        thread's call returns at once); safe beside other processes doing the same."""
        if not self._scanning.acquire(blocking=False):
            return
        try:
            files = _files(self.root)
            total = sum(size for _, size, _ in files)
            if total > self.max_disk_bytes:
                target = int(self.max_disk_bytes * LOW_WATER)
                files.sort()  # oldest first
                for _, size, path in files:
                    if total <= target:
                        break
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass  # another process evicted it first
                    except OSError as exc:
                        log.warning("cannot evict %s from the tile cache: %s", path, exc)
                        continue
                    else:
                        self.evicted += 1
                    total -= size
            with self._total_lock:
                self._disk_bytes = total
                self._since_scan = 0
                self.scans += 1
        finally:
            self._scanning.release()


def _touch(path: Path) -> None:
    """Mark a cached file as just used (its modification time orders eviction)."""
    try:
        os.utime(path)
    except OSError:
        pass  # evicted meanwhile, or a read-only disk: the order is only a hint


def _files(root: Path) -> list[tuple[int, int, str]]:
    """``(modification time ns, size, path)`` of the cache's files (temporary files of
    writes in progress left out); files deleted during the walk are skipped."""
    found: list[tuple[int, int, str]] = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            found.append((stat.st_mtime_ns, stat.st_size, path))
    return found


def encode_image(image: Image.Image, fmt: TileFormat, quality: int = 85) -> bytes:
    """A tile or region as JPEG (``quality``) or PNG bytes."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
