"""The viewer API: where an item lies in its slide, and the Deep Zoom tiles around it.

- ``GET /api/v1/items/{item_id}/viewer``: what the browser's viewer opens for an item
  (SPEC13's contract): its size in item pixels, the URL of its own pixels, the Deep Zoom
  descriptor to show around it (a slide's, or the item's own when it is a plain image
  larger than :data:`DEEP_ZOOM_MIN_SIDE` on a side), where the item lies in that pyramid's
  level-0 pixels (``region``) and at which ``scale`` (pyramid pixels per item pixel; a point
  ``(x, y)`` of the item is ``(region.x + x * scale, region.y + y * scale)`` there), and
  its slide's or video's facts.
- ``GET /api/v1/slides/{media_id}-{version}.dzi`` and
  ``GET /api/v1/slides/{media_id}-{version}_files/{level}/{col}_{row}.jpeg``: a slide's
  pyramid.
- ``GET /api/v1/items/{item_id}/deepzoom-{version}.dzi`` and
  ``.../deepzoom-{version}_files/{level}/{col}_{row}.jpeg``: the pyramid of a large plain
  image item.

``version`` is the first :data:`VERSION_CHARS` characters of the slide's or image's content
hash (its ``uid``): ids restart at 1 in every project, so the id alone does not say which
pixels a URL shows, and browsers keep tiles for a week. A version that is not the file's
is 404. OpenSeadragon keeps it: it derives the tiles' URLs from the DZI's by replacing
``.dzi`` with ``_files/``.

Tiles are made on demand and cached (:mod:`exemplar.media.deepzoom`): on disk under the
project's ``cache/tiles/<slide or image content hash>/`` (at most
:data:`~exemplar.media.tilecache.DEFAULT_DISK_BYTES`, least recently used files evicted),
and in memory (a byte-bounded LRU per process, :data:`MEMORY_BYTES`). A tile's bytes never
change for a given file, so responses carry an ``ETag`` (of the tile's content-hashed cache
name) and ``Cache-Control: immutable``; a tile already in memory is answered on the event
loop, without a worker thread. Pyramids, tiles and regions not in memory are made on a
small executor of this module's own (:data:`RENDER_THREADS` threads per process), never on
the thread pool that runs the synchronous API routes, so a burst of cold tiles does not
hold up object writes. A region item's own pixels (``GET /api/v1/media/{item_id}``) are
rendered from its slide and cached the same way (:func:`region_image`). Any logged-in user
may read them, as they may read ``/media``. A file that changed or moved since import is
refused (404), as ``/media`` refuses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, HTTPException, Request, Response
from PIL import Image, UnidentifiedImageError

from exemplar.errors import DatasetError
from exemplar.media.tilecache import ByteLRU, NoSuchTileError, TileCache
from exemplar.project import Project
from exemplar.server.deps import API_PREFIX, Labeler, PathId, State
from exemplar.server.schemas import MAX_DB_ID
from exemplar.server.security import media_file
from exemplar.store.media import get_media
from exemplar.store.schema import Item, Media, MediaKind

if TYPE_CHECKING:  # openslide is an optional extra: imported when a pyramid is first made
    from exemplar.media.deepzoom import DeepZoom

__all__ = [
    "DEEP_ZOOM_MIN_SIDE",
    "MAX_PYRAMIDS",
    "MEMORY_BYTES",
    "RENDER_THREADS",
    "Pyramids",
    "content_version",
    "pyramids",
    "region_image",
    "render",
    "render_executor",
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
#: Pyramids kept per project and process: as many as the slides
#: :mod:`exemplar.media.slides` keeps open (``MAX_OPEN``; a pyramid holds only its shape,
#: its slide stays in that bounded LRU, plain images within ``PLAIN_BYTES`` decoded).
MAX_PYRAMIDS = 16
#: Threads per process that make pyramids, tiles and regions.
RENDER_THREADS = 2
#: Characters of a file's content hash in its pyramid's URLs.
VERSION_CHARS = 16
_VERSION = re.compile(rf"[0-9a-f]{{{VERSION_CHARS}}}")
_SLIDE_REF = re.compile(rf"([1-9][0-9]{{0,18}})-([0-9a-f]{{{VERSION_CHARS}}})")
TILE_CACHE_CONTROL = "private, max-age=604800, immutable"
DZI_CACHE_CONTROL = "private, max-age=3600"
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}

log = logging.getLogger("exemplar.server")
T = TypeVar("T")

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()
_THREAD_PREFIX = "exemplar-render"


def render_executor() -> ThreadPoolExecutor:
    """The executor that makes pyramids, tiles and regions in this process
    (:data:`RENDER_THREADS` threads, created on first use)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        with _EXECUTOR_LOCK:
            if _EXECUTOR is None:
                _EXECUTOR = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix=_THREAD_PREFIX)
    return _EXECUTOR


