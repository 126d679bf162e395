"""The viewer API: where an item lies in its slide, and the Deep Zoom tiles around it.

- ``GET /api/v1/items/{item_id}/viewer``: what the browser's viewer opens for an item
  (SPEC13's contract): its size in item pixels, the URL of its own pixels, the Deep Zoom
  descriptor to show around it (a slide's, or the item's own when it is a plain image
  larger than :data:`DEEP_ZOOM_MIN_SIDE` on a side), where the item lies in that pyramid's
  level-0 pixels (``region``) and at which ``scale`` (pyramid pixels per item pixel; a point
  ``(x, y)`` of the item is ``(region.x + x * scale, region.y + y * scale)`` there), and
  its slide's or video's facts.
- ``GET /api/v1/slides/{media_id}.dzi`` and
  ``GET /api/v1/slides/{media_id}_files/{level}/{col}_{row}.jpeg``: a slide's pyramid.
- ``GET /api/v1/items/{item_id}/deepzoom.dzi`` and ``.../deepzoom_files/{level}/{col}_{row}.jpeg``:
  the pyramid of a large plain image item.

Tiles are made on demand and cached (:mod:`exemplar.media.deepzoom`): on disk under the
project's ``cache/tiles/<slide or image content hash>/``, and in memory (a byte-bounded LRU
per process, :data:`MEMORY_BYTES`). A tile's bytes never change for a given file, so
responses carry an ``ETag`` and ``Cache-Control: immutable``; a tile already in memory is
answered on the event loop, without a worker thread. A region item's own pixels
(``GET /api/v1/media/{item_id}``) are rendered from its slide and cached the same way
(:func:`region_image`). Any logged-in user may read them, as they may read ``/media``.
A file that changed or moved since import is refused (404), as ``/media`` refuses it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image, UnidentifiedImageError

from exemplar.errors import DatasetError
from exemplar.media.tilecache import ByteLRU, NoSuchTileError, TileCache
from exemplar.project import Project
from exemplar.server.deps import API_PREFIX, Labeler, PathId, State
from exemplar.server.security import media_file
from exemplar.store.media import get_media
from exemplar.store.schema import Item, Media, MediaKind

if TYPE_CHECKING:  # openslide is an optional extra: imported when a pyramid is first made
    from exemplar.media.deepzoom import DeepZoom

__all__ = [
    "DEEP_ZOOM_MIN_SIDE",
    "MEMORY_BYTES",
    "Pyramids",
    "pyramids",
    "region_image",
    "router",
    "viewer_info",
]

#: Plain images with a longer side than this are served as Deep Zoom tiles; smaller ones
#: are opened whole.
DEEP_ZOOM_MIN_SIDE = 4096
#: Encoded tiles kept in memory per process.
MEMORY_BYTES = 128 << 20
#: Seconds a pyramid is used before its file is checked again (moved, replaced).
CHECK_SECONDS = 5.0
#: Pyramids kept per project and process (each holds its slide open).
MAX_PYRAMIDS = 64
TILE_CACHE_CONTROL = "private, max-age=604800, immutable"
DZI_CACHE_CONTROL = "private, max-age=3600"
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}

log = logging.getLogger("exemplar.server")


@dataclass(frozen=True)
class _Entry:
    pyramid: DeepZoom
    checked_until: float


class Pyramids:
    """The Deep Zoom pyramids of one project's slides and large images, in this process.

    Pyramids are made on first use and checked against their file every
    :data:`CHECK_SECONDS`; all share one tile cache (``<project>/cache/tiles`` and a
    :class:`~exemplar.media.deepzoom.ByteLRU` of :data:`MEMORY_BYTES`).
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.cache = TileCache(project.root / "cache" / "tiles", ByteLRU(MEMORY_BYTES))
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def fresh(self, key: tuple[str, int]) -> DeepZoom | None:
        """The pyramid of ``key`` if it was checked less than :data:`CHECK_SECONDS` ago
        (no file or database access: safe on the event loop)."""
        entry = self._entries.get(key)
        if entry is None or entry.checked_until < time.monotonic():
            return None
        return entry.pyramid

    def slide(self, media_id: int) -> DeepZoom | None:
        """The pyramid of slide ``media_id`` (None: no such slide, or its file changed)."""
        key = ("slide", media_id)
        found = self.fresh(key)
        if found is not None:
            return found
        with self.project.db.read() as s:
            media = get_media(s, media_id)
        if media is None or media.kind != MediaKind.SLIDE.value:
            return None
        path = media_file(media.uri, media.file_id)
        return None if path is None else self._keep(key, path, f"slide-{media.uid[:32]}")

    def image(self, item_id: int) -> DeepZoom | None:
        """The pyramid of a plain image item larger than :data:`DEEP_ZOOM_MIN_SIDE`."""
        key = ("item", item_id)
        found = self.fresh(key)
        if found is not None:
            return found
        with self.project.db.read() as s:
            item = s.get(Item, item_id)
        if item is None or item.kind != "image" or item.media_id is not None:
            return None
        path = media_file(item.uri, item.file_id)
        if path is None or max(_image_size(item, path)) <= DEEP_ZOOM_MIN_SIDE:
            return None
        return self._keep(key, path, f"image-{item.uid[:32]}")

    def _keep(self, key: tuple[str, int], path: Path, cache_key: str) -> DeepZoom | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.pyramid.path == path:
            pyramid = entry.pyramid  # same file (media_file checked its identity)
        else:
            try:
                from exemplar.media.deepzoom import DeepZoom
            except ImportError as exc:
                log.warning(
                    "cannot serve %s as Deep Zoom tiles: %s (install exemplar[slides])", path, exc
                )
                return None
            try:
                pyramid = DeepZoom(path, self.cache, cache_key)
            except DatasetError:
                return None
        with self._lock:
            self._entries[key] = _Entry(pyramid, time.monotonic() + CHECK_SECONDS)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_PYRAMIDS:
                self._entries.popitem(last=False)
        return pyramid


