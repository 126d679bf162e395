"""Boxes across video frames: linear interpolation between keyframes, and trackers.

Pure functions of arrays: frames are ``(h, w, 3)`` uint8 RGB or ``(h, w)`` grey, and a box
is ``(x0, y0, x1, y1)`` in pixels (the store's convention).

Two trackers follow a box from the frame it was drawn on through the next frames:

- ``"template"``: the box's pixels on the first frame are the template; on each next
  frame, :func:`cv2.matchTemplate` with zero-mean normalized cross-correlation
  (``TM_CCOEFF_NORMED``, scores in [-1, 1]) searches a window around where the box should
  be (its last place plus its last step, a constant-velocity guess), and the best match is
  the new box (the same size). The template is never updated, so the box cannot drift onto
  the background; the score is the match's correlation.
- ``"mil"``: OpenCV's Multiple Instance Learning tracker (Babenko, Yang and Belongie,
  "Visual tracking with online multiple instance learning", CVPR 2009), which updates an
  online boosted classifier of object against background as it goes. OpenCV reports no
  confidence for it, so the score of each box is the same correlation as above: the new
  box's pixels (resized to the template's size) against the first frame's template. MIL
  samples at random and OpenCV takes no seed for it: its boxes vary from run to run.

Both stop at the first frame whose score falls below ``min_score`` (the object is lost or
hidden) or where the box would leave the frame (less than half of it inside), and return
the boxes up to there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import cv2
import numpy as np

from exemplar.errors import ExemplarError

__all__ = ["TRACKERS", "TrackingError", "interpolate_boxes", "track_boxes"]

Box = tuple[float, float, float, float]
#: The tracker methods :func:`track_boxes` knows.
TRACKERS = ("template", "mil")


class TrackingError(ExemplarError, ValueError):
    """A box or frame given to a tracker or to interpolation is unusable."""


def _box(value: Sequence[float], what: str = "box") -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise TrackingError(
            f"the {what} must be four numbers x0, y0, x1, y1, got {value!r}"
        ) from exc
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        raise TrackingError(f"the {what} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not a box")
    return (x0, y0, x1, y1)


def interpolate_boxes(
    keyframes: Mapping[int, Sequence[float]], frames: Sequence[int]
) -> dict[int, Box]:
    """Boxes on ``frames`` by linear interpolation between consecutive keyframes.

    A frame that is a keyframe gets the keyframe's box exactly; a frame strictly between
    keyframes ``a < f < b`` gets ``box_a + (f - a) / (b - a) * (box_b - box_a)`` (each
    coordinate); a frame before the first or after the last keyframe gets nothing.

    Parameters
    ----------
    keyframes : mapping of int to box
        Frame index -> ``(x0, y0, x1, y1)``.
    frames : sequence of int
        The frame indices wanted.

    Returns
    -------
    dict of int to box
        Only the frames inside the keyframes' span, in the order given.
    """
    keys = sorted(int(k) for k in keyframes)
    boxes = {int(k): np.asarray(_box(v, f"box of keyframe {k}")) for k, v in keyframes.items()}
    out: dict[int, Box] = {}
    if not keys:
        return out
    for frame in frames:
        f = int(frame)
        if f < keys[0] or f > keys[-1]:
            continue
        if f in boxes:
            out[f] = tuple(float(v) for v in boxes[f])  # type: ignore[assignment]
            continue
        right = int(np.searchsorted(keys, f))
        a, b = keys[right - 1], keys[right]
        t = (f - a) / (b - a)
        value = boxes[a] + t * (boxes[b] - boxes[a])
        out[f] = tuple(float(v) for v in value)  # type: ignore[assignment]
    return out


def _grey(frame: np.ndarray) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    elif arr.ndim != 2:
        raise TrackingError(f"a frame must be (h, w) or (h, w, 3), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _ncc(patch: np.ndarray, template: np.ndarray) -> float:
    """Zero-mean normalized cross-correlation of two same-size patches (0 when flat)."""
    if patch.shape != template.shape:
        patch = cv2.resize(
            patch, (template.shape[1], template.shape[0]), interpolation=cv2.INTER_AREA
        )
    score = float(cv2.matchTemplate(patch, template, cv2.TM_CCOEFF_NORMED)[0, 0])
    return score if math.isfinite(score) else 0.0


def _inside_fraction(box: Box, width: int, height: int) -> float:
    x0, y0, x1, y1 = box
    area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
    ix = max(0.0, min(x1, width) - max(x0, 0.0))
    iy = max(0.0, min(y1, height) - max(y0, 0.0))
    return ix * iy / area


def _crop(grey: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = (round(v) for v in box)
    h, w = grey.shape
    return grey[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]


def track_boxes(
    frames: Sequence[np.ndarray],
    start_box: Sequence[float],
    method: Literal["template", "mil"] = "template",
    min_score: float = 0.5,
    *,
    search: float = 1.0,
) -> list[tuple[int, Box, float]]:
    """Follow ``start_box`` (drawn on ``frames[0]``) through ``frames[1:]``.

    Parameters
    ----------
    frames : sequence of ndarray
        Consecutive frames (RGB or grey, all the same size); the box is on the first.
    start_box : box
        ``(x0, y0, x1, y1)`` on ``frames[0]``, at least 4 px on a side, inside the frame.
    method : {"template", "mil"}
        Template matching, or OpenCV's MIL tracker (see the module docstring).
    min_score : float
        Tracking stops at the first frame whose score is below this (in [-1, 1]).
    search : float
        Template matching: the search window reaches this many box sizes beyond the
        predicted box on each side.

    Returns
    -------
    list of (int, box, float)
        ``(position in frames, box, score)`` for positions 1, 2, ... until tracking
        stops; boxes are clipped to the frame.

    Raises
    ------
    TrackingError
        An unknown method, a malformed or too small start box, or frames of another size.
    """
    if method not in TRACKERS:
        raise TrackingError(f"unknown tracker {method!r}; expected one of {', '.join(TRACKERS)}")
    if len(frames) == 0:
        return []
    first = _grey(frames[0])
    height, width = first.shape
    box = _box(start_box, "start box")
    x0, y0, x1, y1 = box
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise TrackingError(f"the start box {box} is smaller than 4 px on a side")
    if _inside_fraction(box, width, height) < 0.999:
        raise TrackingError(f"the start box {box} is not inside the {width}x{height} frame")
    template = _crop(first, box)
    if method == "template":
        return _track_template(frames, first.shape, template, box, min_score, search)
    return _track_mil(frames, first, template, box, min_score)


def _check_size(grey: np.ndarray, shape: tuple[int, ...], position: int) -> None:
    if grey.shape != shape:
        raise TrackingError(
            f"frame {position} is {grey.shape[1]}x{grey.shape[0]}, the first is "
            f"{shape[1]}x{shape[0]}"
        )


def _track_template(
    frames: Sequence[np.ndarray],
    shape: tuple[int, ...],
    template: np.ndarray,
    box: Box,
    min_score: float,
    search: float,
) -> list[tuple[int, Box, float]]:
    height, width = shape
    th, tw = template.shape
    out: list[tuple[int, Box, float]] = []
    x, y = box[0], box[1]
    vx = vy = 0.0
    for position in range(1, len(frames)):
        grey = _grey(frames[position])
        _check_size(grey, shape, position)
        px, py = x + vx, y + vy  # constant-velocity guess
        if _inside_fraction((px, py, px + tw, py + th), width, height) < 0.5:
            break
        mx, my = search * tw, search * th
        left = int(max(0, math.floor(px - mx)))
        top = int(max(0, math.floor(py - my)))
        right = int(min(width, math.ceil(px + tw + mx)))
        bottom = int(min(height, math.ceil(py + th + my)))
        if right - left < tw or bottom - top < th:
            break
        scores = cv2.matchTemplate(grey[top:bottom, left:right], template, cv2.TM_CCOEFF_NORMED)
        scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if best < min_score:
            break
        nx, ny = float(left + bx), float(top + by)
        vx, vy = nx - x, ny - y
        x, y = nx, ny
        out.append((position, (x, y, x + tw, y + th), float(best)))
    return out


def _track_mil(
    frames: Sequence[np.ndarray],
    first: np.ndarray,
    template: np.ndarray,
    box: Box,
    min_score: float,
) -> list[tuple[int, Box, float]]:
    height, width = first.shape
    tracker = cv2.TrackerMIL_create()  # type: ignore[attr-defined]
    x0, y0, x1, y1 = box
    rect = (round(x0), round(y0), round(x1 - x0), round(y1 - y0))
    tracker.init(cv2.cvtColor(first, cv2.COLOR_GRAY2BGR), rect)
    out: list[tuple[int, Box, float]] = []
    for position in range(1, len(frames)):
        grey = _grey(frames[position])
        _check_size(grey, first.shape, position)
        ok, (rx, ry, rw, rh) = tracker.update(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        if not ok:
            break
        found: Box = (float(rx), float(ry), float(rx + rw), float(ry + rh))
        if _inside_fraction(found, width, height) < 0.5:
            break
        clipped: Box = (
            max(found[0], 0.0),
            max(found[1], 0.0),
            min(found[2], float(width)),
            min(found[3], float(height)),
        )
        score = _ncc(_crop(grey, found), template)
        if score < min_score:
            break
        out.append((position, clipped, score))
    return out
