"""Which object embedding lets a class split recover nucleus + micronucleus (issue #12).

    nice python -m bench.object_split_embedding [--seeds 3] [--side 128]

The loop's split of an object class (:func:`exemplar.loop.curate.split_operation`) clusters
each verified object's crop (``CROP_SIDE``² per channel, sampled from the image scaled to
``[data] image_side``) beside its log size (:func:`exemplar.loop.curate._object_embedding`).
Here every object of the real nuclei tiles is embedded that way, the two classes are merged,
and an 80% sample per seed is split in two with :func:`exemplar.curation.propose_split`;
the adjusted Rand index against the true classes says how well the split recovers them.
Writes ``bench/results/object_split_embedding.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from exemplar.curation import propose_split
from exemplar.data.nuclei import nuclei_tiles
from exemplar.loop.curate import CROP_SIDE, _object_embedding, _unit_rows

RESULTS = Path(__file__).resolve().parent / "results"


def raw_rows(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Each object's crop (in an image scaled to ``side``) and log size, and its class."""
    data = nuclei_tiles()
    grid = (np.arange(CROP_SIDE) + 0.5) / CROP_SIDE
    rows, classes = [], []
    for image, objects in zip(data.images, data.objects, strict=True):
        h, w = image.shape[:2]
        scale = side / max(h, w)
        pixels = image.astype(np.float32) / 255.0
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        ys = np.clip((np.arange(side) / scale).astype(int), 0, h - 1)
        xs = np.clip((np.arange(side) / scale).astype(int), 0, w - 1)
        frame = pixels[ys][:, xs].transpose(2, 0, 1)
        for box, label in zip(objects.boxes, objects.classes, strict=True):
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            cx = np.clip((x0 + grid * max(x1 - x0, 1.0)).astype(int), 0, side - 1)
            cy = np.clip((y0 + grid * max(y1 - y0, 1.0)).astype(int), 0, side - 1)
            size = np.log(np.maximum([x1 - x0, y1 - y0], 0.5))
            rows.append(np.r_[frame[:, cy][:, :, cx].ravel(), size])
            classes.append(int(label))
    return np.asarray(rows, np.float32), np.asarray(classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--side", type=int, default=128)
    args = parser.parse_args()
    t0 = time.perf_counter()
    raw, y = raw_rows(args.side)
    size = raw[:, -2:]
    embeddings = {
        "crop": _unit_rows(raw[:, :-2]),
        "size": (size - size.mean(axis=0)) / size.std(axis=0),
        "crop + size (the loop's)": _object_embedding(raw, raw),
    }
    results = {}
    for name, X in embeddings.items():
        scores = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            idx = rng.choice(y.size, int(0.8 * y.size), replace=False)
            split = propose_split(X[idx], n_classes=2, seed=seed)
            scores.append(float(adjusted_rand_score(y[idx], split.cluster)))
        results[name] = scores
    out = {
        "objects": int(y.size),
        "per_class": np.bincount(y).tolist(),
        "side": args.side,
        "seeds": args.seeds,
        "ari": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "object_split_embedding.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Object class split: which embedding recovers nucleus + micronucleus (issue #12)",
        "",
        (
            f"Command: `nice python -m bench.object_split_embedding --seeds {args.seeds} "
            f"--side {args.side}`; {y.size} objects of the real nuclei tiles "
            f"({out['per_class'][0]} nuclei, {out['per_class'][1]} micronuclei), merged and "
            "split in two (k-means), 80% sample per seed."
        ),
        "",
        "| embedding | ARI per seed | mean |",
        "|---|---|---|",
    ]
    for name, scores in results.items():
        per_seed = ", ".join(f"{v:.3f}" for v in scores)
        lines.append(f"| {name} | {per_seed} | {np.mean(scores):.3f} |")
    (RESULTS / "object_split_embedding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