async def render(work: Callable[[], T]) -> T:
    """``work()`` run on :func:`render_executor`, awaited (its exception re-raised)."""
    return await asyncio.get_running_loop().run_in_executor(render_executor(), work)


def _render_now(work: Callable[[], T]) -> T:
    """``work()`` run on :func:`render_executor` from a synchronous caller, which waits
    (inline when the caller is one of its threads)."""
    if threading.current_thread().name.startswith(_THREAD_PREFIX):
        return work()
    return render_executor().submit(work).result()


def content_version(uid: str) -> str:
    """The version of a file's pyramid URLs: the start of its content hash."""
    return uid[:VERSION_CHARS]


@dataclass(frozen=True)
class _Entry:
    pyramid: DeepZoom
    version: str
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

    def fresh(self, key: tuple[str, int], version: str | None = None) -> DeepZoom | None:
        """The pyramid of ``key`` if it was checked less than :data:`CHECK_SECONDS` ago
        and is of ``version`` (any when None); no file or database access: safe on the
        event loop."""
        entry = self._entries.get(key)
        if entry is None or entry.checked_until < time.monotonic():
            return None
        if version is not None and entry.version != version:
            return None
        return entry.pyramid

    def slide(self, media_id: int, version: str | None = None) -> DeepZoom | None:
        """The pyramid of slide ``media_id`` (None: no such slide, its file changed, or
        ``version`` is given and is not its :func:`content_version`)."""
        key = ("slide", media_id)
        found = self.fresh(key, version)
        if found is not None:
            return found
        with self.project.db.read() as s:
            media = get_media(s, media_id)
        if media is None or media.kind != MediaKind.SLIDE.value:
            return None
        if version is not None and content_version(media.uid) != version:
            return None
        path = media_file(media.uri, media.file_id)
        if path is None:
            return None
        return self._keep(key, path, f"slide-{media.uid[:32]}", content_version(media.uid))

    def image(self, item_id: int, version: str | None = None) -> DeepZoom | None:
        """The pyramid of a plain image item larger than :data:`DEEP_ZOOM_MIN_SIDE` (None
        as :meth:`slide`)."""
        key = ("item", item_id)
        found = self.fresh(key, version)
        if found is not None:
            return found
        with self.project.db.read() as s:
            item = s.get(Item, item_id)
        if item is None or item.kind != "image" or item.media_id is not None:
            return None
        if version is not None and content_version(item.uid) != version:
            return None
        path = media_file(item.uri, item.file_id)
        if path is None or max(_image_size(item, path)) <= DEEP_ZOOM_MIN_SIDE:
            return None
        return self._keep(key, path, f"image-{item.uid[:32]}", content_version(item.uid))

    def __len__(self) -> int:
        return len(self._entries)

    def _keep(
        self, key: tuple[str, int], path: Path, cache_key: str, version: str
    ) -> DeepZoom | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.pyramid.path == path and entry.version == version:
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
            self._entries[key] = _Entry(pyramid, version, time.monotonic() + CHECK_SECONDS)
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
    gone or changed). Rendered on :func:`render_executor` (the caller waits)."""
    with project.db.read() as s:
        item = s.get(Item, item_id)
        if item is None or item.media_id is None or item.origin_x is None:
            return None
        media_id, origin = item.media_id, (int(item.origin_x), int(item.origin_y or 0))
        scale, size = float(item.scale or 1.0), (int(item.width or 0), int(item.height or 0))
    if min(size) < 1:
        return None

    def make() -> bytes | None:
        pyramid = pyramids(project).slide(media_id)
        if pyramid is None:
            return None
        try:
            return pyramid.region_png(origin, scale, size)
        except DatasetError as exc:
            log.warning("region item %s: %s", item_id, exc)
            return None

    return _render_now(make)


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
                dzi_url=f"{API_PREFIX}/slides/{media.id}-{content_version(media.uid)}.dzi",
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
            version = content_version(item.uid)
            info["dzi_url"] = f"{API_PREFIX}/items/{item.id}/deepzoom-{version}.dzi"
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


def _slide_ref(text: str) -> tuple[int, str]:
    """``(media_id, version)`` of a slide's ``{media_id}-{version}`` in a URL (else 404)."""
    found = _SLIDE_REF.fullmatch(text)
    if found is None or int(found[1]) > MAX_DB_ID:
        raise HTTPException(404, "no such slide (its URL is /slides/{id}-{version}.dzi)")
    return int(found[1]), found[2]


