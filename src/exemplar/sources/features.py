"""Featurizers: how an image or a text becomes one float32 feature row.

* images: grayscale, resized to ``size`` squared with Pillow (bilinear, antialiased), scaled
  to [0, 1] and flattened (``size ** 2`` features). Large images are never decoded whole:
  a JPEG is decoded at a reduced scale (``Image.draft``, DCT scaling), a PNG is decoded
  strip by strip (a few hundred rows at a time, each strip averaged into a reduced
  grayscale image right away), and a raw (uncompressed) BMP/PPM/PGM is read strip by strip
  through its tile; only other formats (TIFF, WebP, GIF, interlaced or 16-bit PNG) are
  decoded whole. The reduced image is then resized like a small one, so the features
  differ from a full decode only by the box pre-reduction (Pillow's ``reducing_gap``).
* text, hashing: scikit-learn's stateless ``HashingVectorizer`` (dense float32, L2 norm).
* text, MiniLM: built by the project (it needs :mod:`exemplar.models`), wrapped in the
  same :class:`TextFeaturizer`.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

__all__ = [
    "ImageTooLargeError",
    "TextFeaturizer",
    "grey_features",
    "hashing_featurizer",
    "image_features",
    "open_image",
    "text_features",
]

#: Images with more pixels than this are reduced while they are decoded (when the format
#: allows it); smaller ones are decoded whole, which is faster.
REDUCE_ABOVE_PIXELS = 4096 * 4096
#: Bytes of decoded rows held at once by the strip decoders.
STRIP_BYTES = 2 << 20


# --------------------------------------------------------------------------- text


def text_features(texts: Sequence[str], n_features: int) -> np.ndarray:
    """Dense float32 hashed bag-of-words features, L2-normalized (stateless, deterministic)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        n_features=n_features, alternate_sign=False, norm="l2", dtype=np.float32
    )
    return np.asarray(vectorizer.transform(list(texts)).toarray(), dtype=np.float32)


@dataclass(frozen=True)
class TextFeaturizer:
    """How text items become feature rows (``[data] text_encoder``).

    ``hashing`` (default): a stateless hashed bag of words of ``[data] text_features``
    columns. ``minilm``: frozen all-MiniLM-L6-v2 sentence embeddings (384 columns; Wang et
    al. 2020, Reimers & Gurevych 2019), cached per content hash in the project's
    ``cache/embeddings`` folder so re-importing a text never encodes it again.
    """

    dim: int
    what: str
    encode: Callable[[Sequence[str]], np.ndarray]


def hashing_featurizer(n_features: int) -> TextFeaturizer:
    """The hashed bag-of-words featurizer of ``n_features`` columns."""
    return TextFeaturizer(
        n_features,
        f"text at data.text_features = {n_features}",
        functools.partial(text_features, n_features=n_features),
    )


# --------------------------------------------------------------------------- images


class ImageTooLargeError(ValueError):
    """An image has more pixels than the configured limit (``[data] max_image_pixels``)."""

    def __init__(self, width: int, height: int, limit: int):
        self.pixels = width * height
        self.limit = limit
        super().__init__(
            f"the image has {self.pixels:,} pixels ({width} x {height}), above "
            f"[data] max_image_pixels = {limit:,}; raise that limit in exemplar.toml to "
            "import it"
        )


