"""Image sources: symbolic links stay inside the folder, large images are never decoded whole."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from exemplar.project.importing import import_path
from exemplar.project.project import Project
from exemplar.sources import features
from exemplar.sources.features import ImageTooLargeError, image_features
from exemplar.sources.images import decode_image
from exemplar.store.schema import Item

CLASSES = ["a", "b"]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project.init(tmp_path / "p", CLASSES)
    yield proj
    proj.close()


def png(path: Path, seed: int, size: tuple[int, int] = (12, 10)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def stored(project: Project) -> list[Item]:
    with project.db.read() as s:
        return list(s.scalars(select(Item).order_by(Item.row)))


# --------------------------------------------------------------------------- symlinks


def test_symlink_inside_is_imported_once_outside_is_skipped(
    project: Project, tmp_path: Path
) -> None:
    root = tmp_path / "imgs"
    real = png(root / "a" / "real.png", 1)
    (root / "b").mkdir()
    (root / "b" / "inside.png").symlink_to(real)
    secret = png(tmp_path / "outside" / "secret.png", 2)
    (root / "a" / "escape.png").symlink_to(secret)
    (root / "b" / "escape_dir").symlink_to(secret.parent, target_is_directory=True)
    report = import_path(project, root)
    assert (report.added, report.duplicates) == (1, 1)
    items = stored(project)
    assert [it.uri for it in items] == [os.path.realpath(real)]
    why = dict(report.skipped)
    escape = why[str(root / "a" / "escape.png")]
    assert "symbolic link" in escape and os.path.realpath(secret) in escape
    assert "outside the imported folder" in escape
    assert "outside the imported folder" in why[str(root / "b" / "escape_dir")]
    assert report.skipped_kinds == {"link outside": 1, "linked folder": 1}
    assert all(os.path.realpath(secret) != it.uri for it in items)


def test_image_items_record_the_real_files_identity(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    real = png(root / "a" / "1.png", 3)
    link_root = tmp_path / "link"
    link_root.symlink_to(root, target_is_directory=True)
    import_path(project, link_root)  # the folder itself may be a link: its real path counts
    (item,) = stored(project)
    st = os.stat(real)
    assert item.uri == os.path.realpath(real)
    assert item.file_id == f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def test_feature_items_have_no_file_id(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("p,q\n1,2\n", encoding="utf-8")
    import_path(project, path)
    assert [it.file_id for it in stored(project)] == [None]


# --------------------------------------------------------------------------- large images


def smooth_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = 127 + 120 * np.sin(x / 53.0)
    g = 127 + 120 * np.cos(y / 31.0)
    b = (x + y) % 256
    rgb = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("L", "PNG"),
        ("P", "PNG"),
        ("1", "PNG"),
        ("LA", "PNG"),
        ("RGB", "BMP"),
        ("P", "BMP"),
        ("RGB", "PPM"),
        ("L", "PPM"),
    ],
)
def test_reduced_decode_matches_the_full_decode(
    monkeypatch: pytest.MonkeyPatch, mode: str, fmt: str
) -> None:
    img = smooth_image(1201, 797)
    img = img.quantize(64) if mode == "P" else img.convert(mode)
    data = encode(img, fmt)
    full = image_features(data, 16)
    monkeypatch.setattr(features, "REDUCE_ABOVE_PIXELS", 0)
    monkeypatch.setattr(features, "STRIP_BYTES", 50_000)  # many strips
    with monkeypatch.context() as m:  # the whole-image decode must not run
        m.setattr(Image.Image, "convert", _refuse_big_convert(Image.Image.convert))
        reduced = image_features(data, 16)
    assert reduced.shape == full.shape == (256,) and reduced.dtype == np.float32
    np.testing.assert_allclose(reduced, full, atol=0.02)
    assert float(np.abs(reduced - full).mean()) < 0.005


def _refuse_big_convert(convert: Callable[..., Image.Image]) -> Callable[..., Image.Image]:
    def checked(self: Image.Image, *args: Any, **kwargs: Any) -> Image.Image:
        assert self.size[0] * self.size[1] < 1201 * 797, "the image was decoded whole"
        return convert(self, *args, **kwargs)

    return checked


def test_formats_without_a_reduced_decode_still_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "REDUCE_ABOVE_PIXELS", 0)
    img = smooth_image(300, 200)
    sixteen_bit = Image.fromarray((np.arange(60000) % 65535).astype(np.uint16).reshape(200, 300))
    for data in (encode(img, "TIFF"), encode(sixteen_bit, "PNG"), encode(img, "JPEG")):
        assert image_features(data, 16).shape == (256,)


def test_pixel_limit_is_a_clear_per_file_error(project: Project, tmp_path: Path) -> None:
    data = encode(smooth_image(300, 200), "PNG")
    with pytest.raises(
        ImageTooLargeError,
        match=r"60,000 pixels \(300 x 200\), above \[data\] max_image_pixels = 59,999",
    ):
        image_features(data, 16, max_pixels=59_999)
    assert image_features(data, 16, max_pixels=60_000).shape == (256,)
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "big.png").write_bytes(data)
    png(root / "a" / "small.png", 1)
    project.config.data.max_image_pixels = 10_000
    report = import_path(project, root)
    assert report.added == 1
    why = dict(report.skipped)[str(root / "a" / "big.png")]
    assert "has 60,000 pixels (300 x 200), above [data] max_image_pixels = 10,000" in why
    assert report.skipped_kinds == {"too large": 1}
    assert "1 image(s) above [data] max_image_pixels" in report.summary()


def test_pillow_bomb_limit_does_not_apply_ours_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pillow's process-wide MAX_IMAGE_PIXELS is not what refuses an image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2000
    path = tmp_path / "x.png"
    path.write_bytes(encode(smooth_image(300, 200), "PNG"))
    uid = hashlib.sha256(path.read_bytes()).hexdigest()
    row = decode_image(path, uid, 16, max_pixels=200_000_000)
    assert isinstance(row, np.ndarray)
    kind, why = decode_image(path, uid, 16, max_pixels=100)  # type: ignore[misc]
    assert kind == "too large" and "max_image_pixels = 100" in why


def test_large_file_is_decoded_from_disk_and_hash_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from exemplar.sources import images

    monkeypatch.setattr(images, "IN_MEMORY_BYTES", 0)
    path = tmp_path / "x.png"
    path.write_bytes(encode(smooth_image(300, 200), "PNG"))
    uid = hashlib.sha256(path.read_bytes()).hexdigest()
    row = decode_image(path, uid, 16)
    assert isinstance(row, np.ndarray)
    np.testing.assert_array_equal(row, image_features(path.read_bytes(), 16))
    assert decode_image(path, "0" * 64, 16) == (
        "unreadable file",
        "the file changed while it was being imported; import it again",
    )
