"""The viewer API (exemplar.server.routes.viewer) over a real detection project holding the
fixture slide (a pyramidal TIFF built from real microscopy tiles, read by OpenSlide) and a
large plain PNG: the viewer JSON, the DZI, tiles and their caches, content versions in the
URLs (ids restart in every project), the render executor, region pixels through /media,
bad addresses and authentication."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import PASSWORD, Served
from sqlalchemy import select

from exemplar.data.slide_fixture import SlideFixture, build_slide_fixture
from exemplar.media.slides import read_region
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.routes.viewer import (
    MAX_PYRAMIDS,
    RENDER_THREADS,
    content_version,
    pyramids,
    render,
    render_executor,
)
from exemplar.store.accounts import add_user
from exemplar.store.schema import Item, Media

NS = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.fixture(scope="module")
def slide_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SlideFixture]:
    """A detection project with the fixture slide imported as 256-px regions at 10x (scale
    2), a 4200x300 PNG and a 64x48 PNG, and an annotator ``ann``."""
    base = tmp_path_factory.mktemp("viewer")
    fixture = build_slide_fixture(base / "slides" / "nuclei.tif")
    images = base / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (300, 4200, 3), dtype=np.uint8)).save(images / "wide.png")
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(images / "small.png")
    root = base / "proj"
    with Project.init(root, ["nucleus", "micronucleus"], task="detection") as project:
        project.import_(fixture.path, magnification=10, region_size=256)
        project.import_(images)
        add_user(project.db, "ann", "annotator", PASSWORD)
    return root, fixture


@pytest.fixture
def served(slide_project: tuple[Path, SlideFixture]) -> Iterator[Served]:
    root = slide_project[0]
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        served = Served(root, client)
        served.login("ann")
        yield served


def _slide(media: Media) -> str:
    """A slide's pyramid URL without its ending (``.dzi`` or ``_files/...``)."""
    return f"/api/v1/slides/{media.id}-{media.uid[:16]}"


def _image(item: Item) -> str:
    """A large plain image's pyramid URL without its ending."""
    return f"/api/v1/items/{item.id}/deepzoom-{item.uid[:16]}"


def _items(root: Path) -> tuple[Item, Media, Item, Item]:
    with Project.open(root) as project, project.db.read() as s:
        region = s.scalars(
            select(Item).where(Item.media_id.is_not(None), Item.origin_x == 512)
        ).first()
        media = s.scalars(select(Media)).one()
        wide = s.scalars(select(Item).where(Item.uri.like("%wide.png"))).one()
        small = s.scalars(select(Item).where(Item.uri.like("%small.png"))).one()
        s.expunge_all()
    assert region is not None
    return region, media, wide, small


def test_viewer_json_for_a_region(served: Served) -> None:
    region, media, _, _ = _items(served.root)
    got = served.client.get(f"/api/v1/items/{region.id}/viewer")
    assert got.status_code == 200, got.text
    assert got.json() == {
        "item_id": region.id,
        "kind": "region",
        "width": 256,
        "height": 256,
        "image_url": f"/api/v1/media/{region.id}",
        "dzi_url": f"/api/v1/slides/{media.id}-{media.uid[:16]}.dzi",
        "region": {"x": 512, "y": region.origin_y, "width": 512, "height": 512},
        "scale": 2.0,
        "media": {
            "id": media.id,
            "kind": "slide",
            "width": 2607,
            "height": 2304,
            "mpp": 0.5,
            "objective_power": 20.0,
            "fps": None,
            "frame": None,
            "n_frames": None,
        },
    }
    assert served.client.get("/api/v1/items/999999/viewer").status_code == 404


def test_viewer_json_for_plain_images(served: Served) -> None:
    _, _, wide, small = _items(served.root)
    info = served.client.get(f"/api/v1/items/{wide.id}/viewer").json()
    assert info["kind"] == "image" and (info["width"], info["height"]) == (4200, 300)
    assert info["dzi_url"] == f"/api/v1/items/{wide.id}/deepzoom-{wide.uid[:16]}.dzi"
    assert info["region"] is None and info["scale"] == 1.0 and info["media"] is None
    info = served.client.get(f"/api/v1/items/{small.id}/viewer").json()
    assert info["dzi_url"] is None and (info["width"], info["height"]) == (64, 48)
    assert served.client.get(f"{_image(small)}.dzi").status_code == 404