def open_image(fp: IO[bytes]) -> Any:
    """Open an image with Pillow, reading only its header, without Pillow's size check.

    ``Image.open`` refuses images above ``Image.MAX_IMAGE_PIXELS`` (a process-wide
    setting); the importer applies its own limit (``[data] max_image_pixels``) instead,
    before anything is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    prefix = fp.read(16)
    for loader in (Image.preinit, Image.init):
        loader()
        for fmt in list(Image.ID):  # a snapshot: another thread may be registering plugins
            factory, accept = Image.OPEN[fmt]
            accepted = True if accept is None else accept(prefix)
            if isinstance(accepted, str) or not accepted:
                continue
            fp.seek(0)
            try:
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UnidentifiedImageError("cannot identify image file")


def image_features(data: bytes | IO[bytes], size: int, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image: grayscale, ``size`` x ``size`` (bilinear), in [0, 1], flattened.

    ``data`` is the file's bytes or a seekable binary file. Raises
    :class:`ImageTooLargeError` above ``max_pixels``, and whatever Pillow raises for an
    unreadable image (callers report and skip it).
    """
    from PIL import Image

    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    with open_image(fp) as img:
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(width, height, max_pixels)
        reduced = None
        if width * height > REDUCE_ABOVE_PIXELS and img.format != "JPEG":
            if img.format == "PNG":
                fp.seek(0)
                reduced = _png_reduced(fp, size)
            else:
                reduced = _raw_reduced(img, size)
        if reduced is not None:
            out = Image.fromarray(reduced, "F").resize((size, size), Image.Resampling.BILINEAR)
            row = np.asarray(out, dtype=np.float32).reshape(-1) / np.float32(255.0)
            return np.clip(row, 0.0, 1.0)
        img.draft("L", (size, size))  # JPEG: decode at a reduced scale (much faster)
        gray = img.convert("L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float32).reshape(-1) / np.float32(255.0)


def grey_features(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Decoded images (``(h, w)`` or ``(h, w, 3)`` uint8) as :func:`image_features` rows:
    grayscale, ``size`` x ``size`` (bilinear), in [0, 1]; one row per image."""
    from PIL import Image

    out = np.empty((len(images), size * size), dtype=np.float32)
    for i, pixels in enumerate(images):
        gray = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("L")
        if gray.size != (size, size):
            gray = gray.resize((size, size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(gray, dtype=np.float32).reshape(-1) / np.float32(255.0)
    return out


def _factor(width: int, height: int, size: int) -> int:
    """The box-reduction factor: the reduced image keeps at least 16x the target size."""
    return max(1, min(width, height) // max(16 * size, 256))


class _BoxReducer:
    """Averages rows of a grayscale image into ``factor`` x ``factor`` boxes, as they come."""

    def __init__(self, width: int, height: int, factor: int):
        self.factor = factor
        self.starts = np.arange(0, width, factor)
        col_counts = np.diff(np.append(self.starts, width))
        out_h = -(-height // factor)
        row_counts = np.full(out_h, factor, dtype=np.float64)
        row_counts[-1] = height - factor * (out_h - 1)
        self.area = row_counts[:, None] * col_counts[None, :]
        self.acc = np.zeros((out_h, len(self.starts)), dtype=np.float64)

    def add(self, y0: int, gray: np.ndarray) -> None:
        """Add rows ``y0, y0 + 1, ...`` (a uint8 array of shape (rows, width))."""
        f, rows = self.factor, gray.shape[0]
        sums = np.add.reduceat(gray, self.starts, axis=1, dtype=np.uint32)
        if y0 % f == 0 and rows % f == 0:  # whole boxes: one sum per box row
            self.acc[y0 // f : (y0 + rows) // f] += sums.reshape(rows // f, f, -1).sum(axis=1)
        else:
            np.add.at(self.acc, (y0 + np.arange(rows)) // f, sums)

    def result(self) -> np.ndarray:
        return (self.acc / self.area).astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of uint8 RGB(A) pixels, rounded as Pillow's ``convert("L")``."""
    out = rgb[..., 0].astype(np.uint32)
    out *= 19595
    for channel, weight in ((1, 38470), (2, 7471)):
        part = rgb[..., channel].astype(np.uint32)
        part *= weight
        out += part
    out += 0x8000
    out >>= 16
    return out.astype(np.uint8)


def _raw_reduced(img: Any, size: int) -> np.ndarray | None:
    """Strip by strip through an uncompressed file's single raw tile (BMP, PPM, PGM)."""
    tile = img.tile
    if len(tile) != 1 or tile[0][0] != "raw" or img.mode not in ("L", "RGB", "RGBA", "P"):
        return None
    _, extents, offset, args = tile[0]
    width, height = img.size
    if tuple(extents) != (0, 0, width, height):
        return None
    rawmode, stride, orientation = (*args, 0, 1)[:3] if isinstance(args, tuple) else (args, 0, 1)
    bits = {"L": 8, "P": 8, "RGB": 24, "RGBA": 32}[img.mode]
    if not stride:
        stride = (width * bits + 7) // 8
    factor = _factor(width, height, size)
    reducer = _BoxReducer(width, height, factor)
    step = max(factor, STRIP_BYTES // max(1, stride) // factor * factor)
    fp = img.fp
    palette = img.getpalette() if img.mode == "P" else None
    for y0 in range(0, height, step):
        rows = min(step, height - y0)
        # Rows of a bottom-up file (orientation -1) are stored last-first.
        first = y0 if orientation >= 0 else height - y0 - rows
        fp.seek(offset + first * stride)
        buf = fp.read(rows * stride)
        if len(buf) < rows * stride:
            raise OSError("image file is truncated")
        from PIL import Image

        strip = Image.frombuffer(img.mode, (width, rows), buf, "raw", rawmode, stride, 1)
        if orientation < 0:
            strip = strip.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if palette is not None:
            strip.putpalette(palette)
        reducer.add(y0, np.asarray(strip.convert("L")))
    return reducer.result()


# PNG colour types whose strips can be decoded here, with 8-bit (or lower) samples:
# colour type -> (channels, Pillow mode of the same bytes per pixel, PNG colour type of it)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_SAME_BPP = {1: 0, 2: 4, 3: 2, 4: 6}  # bytes per pixel -> 8-bit colour type


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_reduced(fp: IO[bytes], size: int) -> np.ndarray | None:
    """Decode a non-interlaced PNG of 8 bits (or fewer) per sample strip by strip.

    The zlib stream of the IDAT chunks is inflated a strip at a time. Each strip is
    unfiltered by Pillow's own decoder: its rows, prefixed by the previous strip's last
    row (stored unfiltered, so the Up/Average/Paeth filters see it), are wrapped in a
    small PNG of an 8-bit colour type with the same bytes per pixel, whose decoded bytes
    are then the raw samples. Returns None for a PNG this cannot read (interlaced,
    16-bit); the caller then decodes it whole.
    """

    if fp.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    header: tuple[int, ...] | None = None
    palette = b""

    def chunk() -> tuple[bytes, int]:
        head = fp.read(8)
        if len(head) < 8:
            raise OSError("image file is truncated (no image data)")
        length, kind = struct.unpack(">I4s", head)
        return kind, length

    while True:
        kind, length = chunk()
        if kind == b"IDAT":
            break
        body = fp.read(length)
        fp.read(4)  # CRC
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IEND":
            raise OSError("image file has no image data")
    if header is None:
        return None
    width, height, depth, colour, _, _, interlace = header
    if interlace or depth > 8 or colour not in _PNG_CHANNELS or (depth < 8 and colour in (2, 4, 6)):
        return None
    channels = _PNG_CHANNELS[colour]
    row_bytes = (width * channels * depth + 7) // 8
    bpp = max(1, channels * depth // 8)
    factor = _factor(width, height, size)
    reducer = _BoxReducer(width, height, factor)
    lut: np.ndarray | None = None
    if colour == 3:
        rgb = np.zeros((256, 3), dtype=np.uint8)
        entries = np.frombuffer(palette[: len(palette) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
        rgb[: len(entries)] = entries[:256]
        lut = _luma(rgb)
    rows_per_strip = max(factor, STRIP_BYTES // (row_bytes + 1) // factor * factor)
    inflate = zlib.decompressobj()
    pending = bytearray()
    previous = bytes(row_bytes)
    y = 0
    remaining = length  # bytes left in the current IDAT chunk

    def feed(need: int) -> None:
        """Inflate until ``pending`` holds ``need`` bytes or the data ends."""
        nonlocal remaining
        while len(pending) < need:
            if inflate.unconsumed_tail:
                pending.extend(inflate.decompress(inflate.unconsumed_tail, need - len(pending)))
                continue
            if inflate.eof:
                return
            if remaining == 0:
                fp.read(4)  # CRC of the IDAT chunk just read
                kind, length = chunk()
                if kind != b"IDAT":
                    return
                remaining = length
                continue
            data = fp.read(min(remaining, 1 << 20))
            if not data:
                return
            remaining -= len(data)
            pending.extend(inflate.decompress(data, need - len(pending)))

    while y < height:
        rows = min(rows_per_strip, height - y)
        need = rows * (row_bytes + 1)
        feed(need)
        if len(pending) < need:
            raise OSError("image file is truncated")
        body = b"\x00" + previous + bytes(pending[:need])
        del pending[:need]
        lie_width = row_bytes // bpp
        png = b"".join(
            [
                b"\x89PNG\r\n\x1a\n",
                _png_chunk(
                    b"IHDR",
                    struct.pack(">IIBBBBB", lie_width, rows + 1, 8, _PNG_SAME_BPP[bpp], 0, 0, 0),
                ),
                _png_chunk(b"IDAT", zlib.compress(body, 0)),
                _png_chunk(b"IEND", b""),
            ]
        )
        del body
        with open_image(io.BytesIO(png)) as strip:
            if depth == 8 and colour != 3:
                # The stand-in colour type is the file's own: Pillow converts it in C.
                gray = np.asarray(strip.convert("L"))[1:]
                previous = strip.crop((0, rows, lie_width, rows + 1)).tobytes()
            else:
                raw = np.frombuffer(strip.tobytes(), np.uint8).reshape(rows + 1, row_bytes)
                gray = _png_gray(raw[1:], width, colour, depth, lut)
                previous = raw[-1].tobytes()
        del png
        reducer.add(y, gray)
        y += rows
    return reducer.result()


def _png_gray(raw: np.ndarray, width: int, colour: int, depth: int, lut: Any) -> np.ndarray:
    """Raw PNG sample rows as uint8 grayscale, as Pillow's ``convert("L")`` computes it."""
    if depth < 8:
        bits = np.unpackbits(raw, axis=1)
        per = bits.reshape(raw.shape[0], -1, depth)
        weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
        values = (per * weights).sum(axis=2, dtype=np.uint16)[:, :width]
        if colour == 3:
            return np.asarray(lut[values])
        return (values * (255 // ((1 << depth) - 1))).astype(np.uint8)
    if colour == 0:
        return raw
    if colour == 3:
        return np.asarray(lut[raw])
    pixels = raw.reshape(raw.shape[0], width, _PNG_CHANNELS[colour])
    if colour == 4:
        return np.ascontiguousarray(pixels[..., 0])
    return _luma(pixels)