_PYRAMIDS: weakref.WeakKeyDictionary[Project, Pyramids] = weakref.WeakKeyDictionary()
_PYRAMIDS_LOCK = threading.Lock()


def pyramids(project: Project) -> Pyramids:
    """The :class:`Pyramids` of ``project`` in this process (created on first use)."""
    found = _PYRAMIDS.get(project)
    if found is None:
        with _PYRAMIDS_LOCK:
            found = _PYRAMIDS.get(project)
            if found is None:
                found = _PYRAMIDS[project] = Pyramids(project)
    return found


def _image_size(item: Item, path: Path | None) -> tuple[int, int]:
    """An image item's ``(width, height)``: as stored, else from the file's header."""
    if item.width and item.height:
        return int(item.width), int(item.height)
    if path is None:
        return 0, 0
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError):
        return 0, 0


def region_image(project: Project, item_id: int) -> bytes | None:
    """The PNG of a region item's pixels, rendered from its slide at the item's scale and
    cached with the slide's tiles; None when the item is not a region (or its slide is
    gone or changed)."""
    with project.db.read() as s:
        item = s.get(Item, item_id)
        if item is None or item.media_id is None or item.origin_x is None:
            return None
        media_id, origin = item.media_id, (int(item.origin_x), int(item.origin_y or 0))
        scale, size = float(item.scale or 1.0), (int(item.width or 0), int(item.height or 0))
    if min(size) < 1:
        return None
    pyramid = pyramids(project).slide(media_id)
    if pyramid is None:
        return None
    try:
        return pyramid.region_png(origin, scale, size)
    except DatasetError as exc:
        log.warning("region item %s: %s", item_id, exc)
        return None


def _media_facts(media: Media, item: Item) -> dict[str, Any]:
    props = media.properties or {}
    slide = media.kind == MediaKind.SLIDE.value
    return {
        "id": media.id,
        "kind": media.kind,
        "width": media.width,
        "height": media.height,
        "mpp": props.get("mpp_x") if slide else None,
        "objective_power": props.get("objective_power") if slide else None,
        "fps": None if slide else props.get("fps"),
        "frame": None if slide else item.frame,
        "n_frames": None if slide else props.get("n_frames"),
    }


def viewer_info(project: Project, item_id: int) -> dict[str, Any] | None:
    """The JSON of ``GET /api/v1/items/{item_id}/viewer`` (None: no such item)."""
    with project.db.read() as s:
        item = s.get(Item, item_id)
        if item is None:
            return None
        media = None if item.media_id is None else get_media(s, item.media_id)
        s.expunge_all()
    info: dict[str, Any] = {
        "item_id": item.id,
        "kind": "image",
        "width": item.width,
        "height": item.height,
        "image_url": f"{API_PREFIX}/media/{item.id}",
        "dzi_url": None,
        "region": None,
        "scale": 1.0,
        "media": None,
    }
    if media is not None:
        info["media"] = _media_facts(media, item)
        if media.kind == MediaKind.SLIDE.value:
            scale = float(item.scale or 1.0)
            info.update(
                kind="region",
                dzi_url=f"{API_PREFIX}/slides/{media.id}.dzi",
                scale=scale,
                region={
                    "x": item.origin_x,
                    "y": item.origin_y,
                    "width": round((item.width or 0) * scale),
                    "height": round((item.height or 0) * scale),
                },
            )
        else:
            info["kind"] = "frame"
        return info
    if item.kind == "image":
        width, height = _image_size(item, media_file(item.uri, item.file_id))
        info.update(width=width or None, height=height or None)
        if max(width, height) > DEEP_ZOOM_MIN_SIDE:
            info["dzi_url"] = f"{API_PREFIX}/items/{item.id}/deepzoom.dzi"
    return info


