"""A short test video with known boxes: real nuclei crops moved synthetically over a real
background.

What it is, exactly: one real fluorescence image of DNA-stained RPE-1 nuclei (mnfinder's
validation image ``2022-05-26_RPE1/2198``, 8-bit, normalized by its 1st and 99.8th
percentiles as :mod:`exemplar.data.nuclei` does) gives both the parts. The **background**
is a window of that image with every nucleus and micronucleus (dilated by 3 px) filled
with pixels drawn at random from the image's own background, so it keeps the camera's
real noise and unevenness. The **objects** are real nuclei cut out along their instance
masks (the pixels inside the mask, unchanged). Their **motion is synthetic**: each nucleus
moves in its own horizontal lane (lanes never overlap, so no object hides another) at a
constant horizontal speed, bouncing off the lane's ends, with a small vertical sine
wobble; positions are whole pixels, so the ground-truth box of every object on every frame
is exact: the pasted crop's tight mask extent.

``objects="synthetic"`` replaces both parts with generated ones (bright elliptical blobs
with a soft edge over a smooth noisy background) for machines without mnfinder; the
motion is the same. The video is encoded with PyAV (H.264 through libx264 at a low
constant rate factor, or MPEG-4 part 2 at quantizer 1-2), so the decoded frames differ from
the drawn ones by compression noise of a few grey levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import av
import numpy as np
from av.video.stream import VideoStream
from PIL import Image
from scipy import ndimage

from exemplar.data.detection import to_uint8
from exemplar.errors import DatasetError

__all__ = ["FIXTURE_IMAGE", "GroundTruthTrack", "VideoFixture", "build_video_fixture"]

#: The mnfinder image the real parts come from (``<set>/<batch>/<stem>``).
FIXTURE_IMAGE = "validation/2022-05-26_RPE1/2198"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruthTrack:
    """One moving object: its class and its box ``x0, y0, x1, y1`` on every frame."""

    track: int
    label: str
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class VideoFixture:
    """The written video and what is in it."""

    path: Path
    fps: float
    n_frames: int
    width: int
    height: int
    codec: str
    tracks: tuple[GroundTruthTrack, ...]
    description: str


def _real_parts(
    size: int, n_objects: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """A real background window and real nucleus crops ``(pixels, mask)``."""
    from exemplar.data.nuclei import _read_rgba, decode_instances, nuclei_files

    found = {name: (img, nuc, mn) for name, img, nuc, mn in nuclei_files(["validation"])}
    if FIXTURE_IMAGE not in found:
        raise DatasetError(f"the mnfinder image {FIXTURE_IMAGE} is missing from the wheel")
    image_path, nuc_path, mn_path = found[FIXTURE_IMAGE]
    with Image.open(image_path) as im:
        raw = np.asarray(im)
    image = to_uint8(raw, "percentile")
    shape = image.shape[:2]
    nuc_rgba, mn_rgba = _read_rgba(nuc_path, shape), _read_rgba(mn_path, shape)
    nuclei, _ = decode_instances(nuc_rgba, mn_rgba)
    occupied = (nuc_rgba[..., 3] > 0) | (mn_rgba[..., 3] > 0)
    occupied = ndimage.binary_dilation(occupied, iterations=3)
    free = image[~occupied]
    filled = image.copy()
    filled[occupied] = rng.choice(free, size=int(occupied.sum()))
    if min(shape) < size:
        raise DatasetError(f"the fixture image is {shape[1]}x{shape[0]}, smaller than {size}")
    background = filled[:size, :size]
    # nuclei of a trackable size, whole, each with enough signal
    crops: list[tuple[int, np.ndarray, np.ndarray]] = []
    for top, left, mask in nuclei:
        h, w = mask.shape
        if not (20 <= h <= 44 and 20 <= w <= 44) or mask.mean() < 0.5:
            continue
        if top == 0 or left == 0 or top + h >= shape[0] or left + w >= shape[1]:
            continue
        pixels = image[top : top + h, left : left + w]
        if (pixels[mask] == 255).mean() > 0.2:  # saturated: no texture left to track
            continue
        crops.append((int(pixels[mask].mean()), pixels.copy(), mask.copy()))
    if len(crops) < n_objects:
        raise DatasetError(f"the fixture image has {len(crops)} usable nuclei, {n_objects} asked")
    crops.sort(key=lambda c: -c[0])  # the brightest unsaturated ones: the clearest objects
    return background, [(p, m) for _, p, m in crops[:n_objects]]


def _synthetic_parts(
    size: int, n_objects: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """A generated background and elliptical blobs ``(pixels, mask)``."""
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 24)
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) or 1.0)
    background = np.clip(20 + 25 * smooth + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)
    crops = []
    for _ in range(n_objects):
        h, w = int(rng.integers(24, 36)), int(rng.integers(24, 36))
        yy, xx = np.mgrid[0:h, 0:w]
        r = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
        mask = r <= 1.0
        texture = rng.normal(0, 10, (h, w))
        pixels = np.clip(150 + 80 * (1 - r) + texture, 0, 255).astype(np.uint8)
        crops.append((pixels, mask))
    return background, crops


def _encoder(codec: str) -> str:
    if codec == "h264":
        return "libx264" if "libx264" in av.codecs_available else "h264"
    if codec == "mpeg4":
        return "mpeg4"
    raise DatasetError(f"the fixture codec must be 'h264' or 'mpeg4', got {codec!r}")


def build_video_fixture(
    out: Path,
    *,
    n_frames: int = 48,
    size: int = 256,
    fps: int = 12,
    n_objects: int = 3,
    objects: Literal["nuclei", "synthetic"] = "nuclei",
    codec: Literal["h264", "mpeg4"] = "h264",
    speed: tuple[float, float] = (1.5, 3.5),
    seed: int = 0,
) -> VideoFixture:
    """Write the fixture video to ``out`` (an ``.mp4`` path) and return its ground truth.

    Parameters
    ----------
    out : Path
        The video file to write (its folder is created).
    n_frames, size, fps : int
        Frames, frame side (square, even) and frames per second.
    n_objects : int
        Moving objects, one per horizontal lane.
    objects : {"nuclei", "synthetic"}
        Real nuclei crops over a real background (mnfinder, see the module docstring), or
        generated blobs over a generated background.
    codec : {"h264", "mpeg4"}
        The encoder (H.264 at CRF 10, or MPEG-4 part 2 at quantizer 1-2).
    speed : (float, float)
        The range of horizontal speeds, pixels per frame.
    seed : int
        Seeds the background fill, the speeds and the start positions: the same arguments
        write the same bytes.

    Returns
    -------
    VideoFixture
        The path and every object's box on every frame (``tracks``).

    Raises
    ------
    DatasetError
        mnfinder is not installed (``objects="nuclei"``), or the arguments cannot make a
        video (too small a frame for the objects, an odd size, an unknown codec).
    """
    if n_frames < 1 or n_objects < 1 or fps < 1:
        raise DatasetError("the fixture needs at least one frame, one object and 1 fps")
    if size % 2 or size < 64:
        raise DatasetError(f"the fixture's frame side must be even and at least 64, got {size}")
    encoder = _encoder(codec)
    rng = np.random.default_rng(seed)
    if objects == "nuclei":
        background, crops = _real_parts(size, n_objects, rng)
        what = "synthetic motion of real nuclei crops over a real background (mnfinder)"
    elif objects == "synthetic":
        background, crops = _synthetic_parts(size, n_objects, rng)
        what = "synthetic blobs moving over a synthetic background"
    else:
        raise DatasetError(f"objects must be 'nuclei' or 'synthetic', got {objects!r}")
    lane = size // n_objects
    if any(p.shape[0] + 8 > lane or p.shape[1] + 8 > size // 2 for p, _ in crops):
        raise DatasetError(f"{n_objects} lanes of {lane} px are too narrow for the objects")
    paths: list[list[tuple[int, int]]] = []
    for k, (pixels, _) in enumerate(crops):
        h, w = pixels.shape
        span = size - w
        x, vx = float(rng.uniform(0, span)), float(rng.uniform(*speed)) * rng.choice([-1, 1])
        wobble = (lane - h) / 2 - 2
        phase = float(rng.uniform(0, 2 * np.pi))
        positions = []
        for t in range(n_frames):
            left = round(x)
            top = round(k * lane + (lane - h) / 2 + wobble * np.sin(phase + t / 6))
            positions.append((left, top))
            x += vx
            if x < 0 or x > span:  # bounce off the lane's ends
                vx = -vx
                x = min(max(x, 0.0), float(span))
        paths.append(positions)
    tracks = []
    for k, ((pixels, mask), positions) in enumerate(zip(crops, paths, strict=True)):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes = tuple(
            (
                float(left + cols[0]),
                float(top + rows[0]),
                float(left + cols[-1] + 1),
                float(top + rows[-1] + 1),
            )
            for left, top in positions
        )
        tracks.append(GroundTruthTrack(k + 1, "nucleus", boxes))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w", format="mp4") as container:
        stream = cast(VideoStream, container.add_stream(encoder, rate=fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if encoder == "mpeg4":
            stream.options = {"qmin": "1", "qmax": "2", "threads": "1"}
        else:
            stream.options = {"crf": "10", "preset": "medium", "threads": "1"}
        stream.thread_count = 1
        for t in range(n_frames):
            grey = background.copy()
            for (pixels, mask), positions in zip(crops, paths, strict=True):
                left, top = positions[t]
                h, w = pixels.shape
                window = grey[top : top + h, left : left + w]
                window[mask] = pixels[mask]
            rgb = np.repeat(grey[..., None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return VideoFixture(
        path=out,
        fps=float(fps),
        n_frames=n_frames,
        width=size,
        height=size,
        codec="h264" if codec == "h264" else "mpeg4",
        tracks=tuple(tracks),
        description=what,
    )
