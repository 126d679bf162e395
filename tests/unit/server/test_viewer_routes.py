"""The viewer API (exemplar.server.routes.viewer) over a real detection project holding the
fixture slide (a pyramidal TIFF built from real microscopy tiles, read by OpenSlide) and a
large plain PNG: the viewer JSON, the DZI, tiles and their caches, region pixels through
/media, bad addresses and authentication."""

from __future__ import annotations

import io
import os
import subprocess
import sys
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
from exemplar.server.routes.viewer import pyramids
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
        "dzi_url": f"/api/v1/slides/{media.id}.dzi",
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
    assert info["dzi_url"] == f"/api/v1/items/{wide.id}/deepzoom.dzi"
    assert info["region"] is None and info["scale"] == 1.0 and info["media"] is None
    info = served.client.get(f"/api/v1/items/{small.id}/viewer").json()
    assert info["dzi_url"] is None and (info["width"], info["height"]) == (64, 48)
    assert served.client.get(f"/api/v1/items/{small.id}/deepzoom.dzi").status_code == 404


def test_slide_dzi_and_tiles(served: Served) -> None:
    _, media, _, _ = _items(served.root)
    client = served.client
    dzi = client.get(f"/api/v1/slides/{media.id}.dzi")
    assert dzi.status_code == 200 and dzi.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(dzi.text)
    size = root.find(f"{NS}Size")
    assert size is not None and (size.get("Width"), size.get("Height")) == ("2607", "2304")
    assert root.get("TileSize") == "254" and root.get("Format") == "jpeg"
    url = f"/api/v1/slides/{media.id}_files/12/1_1.jpeg"
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
    assert client.get(f"/api/v1/slides/{media.id}_files/12/0_0.jpeg").status_code == 200
    got = client.get(f"/api/v1/slides/{media.id}_files/{address}")
    assert got.status_code == 404, got.text


def test_unknown_slides_are_404(served: Served) -> None:
    region, media, _, _ = _items(served.root)
    assert served.client.get(f"/api/v1/slides/{media.id + 1}.dzi").status_code == 404
    assert served.client.get(f"/api/v1/slides/{media.id + 1}_files/0/0_0.jpeg").status_code == 404
    # an item id is not a slide id, and a region is not a plain image
    assert served.client.get(f"/api/v1/items/{region.id}/deepzoom.dzi").status_code == 404


def test_large_plain_image_tiles(served: Served) -> None:
    _, _, wide, _ = _items(served.root)
    dzi = served.client.get(f"/api/v1/items/{wide.id}/deepzoom.dzi")
    assert dzi.status_code == 200
    size = ET.fromstring(dzi.text).find(f"{NS}Size")
    assert size is not None and (size.get("Width"), size.get("Height")) == ("4200", "300")
    tile = served.client.get(f"/api/v1/items/{wide.id}/deepzoom_files/13/16_1.jpeg")
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
            f"/api/v1/slides/{media.id}.dzi",
            f"/api/v1/slides/{media.id}_files/12/0_0.jpeg",
            f"/api/v1/items/{wide.id}/deepzoom.dzi",
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
        media_id = s.scalars(select(Media.id)).one()
        region_id = s.scalars(select(Item.id)).first()
    stat = fixture.path.stat()
    os.utime(fixture.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        Served(root, client).login("ann")
        assert client.get(f"/api/v1/slides/{media_id}.dzi").status_code == 404
        assert client.get(f"/api/v1/media/{region_id}").status_code == 404


def test_the_server_starts_without_openslide() -> None:
    """openslide is an optional extra (exemplar[slides]): the app imports without it."""
    code = (
        "import sys; sys.modules['openslide'] = None\n"
        "import exemplar.server.app, exemplar.server.routes.viewer\n"
        "assert 'openslide' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