def _etag(name: str) -> str:
    return '"' + hashlib.blake2b(name.encode(), digest_size=12).hexdigest() + '"'


def _answer(request: Request, data: bytes, media_type: str, etag: str, control: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": control}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def _address(level: str, col: str, row: str) -> tuple[int, int, int]:
    try:
        return int(level), int(col), int(row)
    except ValueError:
        raise HTTPException(404, "no such tile") from None


async def _tile(
    request: Request, project: Project, key: tuple[str, int], where: tuple[str, str, str, str]
) -> Response:
    level, col, row = _address(*where[:3])
    fmt = where[3]
    store = pyramids(project)
    pyramid = store.fresh(key)
    if pyramid is not None:  # the common case: answered here, no worker thread
        try:
            pyramid.check(level, col, row, fmt)
        except NoSuchTileError as exc:
            raise HTTPException(404, str(exc)) from exc
        data = pyramid.cached_tile(level, col, row)
        if data is not None:
            name = pyramid.tile_name(level, col, row)
            return _answer(request, data, MEDIA_TYPES[fmt], _etag(name), TILE_CACHE_CONTROL)

    def make() -> tuple[bytes, str]:
        found = store.slide(key[1]) if key[0] == "slide" else store.image(key[1])
        if found is None:
            raise HTTPException(404, "no such slide or image")
        try:
            return found.tile(level, col, row, fmt), found.tile_name(level, col, row)
        except NoSuchTileError as exc:
            raise HTTPException(404, str(exc)) from exc
        except DatasetError as exc:
            log.warning("tile %s/%s_%s of %s %s: %s", level, col, row, key[0], key[1], exc)
            raise HTTPException(404, f"cannot read this tile: {exc}") from exc

    made, name = await run_in_threadpool(make)
    return _answer(request, made, MEDIA_TYPES[fmt], _etag(name), TILE_CACHE_CONTROL)


async def _dzi(request: Request, project: Project, key: tuple[str, int]) -> Response:
    def make() -> tuple[str, str]:
        store = pyramids(project)
        found = store.slide(key[1]) if key[0] == "slide" else store.image(key[1])
        if found is None:
            raise HTTPException(404, "no such slide or image (or not large enough for tiles)")
        return found.dzi(), found.prefix

    xml, prefix = await run_in_threadpool(make)
    return _answer(request, xml.encode(), "application/xml", _etag(prefix), DZI_CACHE_CONTROL)


def router() -> APIRouter:
    """The viewer routes (tag ``viewer``)."""
    api = APIRouter(prefix=API_PREFIX, tags=["viewer"])

    @api.get("/items/{item_id}/viewer")
    def viewer(item_id: PathId, _user: Labeler, state: State) -> dict[str, Any]:
        """Where the item lies in its slide (or video), and what the viewer opens around it."""
        info = viewer_info(state.project, item_id)
        if info is None:
            raise HTTPException(404, "no such item")
        return info

    @api.get("/slides/{media_id}.dzi", response_class=Response)
    async def slide_dzi(
        media_id: PathId, request: Request, _user: Labeler, state: State
    ) -> Response:
        """The Deep Zoom descriptor (XML) of a slide."""
        return await _dzi(request, state.project, ("slide", media_id))

    @api.get("/slides/{media_id}_files/{level}/{col}_{row}.{fmt}", response_class=Response)
    async def slide_tile(
        media_id: PathId,
        level: str,
        col: str,
        row: str,
        fmt: str,
        request: Request,
        _user: Labeler,
        state: State,
    ) -> Response:
        """A tile of a slide's Deep Zoom pyramid (JPEG); 404 outside the pyramid."""
        return await _tile(request, state.project, ("slide", media_id), (level, col, row, fmt))

    @api.get("/items/{item_id}/deepzoom.dzi", response_class=Response)
    async def image_dzi(
        item_id: PathId, request: Request, _user: Labeler, state: State
    ) -> Response:
        """The Deep Zoom descriptor of a plain image item larger than 4096 px on a side."""
        return await _dzi(request, state.project, ("item", item_id))

    @api.get("/items/{item_id}/deepzoom_files/{level}/{col}_{row}.{fmt}", response_class=Response)
    async def image_tile(
        item_id: PathId,
        level: str,
        col: str,
        row: str,
        fmt: str,
        request: Request,
        _user: Labeler,
        state: State,
    ) -> Response:
        """A tile of a large plain image's Deep Zoom pyramid (JPEG)."""
        return await _tile(request, state.project, ("item", item_id), (level, col, row, fmt))

    return api