def test_slide_dzi_and_tiles(served: Served) -> None:
    _, media, _, _ = _items(served.root)
    client = served.client
    dzi = client.get(f"{_slide(media)}.dzi")
    assert dzi.status_code == 200 and dzi.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(dzi.text)
    size = root.find(f"{NS}Size")
    assert size is not None and (size.get("Width"), size.get("Height")) == ("2607", "2304")
    assert root.get("TileSize") == "254" and root.get("Format") == "jpeg"
    url = f"{_slide(media)}_files/12/1_1.jpeg"
    first = client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert "immutable" in first.headers["cache-control"] and first.headers["etag"]
    tile = Image.open(io.BytesIO(first.content))
    assert tile.format == "JPEG" and tile.size == (256, 256)
    with Project.open(served.root) as project:
        files = list((project.root / "cache" / "tiles").rglob("1_1.jpeg"))
    assert len(files) == 1 and files[0].read_bytes() == first.content
    # the second fetch comes from the in-memory cache (no new tile made)
    app_project = client.app.state.exemplar.project  # type: ignore[attr-defined]
    cache = pyramids(app_project).cache
    made, hits = cache.made, cache.memory.hits
    second = client.get(url)
    assert second.content == first.content and cache.made == made
    assert cache.memory.hits == hits + 1
    assert second.headers["etag"] == first.headers["etag"]
    unchanged = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and not unchanged.content
    # the tile shows the slide there
    expected = read_region(media.uri, (253, 253), 1.0, 256).astype(int)
    assert np.abs(np.asarray(tile.convert("RGB")).astype(int) - expected).mean() < 4


@pytest.mark.parametrize(
    "address",
    ["13/0_0.jpeg", "12/11_0.jpeg", "12/0_10.jpeg", "0/1_0.jpeg", "12/0_0.png", "x/0_0.jpeg"],
)
def test_bad_tile_addresses_are_404(served: Served, address: str) -> None:
    _, media, _, _ = _items(served.root)
    client = served.client
    assert client.get(f"{_slide(media)}_files/12/0_0.jpeg").status_code == 200
    got = client.get(f"{_slide(media)}_files/{address}")
    assert got.status_code == 404, got.text


def test_unknown_slides_are_404(served: Served) -> None:
    region, media, _, _ = _items(served.root)
    other = f"/api/v1/slides/{media.id + 1}-{media.uid[:16]}"
    assert served.client.get(f"{other}.dzi").status_code == 404
    assert served.client.get(f"{other}_files/0/0_0.jpeg").status_code == 404
    # an item id is not a slide id, and a region is not a plain image
    assert served.client.get(f"{_image(region)}.dzi").status_code == 404


def test_large_plain_image_tiles(served: Served) -> None:
    _, _, wide, _ = _items(served.root)
    dzi = served.client.get(f"{_image(wide)}.dzi")
    assert dzi.status_code == 200
    size = ET.fromstring(dzi.text).find(f"{NS}Size")
    assert size is not None and (size.get("Width"), size.get("Height")) == ("4200", "300")
    tile = served.client.get(f"{_image(wide)}_files/13/16_1.jpeg")
    assert tile.status_code == 200
    assert Image.open(io.BytesIO(tile.content)).size == (4200 - 16 * 254 + 1, 300 - 254 + 1)


