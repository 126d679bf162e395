"""Deep Zoom tiles of slides and large images, made on demand and cached.

:class:`DeepZoom` wraps :class:`openslide.deepzoom.DeepZoomGenerator` over a slide (or a
plain image, through :func:`exemplar.media.slides.open_slide`): the DZI descriptor and
each tile, encoded as JPEG (``quality`` 85 by default) or PNG. Tiles are ``tile_size``
pixels (254 by default) plus ``overlap`` (1) on each inner side, so most tiles are 256
pixels square, as OpenSeadragon expects.

:class:`~exemplar.media.tilecache.TileCache` keeps the encoded tiles on disk (one file per
tile, ``<key>/<settings>/<level>/<col>_<row>.<fmt>``, written atomically) and in a
byte-bounded in-memory LRU; a tile missing from both is made once. Everything here is safe
to share between threads (a web server answers tile requests from a thread pool). A
:class:`DeepZoom` keeps only the pyramid's shape: the slide and its generator live in
:mod:`exemplar.media.slides`' bounded LRU of open slides, and a file that changed since the
pyramid was made is refused (:class:`~exemplar.errors.DatasetError`), so tiles of another
file never land under this file's cache key.

A tile is named by its key (which file, with which tile settings) and address; for a given
key the bytes never change, so the server may let browsers cache them for good.
"""

from __future__ import annotations

from pathlib import Path

from openslide import OpenSlideError
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from exemplar.errors import DatasetError
from exemplar.media.slides import Slide, derived, read_region, reopen, slide_identity
from exemplar.media.tilecache import (
    DEFAULT_MEMORY_BYTES,
    ByteLRU,
    NoSuchTileError,
    TileCache,
    TileFormat,
    encode_image,
)

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "ByteLRU",
    "DeepZoom",
    "NoSuchTileError",
    "TileCache",
    "encode_image",
]


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
        self.identity = slide_identity(path)
        generator = self._generator()
        self.level_count = int(generator.level_count)
        self.level_tiles = tuple((int(c), int(r)) for c, r in generator.level_tiles)
        self.level_dimensions = tuple((int(w), int(h)) for w, h in generator.level_dimensions)
        self.width, self.height = self.level_dimensions[-1]
        self._dzi = str(generator.get_dzi(self.fmt))

    def _generator(self) -> DeepZoomGenerator:
        """The Deep Zoom generator over the open slide, kept with the slide's handle (never
        here: a pyramid must not keep its slide open past the handle LRU's bounds).

        Raises
        ------
        DatasetError
            The file is gone or changed since this pyramid was made.
        """

        def make(slide: Slide) -> DeepZoomGenerator:
            return DeepZoomGenerator(slide, self.tile_size, self.overlap, limit_bounds=False)

        return derived(self.path, ("deepzoom", self.tile_size, self.overlap), make, self.identity)

    def dzi(self) -> str:
        """The DZI descriptor (XML) of the pyramid."""
        return self._dzi

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
            image = self._generator().get_tile(level, (col, row))
        except (OpenSlideError, OSError, ValueError):
            # An OpenSlide handle that failed once fails every call after: go on with a new
            # one, and report the tile only if it fails there too.
            reopen(self.path)
            generator = self._generator()
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
            if slide_identity(self.path) != self.identity:
                raise DatasetError(f"cannot read slide '{self.path}': it changed since opened")
            pixels = read_region(self.path, (x, y), scale, (w, h))
            return encode_image(Image.fromarray(pixels), "png")

        return self.cache.get(name, make)
