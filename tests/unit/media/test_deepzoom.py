"""Deep Zoom tiles (exemplar.media.deepzoom) of the fixture slide (a pyramidal TIFF built
from real microscopy tiles) and of a plain PNG: the DZI, tile sizes, the disk and memory
caches (the disk's bound and eviction), the bound on decoded plain images, bad addresses
and concurrency."""

from __future__ import annotations

import gc
import io
import math
import os
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exemplar.data.slide_fixture import SlideFixture, build_slide_fixture
from exemplar.errors import DatasetError
from exemplar.media import slides
from exemplar.media.deepzoom import ByteLRU, DeepZoom, NoSuchTileError, TileCache

NS = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.fixture(scope="module")
def fixture_slide(tmp_path_factory: pytest.TempPathFactory) -> SlideFixture:
    return build_slide_fixture(tmp_path_factory.mktemp("slide") / "nuclei.tif")


def test_dzi_and_tiles(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    dz = DeepZoom(fixture_slide.path, TileCache(tmp_path / "tiles"), "slide1")
    root = ET.fromstring(dz.dzi())
    assert root.get("TileSize") == "254" and root.get("Overlap") == "1"
    assert root.get("Format") == "jpeg"
    size = root.find(f"{NS}Size")
    assert size is not None
    assert (size.get("Width"), size.get("Height")) == ("2607", "2304")
    # Deep Zoom levels go down to 1x1: ceil(log2(2607)) + 1
    assert dz.level_count == math.ceil(math.log2(2607)) + 1 == 13
    top = dz.level_count - 1
    assert dz.level_tiles[top] == (11, 10)
    inner = Image.open(io.BytesIO(dz.tile(top, 1, 1)))
    assert inner.format == "JPEG" and inner.size == (256, 256)  # 254 + overlap both sides
    corner = Image.open(io.BytesIO(dz.tile(top, 0, 0)))
    assert corner.size == (255, 255)
    last = Image.open(io.BytesIO(dz.tile(top, 10, 9)))
    assert last.size == (2607 - 10 * 254 + 1, 2304 - 9 * 254 + 1)
    assert Image.open(io.BytesIO(dz.tile(0, 0, 0))).size == (1, 1)
    # the tile shows the slide's pixels there (JPEG, so close, not equal)
    from exemplar.media.slides import read_region

    expected = read_region(fixture_slide.path, (253, 253), 1.0, 256).astype(int)
    assert np.abs(np.asarray(inner.convert("RGB")).astype(int) - expected).mean() < 4


def test_tiles_are_cached_on_disk_and_in_memory(
    fixture_slide: SlideFixture, tmp_path: Path
) -> None:
    memory = ByteLRU(1 << 20)
    cache = TileCache(tmp_path / "tiles", memory)
    dz = DeepZoom(fixture_slide.path, cache, "slide1")
    top = dz.level_count - 1
    first = dz.tile(top, 2, 3)
    assert cache.made == 1 and memory.hits == 0
    path = tmp_path / "tiles" / "slide1" / "t254-o1-jpeg-q85" / str(top) / "2_3.jpeg"
    assert path.read_bytes() == first
    assert dz.tile(top, 2, 3) == first and memory.hits == 1 and cache.made == 1
    assert dz.cached_tile(top, 2, 3) == first
    assert not list(path.parent.glob("*.tmp"))
    # a new process (a fresh memory cache) reads the tile from disk, not the slide
    again = TileCache(tmp_path / "tiles", ByteLRU(1 << 20))
    dz2 = DeepZoom(fixture_slide.path, again, "slide1")
    assert dz2.cached_tile(top, 2, 3) is None
    assert dz2.tile(top, 2, 3) == first and again.from_disk == 1 and again.made == 0
    # other settings never share files
    png = DeepZoom(fixture_slide.path, cache, "slide1", fmt="png")
    assert Image.open(io.BytesIO(png.tile(top, 2, 3))).format == "PNG"
    assert cache.made == 2


def test_memory_cache_is_bounded_in_bytes() -> None:
    lru = ByteLRU(1000)
    for k in range(10):
        lru.put(str(k), bytes(200))
    assert lru.size <= 1000 and len(lru) == 5
    assert lru.get("0") is None and lru.get("9") == bytes(200)
    lru.put("huge", bytes(400))  # over a quarter of the bound: not kept
    assert lru.get("huge") is None


def test_bad_addresses(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    dz = DeepZoom(fixture_slide.path, TileCache(tmp_path), "k")
    top = dz.level_count - 1
    for level, col, row in ((13, 0, 0), (-1, 0, 0), (top, 11, 0), (top, 0, 10), (0, 1, 0)):
        with pytest.raises(NoSuchTileError):
            dz.tile(level, col, row)
    with pytest.raises(NoSuchTileError, match="served as .jpeg"):
        dz.tile(top, 0, 0, "png")
    with pytest.raises(ValueError, match="not a tile cache name"):
        DeepZoom(fixture_slide.path, TileCache(tmp_path), "../escape")


def test_plain_image_pyramid_and_region_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (600, 900, 3), dtype=np.uint8)
    path = tmp_path / "large.png"
    Image.fromarray(pixels).save(path)
    dz = DeepZoom(path, TileCache(tmp_path / "tiles"), "img", fmt="png")
    assert (dz.width, dz.height) == (900, 600)
    tile = np.asarray(Image.open(io.BytesIO(dz.tile(dz.level_count - 1, 1, 1))))
    assert np.array_equal(tile, pixels[253 : 253 + 256, 253 : 253 + 256])  # lossless
    region = Image.open(io.BytesIO(dz.region_png((100, 50), 1.0, (300, 200))))
    assert region.size == (300, 200)
    assert np.array_equal(np.asarray(region), pixels[50:250, 100:400])


def test_concurrent_requests_make_a_tile_once(fixture_slide: SlideFixture, tmp_path: Path) -> None:
    cache = TileCache(tmp_path / "tiles")
    dz = DeepZoom(fixture_slide.path, cache, "slide1")
    top = dz.level_count - 1
    got: list[bytes] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def fetch() -> None:
        barrier.wait()
        data = dz.tile(top, 4, 4)
        with lock:
            got.append(data)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 1 and cache.made == 1


def test_damaged_tiles_raise_and_the_rest_still_serve(
    fixture_slide: SlideFixture, tmp_path: Path
) -> None:
    """Garbage over part of level 0's tile data: those tiles raise a clear error, and the
    pyramid (whose OpenSlide handle failed) goes on serving the tiles that decode."""
    data = bytearray(fixture_slide.path.read_bytes())
    n = len(data)
    data[n // 10 : n // 3] = b"\xff" * (n // 3 - n // 10)
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(bytes(data))
    dz = DeepZoom(damaged, TileCache(tmp_path / "tiles"), "damaged")
    top = dz.level_count - 1
    with pytest.raises(DatasetError, match=r"cannot read slide .*damaged.tif.* tile \(2, 2\)"):
        dz.tile(top, 2, 2)
    assert Image.open(io.BytesIO(dz.tile(top, 0, 9))).size == (255, 2304 - 9 * 254 + 1)
    assert Image.open(io.BytesIO(dz.tile(top - 4, 0, 0))).size == (163, 144)
    assert Image.open(io.BytesIO(dz.tile(top, 0, 0))).size == (255, 255)
    folder = tmp_path / "tiles" / "damaged" / "t254-o1-jpeg-q85" / str(top)
    assert (folder / "0_0.jpeg").exists() and not (folder / "2_2.jpeg").exists()


def test_pyramids_of_plain_images_keep_no_slide_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain images are decoded whole: open ones are bounded by their decoded bytes, and a
    pyramid holds no slide of its own, so pyramids kept in memory do not escape the bound;
    a pyramid whose image was dropped opens it again for its next cold tile."""
    per_image = 700 * 500 * 4  # Pillow keeps RGB as four bytes a pixel
    monkeypatch.setattr(slides._HANDLES, "plain_bytes", int(2.5 * per_image))
    slides.close_all()
    rng = np.random.default_rng(3)
    pyramids: list[DeepZoom] = []
    alive: list[weakref.ref[object]] = []
    try:
        for k in range(6):
            path = tmp_path / f"plain{k}.png"
            Image.fromarray(rng.integers(0, 256, (500, 700, 3), dtype=np.uint8)).save(path)
            dz = DeepZoom(path, TileCache(tmp_path / "tiles", ByteLRU(1 << 20)), f"p{k}")
            dz.tile(dz.level_count - 1, 0, 0)
            pyramids.append(dz)
            alive.append(weakref.ref(slides.open_slide(path)))
            assert slides.decoded_bytes(slides.open_slide(path)) == per_image
            count, plain = slides.open_stats()
            assert plain <= 2.5 * per_image and count <= 2
        gc.collect()
        assert sum(ref() is not None for ref in alive) <= 2  # the pyramids hold none
        # every pyramid still serves cold tiles (its image opened again when needed)
        for dz in pyramids:
            assert Image.open(io.BytesIO(dz.tile(dz.level_count - 1, 2, 1))).size == (
                700 - 2 * 254 + 1,
                500 - 254 + 1,
            )
            assert slides.open_stats()[1] <= 2.5 * per_image
        # the most recently used image is kept even when it alone is over the bound
        monkeypatch.setattr(slides._HANDLES, "plain_bytes", per_image // 2)
        slides.open_slide(tmp_path / "plain0.png")
        assert slides.open_stats() == (1, per_image)
    finally:
        slides.close_all()


def test_a_pyramid_refuses_its_file_once_changed(tmp_path: Path) -> None:
    """Tiles of a replaced file never land under the old file's cache key."""
    path = tmp_path / "plain.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)
    dz = DeepZoom(path, TileCache(tmp_path / "tiles"), "plain")
    top = dz.level_count - 1
    assert dz.tile(top, 0, 0)
    Image.fromarray(np.full((300, 400, 3), 255, np.uint8)).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="changed"):
        dz.tile(top, 1, 0)
    with pytest.raises(DatasetError, match="changed"):
        dz.region_png((0, 0), 1.0, (10, 10))
    assert not (tmp_path / "tiles" / "plain" / "t254-o1-jpeg-q85" / str(top) / "1_0.jpeg").exists()


def _fill(size: int) -> Callable[[], bytes]:
    return lambda: bytes(size)


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_disk_cache_is_bounded(tmp_path: Path) -> None:
    root = tmp_path / "tiles"
    cache = TileCache(root, ByteLRU(1 << 20), max_disk_bytes=10_000)
    for k in range(60):
        cache.get(f"k/{k}.bin", _fill(1000))
        assert _disk_bytes(root) <= 10_000
    assert cache.evicted >= 50 and cache.disk_bytes() == _disk_bytes(root)
    assert (root / "k" / "59.bin").exists() and not (root / "k" / "0.bin").exists()
    # an evicted entry still in memory is served from there; one in neither is made again
    assert cache.get("k/0.bin", _fill(5)) == bytes(1000)
    fresh = TileCache(root, ByteLRU(1 << 20), max_disk_bytes=10_000)
    assert fresh.get("k/1.bin", _fill(7)) == bytes(7) and fresh.made == 1
    with pytest.raises(ValueError, match="positive"):
        TileCache(root, max_disk_bytes=0)


def test_disk_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    """Files read from disk are touched; eviction starts at the oldest. A cache opened on
    a folder already over the bound (another process, an older server) trims it at its
    first write."""
    root = tmp_path / "tiles"
    writer = TileCache(root, ByteLRU(1 << 20), max_disk_bytes=1 << 30)
    for k in range(20):
        writer.get(f"k/{k}.bin", _fill(1000))
        os.utime(root / "k" / f"{k}.bin", ns=(10**18 + k * 10**9,) * 2)  # old, in order
    reader = TileCache(root, ByteLRU(0), max_disk_bytes=10_000)  # keeps nothing in memory
    assert reader.get("k/0.bin", _fill(1)) == bytes(1000) and reader.from_disk == 1  # touched
    reader.get("k/new.bin", _fill(1000))  # first write: the folder (21,000 bytes) is scanned
    assert reader.scans == 1 and _disk_bytes(root) <= 9_000
    left = {p.name for p in (root / "k").iterdir()}
    assert "0.bin" in left and "new.bin" in left and "1.bin" not in left
    assert {"19.bin", "18.bin", "17.bin"} <= left


def test_disk_cache_eviction_under_concurrency(tmp_path: Path) -> None:
    """Threads of two caches (two processes' worth) sharing a small folder: every read
    gets its entry's bytes, whatever the others evict meanwhile."""
    root = tmp_path / "tiles"
    caches = [TileCache(root, ByteLRU(4096), max_disk_bytes=20_000) for _ in range(2)]
    errors: list[BaseException] = []
    wrong: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        cache = caches[seed % 2]
        try:
            for _ in range(300):
                k = int(rng.integers(0, 80))
                expected = bytes([k % 256]) * (500 + k)
                data = cache.get(f"k/{k}.bin", lambda expected=expected: expected)
                if data != expected:
                    wrong.append(str(k))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong
    assert sum(c.evicted for c in caches) > 0
    caches[0].trim()
    assert _disk_bytes(root) <= 20_000
    assert not list(root.rglob(".*.tmp"))