def test_region_media_is_the_region_png(served: Served) -> None:
    region, media, _, _ = _items(served.root)
    got = served.client.get(f"/api/v1/media/{region.id}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(got.content))
    assert image.size == (256, 256)
    origin = (region.origin_x or 0, region.origin_y or 0)
    expected = read_region(media.uri, origin, 2.0, 256)
    assert np.array_equal(np.asarray(image.convert("RGB")), expected)
    assert served.client.get(f"/api/v1/media/{region.id}").content == got.content


def test_logged_out_is_401(slide_project: tuple[Path, SlideFixture]) -> None:
    root = slide_project[0]
    region, media, wide, _ = _items(root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        for url in (
            f"/api/v1/items/{region.id}/viewer",
            f"{_slide(media)}.dzi",
            f"{_slide(media)}_files/12/0_0.jpeg",
            f"{_image(wide)}.dzi",
            f"{_image(wide)}_files/13/0_0.jpeg",
            f"/api/v1/media/{region.id}",
        ):
            assert client.get(url).status_code == 401, url


def test_a_changed_slide_is_refused(tmp_path: Path) -> None:
    fixture = build_slide_fixture(tmp_path / "nuclei.tif")
    root = tmp_path / "proj"
    with Project.init(root, ["nucleus"], task="detection") as project:
        project.import_(fixture.path, region_size=512)
        add_user(project.db, "ann", "annotator", PASSWORD)
    with Project.open(root) as project, project.db.read() as s:
        media = s.scalars(select(Media)).one()
        region_id = s.scalars(select(Item.id)).first()
        s.expunge_all()
    stat = fixture.path.stat()
    os.utime(fixture.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        Served(root, client).login("ann")
        assert client.get(f"{_slide(media)}.dzi").status_code == 404
        assert client.get(f"/api/v1/media/{region_id}").status_code == 404


def test_the_server_starts_without_openslide() -> None:
    """openslide is an optional extra (exemplar[slides]): the app imports without it."""
    code = (
        "import sys; sys.modules['openslide'] = None\n"
        "import exemplar.server.app, exemplar.server.routes.viewer\n"
        "assert 'openslide' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_urls_carry_the_content_version(served: Served) -> None:
    """A pyramid URL names the file's content (ids restart at 1 in every project, and tiles
    are cached by browsers for a week): another version, or none, is 404, also when the
    pyramid is already open (answered on the event loop)."""
    _, media, wide, _ = _items(served.root)
    client = served.client
    assert content_version(media.uid) == media.uid[:16]
    assert client.get(f"{_slide(media)}_files/12/2_2.jpeg").status_code == 200  # now open
    wrong = "0" * 16 if not media.uid.startswith("0" * 16) else "1" * 16
    for url in (
        f"/api/v1/slides/{media.id}-{wrong}.dzi",
        f"/api/v1/slides/{media.id}-{wrong}_files/12/2_2.jpeg",
        f"/api/v1/slides/{media.id}.dzi",  # the old, unversioned URLs
        f"/api/v1/slides/{media.id}_files/12/2_2.jpeg",
        f"/api/v1/slides/{media.id}-{media.uid[:15]}.dzi",
        f"/api/v1/slides/{media.id}-{media.uid[:16].upper()}.dzi",
        f"/api/v1/slides/0{media.id}-{media.uid[:16]}.dzi",
        f"/api/v1/slides/{2**70}-{media.uid[:16]}.dzi",
        f"/api/v1/items/{wide.id}/deepzoom-{wrong}.dzi",
        f"/api/v1/items/{wide.id}/deepzoom-{wrong}_files/13/0_0.jpeg",
        f"/api/v1/items/{wide.id}/deepzoom.dzi",
        f"/api/v1/items/{wide.id}/deepzoom_files/13/0_0.jpeg",
    ):
        assert client.get(url).status_code == 404, url
    assert client.get(f"{_image(wide)}_files/13/0_0.jpeg").status_code == 200


def test_the_same_id_in_another_project_is_another_url(
    slide_project: tuple[Path, SlideFixture], tmp_path: Path
) -> None:
    """Project B's slide 1 is not project A's slide 1: its URLs differ, and A's URLs are
    404 on B's server; the same slide imported in another project has the same URLs and
    the same tile ETags (both name the content)."""
    root_a, fixture_a = slide_project
    other = build_slide_fixture(tmp_path / "other.tif", grid=(2, 2), blank=())
    roots = {}
    for name, path in (("b", other.path), ("c", fixture_a.path)):
        roots[name] = tmp_path / name
        with Project.init(roots[name], ["nucleus"], task="detection") as project:
            project.import_(path, region_size=512)
            add_user(project.db, "ann", "annotator", PASSWORD)
    media = {}
    for name, root in (("a", root_a), ("b", roots["b"]), ("c", roots["c"])):
        with Project.open(root) as project, project.db.read() as s:
            media[name] = s.scalars(select(Media)).one()
            s.expunge_all()
    assert media["a"].id == media["b"].id == media["c"].id == 1
    assert _slide(media["a"]) != _slide(media["b"]) and _slide(media["a"]) == _slide(media["c"])
    tile = "_files/11/1_1.jpeg"
    etags = {}
    for name, root in (("a", root_a), ("b", roots["b"]), ("c", roots["c"])):
        with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
            Served(root, client).login("ann")
            got = client.get(f"{_slide(media[name])}{tile}")
            assert got.status_code == 200
            etags[name] = got.headers["etag"]
            if name == "b":
                assert client.get(f"{_slide(media['a'])}{tile}").status_code == 404
                assert client.get(f"{_slide(media['a'])}.dzi").status_code == 404
    assert etags["a"] == etags["c"] != etags["b"]


def test_pyramids_are_bounded_like_open_slides() -> None:
    from exemplar.media.slides import MAX_OPEN

    assert MAX_PYRAMIDS == MAX_OPEN


def test_rendering_runs_on_its_own_small_executor() -> None:
    """Work given to render() runs on the render executor's few threads."""
    names: set[str] = set()
    lock = threading.Lock()

    def work() -> str:
        time.sleep(0.02)
        with lock:
            names.add(threading.current_thread().name)
        return threading.current_thread().name

    async def many() -> list[str]:
        return list(await asyncio.gather(*(render(work) for _ in range(8))))

    got = asyncio.run(many())
    assert all(n.startswith("exemplar-render") for n in got)
    assert 1 <= len(names) <= RENDER_THREADS == 2


def test_cold_tiles_leave_the_api_its_threads(served: Served) -> None:
    """With every render thread busy, a cold tile waits for one, while a synchronous API
    route (the viewer JSON) still answers at once; the tile follows when a thread frees."""
    _, media, _, _ = _items(served.root)
    release = threading.Event()
    started = threading.Barrier(RENDER_THREADS + 1)

    def hold() -> None:
        started.wait(10)
        release.wait(30)

    held = [render_executor().submit(hold) for _ in range(RENDER_THREADS)]
    started.wait(10)
    result: dict[str, int] = {}

    def fetch_tile() -> None:
        result["tile"] = served.client.get(f"{_slide(media)}_files/12/5_5.jpeg").status_code

    try:
        fetcher = threading.Thread(target=fetch_tile)
        fetcher.start()
        time.sleep(0.3)
        assert "tile" not in result  # queued behind the busy render threads
        t0 = time.perf_counter()
        region, _, _, _ = _items(served.root)
        assert served.client.get(f"/api/v1/items/{region.id}/viewer").status_code == 200
        assert time.perf_counter() - t0 < 5
        assert "tile" not in result
    finally:
        release.set()
    fetcher.join(30)
    assert result == {"tile": 200}
    for f in held:
        f.result(5)