def _image_version(text: str) -> str:
    if _VERSION.fullmatch(text) is None:
        raise HTTPException(404, "no such image pyramid version")
    return text


def _find(store: Pyramids, key: tuple[str, int], version: str) -> DeepZoom | None:
    if key[0] == "slide":
        return store.slide(key[1], version)
    return store.image(key[1], version)


async def _tile(
    request: Request,
    project: Project,
    key: tuple[str, int],
    version: str,
    where: tuple[str, str, str, str],
) -> Response:
    level, col, row = _address(*where[:3])
    fmt = where[3]
    store = pyramids(project)
    pyramid = store.fresh(key, version)
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
        found = _find(store, key, version)
        if found is None:
            raise HTTPException(404, "no such slide or image (or not this version of it)")
        try:
            return found.tile(level, col, row, fmt), found.tile_name(level, col, row)
        except NoSuchTileError as exc:
            raise HTTPException(404, str(exc)) from exc
        except DatasetError as exc:
            log.warning("tile %s/%s_%s of %s %s: %s", level, col, row, key[0], key[1], exc)
            raise HTTPException(404, f"cannot read this tile: {exc}") from exc

    made, name = await render(make)
    return _answer(request, made, MEDIA_TYPES[fmt], _etag(name), TILE_CACHE_CONTROL)


async def _dzi(request: Request, project: Project, key: tuple[str, int], version: str) -> Response:
    def make() -> tuple[str, str]:
        found = _find(pyramids(project), key, version)
        if found is None:
            raise HTTPException(
                404, "no such slide or image (or not this version, or not large enough for tiles)"
            )
        return found.dzi(), found.prefix

    xml, prefix = await render(make)
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

    @api.get("/slides/{slide}.dzi", response_class=Response)
    async def slide_dzi(slide: str, request: Request, _user: Labeler, state: State) -> Response:
        """The Deep Zoom descriptor (XML) of a slide; ``slide`` is ``{media_id}-{version}``
        (the viewer JSON's ``dzi_url``)."""
        media_id, version = _slide_ref(slide)
        return await _dzi(request, state.project, ("slide", media_id), version)

    @api.get("/slides/{slide}_files/{level}/{col}_{row}.{fmt}", response_class=Response)
    async def slide_tile(
        slide: str,
        level: str,
        col: str,
        row: str,
        fmt: str,
        request: Request,
        _user: Labeler,
        state: State,
    ) -> Response:
        """A tile of a slide's Deep Zoom pyramid (JPEG); 404 outside the pyramid."""
        media_id, version = _slide_ref(slide)
        where = (level, col, row, fmt)
        return await _tile(request, state.project, ("slide", media_id), version, where)

    @api.get("/items/{item_id}/deepzoom-{version}.dzi", response_class=Response)
    async def image_dzi(
        item_id: PathId, version: str, request: Request, _user: Labeler, state: State
    ) -> Response:
        """The Deep Zoom descriptor of a plain image item larger than 4096 px on a side."""
        return await _dzi(request, state.project, ("item", item_id), _image_version(version))

    @api.get(
        "/items/{item_id}/deepzoom-{version}_files/{level}/{col}_{row}.{fmt}",
        response_class=Response,
    )
    async def image_tile(
        item_id: PathId,
        version: str,
        level: str,
        col: str,
        row: str,
        fmt: str,
        request: Request,
        _user: Labeler,
        state: State,
    ) -> Response:
        """A tile of a large plain image's Deep Zoom pyramid (JPEG)."""
        where = (level, col, row, fmt)
        key = ("item", item_id)
        return await _tile(request, state.project, key, _image_version(version), where)

    return api
