"""Deep Zoom tiles of slides and large images, made on demand and cached.

:class:`DeepZoom` wraps :class:`openslide.deepzoom.DeepZoomGenerator` over a slide (or a
plain image, through :func:`exemplar.media.slides.open_slide`): the DZI descriptor and
each tile, encoded as JPEG (``quality`` 85 by default) or PNG. Tiles are ``tile_size``
pixels (254 by default) plus ``overlap`` (1) on each inner side, so most tiles are 256
pixels square, as OpenSeadragon expects.

:class:`TileCache` keeps encoded tiles twice: on disk under a folder the caller gives (one
file per tile, ``<key>/<level>/<col>_<row>.<fmt>``, written to a temporary file and moved
into place with :func:`os.replace`, so a reader never sees half a tile and two writers never
clash), and in a bounded in-memory LRU of the bytes (:class:`ByteLRU`, bounded in bytes).
A tile missing from both is made once: concurrent requests for the same tile wait for the
first one to make it instead of making it again. Everything here is safe to share between
threads (a web server answers tile requests from a thread pool).

A tile is named by its key (which file, with which tile settings) and address; for a given
key the bytes never change, so the server may let browsers cache them for good.
"""

from __future__ import annotations

import io
import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from openslide import OpenSlideError
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from exemplar.errors import DatasetError
from exemplar.media.slides import open_slide, read_region, reopen

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "ByteLRU",
    "DeepZoom",
    "NoSuchTileError",
    "TileCache",
    "encode_image",
]

TileFormat = Literal["jpeg", "png"]
#: The in-memory tile cache's default bound: 64 MiB of encoded tiles (about 4,000 JPEG
#: tiles of 256x256).
DEFAULT_MEMORY_BYTES = 64 << 20
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
    """

    def __init__(self, root: Path, memory: ByteLRU | None = None) -> None:
        self.root = Path(root)
        self.memory = memory if memory is not None else ByteLRU()
        self.made = 0
        self.from_disk = 0
        self._locks = [threading.Lock() for _ in range(64)]

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
        with self._locks[zlib.crc32(name.encode()) % len(self._locks)]:
            found = self.memory.get(name)  # made while this thread waited
            if found is not None:
                return found
            try:
                data = path.read_bytes()
                self.from_disk += 1
            except FileNotFoundError:
                data = make()
                self._write(path, data)
                self.made += 1
            self.memory.put(name, data)
        return data

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full or read-only disk: serve from memory only


def encode_image(image: Image.Image, fmt: TileFormat, quality: int = 85) -> bytes:
    """A tile or region as JPEG (``quality``) or PNG bytes."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class DeepZoom:
    """The Deep Zoom pyramid of one slide or image file, its tiles cached.

    Parameters
    ----------
    path : Path
        The slide (any file :func:`exemplar.media.slides.open_slide` reads).
    cache : TileCache
        Where tiles are kept.
    key : str
        The file's name in the cache (e.g. its content hash): tiles are stored under
        ``<key>/<settings>/``, so other tile settings never collide.
    tile_size, overlap : int
        Deep Zoom's tile side and overlap in pixels.
    fmt : {"jpeg", "png"}
        The tiles' encoding.
    quality : int
        JPEG quality.

    Raises
    ------
    DatasetError
        The file cannot be read.
    """

    def __init__(
        self,
        path: Path | str,
        cache: TileCache,
        key: str,
        *,
        tile_size: int = 254,
        overlap: int = 1,
        fmt: TileFormat = "jpeg",
        quality: int = 85,
    ) -> None:
        if fmt not in ("jpeg", "png"):
            raise ValueError(f"tile format must be 'jpeg' or 'png', got {fmt!r}")
        self.path = Path(path)
        self.cache = cache
        self.fmt: TileFormat = fmt
        self.quality = quality
        settings = f"t{tile_size}-o{overlap}-{fmt}" + (f"-q{quality}" if fmt == "jpeg" else "")
        self.prefix = f"{key}/{settings}"
        cache.path_of(self.prefix)  # checks the key
        self.tile_size, self.overlap = tile_size, overlap
        self.generator = DeepZoomGenerator(
            open_slide(path), tile_size=tile_size, overlap=overlap, limit_bounds=False
        )
        self.level_count = int(self.generator.level_count)
        self.level_tiles = tuple((int(c), int(r)) for c, r in self.generator.level_tiles)
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self.generator.level_dimensions)
        self.width, self.height = self.level_dimensions[-1]

    def dzi(self) -> str:
        """The DZI descriptor (XML) of the pyramid."""
        return str(self.generator.get_dzi(self.fmt))

    def tile_name(self, level: int, col: int, row: int) -> str:
        """The cache name of a tile (its bytes never change for this key and settings)."""
        return f"{self.prefix}/{level}/{col}_{row}.{self.fmt}"

    def check(self, level: int, col: int, row: int, fmt: str | None = None) -> None:
        """Raise :class:`NoSuchTileError` unless the address is in the pyramid."""
        if fmt is not None and fmt != self.fmt:
            raise NoSuchTileError(f"tiles are served as .{self.fmt}, not .{fmt}")
        if not 0 <= level < self.level_count:
            raise NoSuchTileError(f"no level {level}: levels are 0 to {self.level_count - 1}")
        cols, rows = self.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise NoSuchTileError(
                f"no tile ({col}, {row}) at level {level}: it has {cols}x{rows} tiles"
            )

    def cached_tile(self, level: int, col: int, row: int) -> bytes | None:
        """The tile's bytes if they are in memory, else None (never reads the slide)."""
        return self.cache.peek(self.tile_name(level, col, row))

    def tile(self, level: int, col: int, row: int, fmt: str | None = None) -> bytes:
        """The encoded tile at ``(level, col, row)``, from the cache or made now.

        Raises
        ------
        NoSuchTileError
            The address is outside the pyramid.
        DatasetError
            The slide cannot be read there.
        """
        self.check(level, col, row, fmt)
        return self.cache.get(self.tile_name(level, col, row), lambda: self._make(level, col, row))

    def _make(self, level: int, col: int, row: int) -> bytes:
        try:
            image = self.generator.get_tile(level, (col, row))
        except (OpenSlideError, OSError, ValueError):
            # An OpenSlide handle that failed once fails every call after: go on with a new
            # one, and report the tile only if it fails there too.
            generator = DeepZoomGenerator(
                reopen(self.path), self.tile_size, self.overlap, limit_bounds=False
            )
            self.generator = generator
            try:
                image = generator.get_tile(level, (col, row))
            except (OpenSlideError, OSError, ValueError) as exc:
                raise DatasetError(
                    f"cannot read slide '{self.path}' at level {level} tile ({col}, {row}): {exc}"
                ) from exc
        return encode_image(image, self.fmt, self.quality)

    def region_png(self, origin: tuple[int, int], scale: float, size: tuple[int, int]) -> bytes:
        """A region's pixels as PNG (as :func:`exemplar.media.slides.read_region` reads
        them), cached like the tiles."""
        x, y = int(origin[0]), int(origin[1])
        w, h = int(size[0]), int(size[1])
        name = f"{self.prefix}/regions/{x}_{y}_s{scale:.6g}_{w}x{h}.png"

        def make() -> bytes:
            pixels = read_region(self.path, (x, y), scale, (w, h))
            return encode_image(Image.fromarray(pixels), "png")

        return self.cache.get(name, make)
