"""Class split: is a class made of two merged classes recovered? (issue #12, step 7).

Writes bench/results/class_split.json and class_split.md.

    nice python -m bench.class_split [--datasets digits,mnist5k] [--seeds 5]

Protocol. For each dataset and each pair of true classes (a, b), the two classes are merged
into one. Two embeddings, each computed once per dataset and pair:

- ``pca``: PCA(32) of the per-pixel standardized pixels, fitted on the whole dataset
  without labels;
- ``mlp``: the 64 ReLU hidden units of a scikit-learn MLP (one hidden layer, seed 0, 200
  epochs at most) trained on the whole dataset's standardized pixels with a and b merged
  into one label, as the project's model would be before the split.

Each seed
draws 80% of the merged class's items (the "verified exemplars"), and both methods,
k-means (n_init=10, seeded) and Ward agglomerative, split that same sample in two
(:func:`exemplar.curation.split.propose_split`, L2-normalized embeddings), so the methods
are paired by seed. Reported per pair and method: the adjusted Rand index of the recovered
split against the true classes (mean and 95% t interval over seeds), the paired difference
k-means minus agglomerative, the silhouette, how often
:func:`~exemplar.curation.split.choose_n_classes` (max_k=5) picks 2, and the accuracy of
the proposed classes (clusters matched to true classes) in the most confident half by
margin against the least confident half: what a reviewer confirming in bulk would get.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from exemplar.curation.split import choose_n_classes, propose_split
from exemplar.data import load_dataset

RESULTS = Path(__file__).parent / "results"
PAIRS: dict[str, list[tuple[int, int]]] = {
    "digits": [(3, 8), (4, 9), (1, 7)],
    "mnist5k": [(3, 8), (4, 9), (1, 7)],
}
METHODS = ("kmeans", "agglomerative")
SAMPLE = 0.8
PCA_DIMS = 32


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and 95% Student t interval of a list of per-seed values."""
    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if len(a) < 2:
        return {"mean": mean, "lo": mean, "hi": mean}
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


def matched_correct(truth: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Per item, whether its cluster matches its true class under the better of the 2 matchings."""
    direct = truth == cluster
    return direct if direct.mean() >= 0.5 else ~direct


def run_pair(z: np.ndarray, y: np.ndarray, pair: tuple[int, int], seeds: int) -> dict[str, Any]:
    idx = np.flatnonzero(np.isin(y, pair))
    per_method: dict[str, dict[str, list[float]]] = {
        m: {"ari": [], "silhouette": [], "top_half_acc": [], "bottom_half_acc": [], "k2": []}
        for m in METHODS
    }
    seconds: dict[str, float] = {m: 0.0 for m in METHODS}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        take = np.sort(rng.choice(idx, size=round(SAMPLE * len(idx)), replace=False))
        truth = (y[take] == pair[1]).astype(int)
        for method in METHODS:
            t0 = time.perf_counter()
            p = propose_split(z[take], n_classes=2, seed=seed, method=method)
            seconds[method] += time.perf_counter() - t0
            k = choose_n_classes(z[take], max_k=5, seed=seed, method=method)
            correct = matched_correct(truth, p.cluster)
            half = len(take) // 2
            r = per_method[method]
            r["ari"].append(float(adjusted_rand_score(truth, p.cluster)))
            r["silhouette"].append(p.silhouette)
            r["top_half_acc"].append(float(correct[p.order[:half]].mean()))
            r["bottom_half_acc"].append(float(correct[p.order[half:]].mean()))
            r["k2"].append(float(k == 2))
    out: dict[str, Any] = {"pair": list(pair), "n_items": len(idx), "methods": {}}
    for method in METHODS:
        r = per_method[method]
        out["methods"][method] = {
            "ari": mean_ci(r["ari"]),
            "ari_per_seed": r["ari"],
            "silhouette": mean_ci(r["silhouette"]),
            "top_half_acc": mean_ci(r["top_half_acc"]),
            "bottom_half_acc": mean_ci(r["bottom_half_acc"]),
            "choose_n_classes_picks_2": int(sum(r["k2"])),
            "seconds_per_split": seconds[method] / seeds,
        }
    diff = np.subtract(per_method["kmeans"]["ari"], per_method["agglomerative"]["ari"])
    out["ari_kmeans_minus_agglomerative"] = mean_ci(diff.tolist())
    return out


EMBEDDINGS = {
    "pca": f"PCA({PCA_DIMS}) of per-pixel standardized pixels, fitted on the whole dataset "
    "without labels",
    "mlp": "64 ReLU hidden units of an MLP trained (seed 0) on the whole dataset's standardized "
    "pixels with the pair merged into one label",
}


def embed(x: np.ndarray, y: np.ndarray, pair: tuple[int, int], how: str) -> np.ndarray:
    """Embeddings of every item (see the module docstring); L2-normalized later."""
    xs = StandardScaler().fit_transform(x.astype(np.float64))
    if how == "pca":
        return PCA(n_components=PCA_DIMS, random_state=0).fit_transform(xs)
    merged = np.where(y == pair[1], pair[0], y)
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(xs, merged)
    return np.maximum(xs @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)


def fmt(ci: dict[str, float]) -> str:
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Class split: two merged classes recovered (issue #12, step 7)",
        "",
        f"Command: `{result['command']}`",
        "",
        (
            f"{result['seeds']} paired seeds, each an "
            f"{int(SAMPLE * 100)}% sample of the merged class. Mean [95% t CI] over seeds."
        ),
        "",
        (
            "| embedding | dataset | pair | items | method | ARI | silhouette | acc. top half | "
            "acc. bottom half | k=2 chosen |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for emb, by_name in result["runs"].items():
        for name, pairs in by_name.items():
            for p in pairs:
                for method, r in p["methods"].items():
                    lines.append(
                        f"| {emb} | {name} | {p['pair'][0]} + {p['pair'][1]} | {p['n_items']} | "
                        f"{method} | "
                        f"{fmt(r['ari'])} | {r['silhouette']['mean']:.3f} | "
                        f"{fmt(r['top_half_acc'])} | {fmt(r['bottom_half_acc'])} | "
                        f"{r['choose_n_classes_picks_2']}/{result['seeds']} |"
                    )
    lines += ["", "Paired ARI difference, k-means minus agglomerative:", ""]
    for emb, by_name in result["runs"].items():
        for name, pairs in by_name.items():
            for p in pairs:
                lines.append(
                    f"- {emb}, {name} {p['pair'][0]} + {p['pair'][1]}: "
                    f"{fmt(p['ari_kmeans_minus_agglomerative'])}"
                )
    lines += ["", "Embeddings (L2-normalized inside propose_split):", ""]
    lines += [f"- {emb}: {EMBEDDINGS[emb]}" for emb in result["runs"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist5k")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--embeddings", default="pca,mlp", help="comma-separated: pca, mlp")
    parser.add_argument("--out", type=Path, default=RESULTS / "class_split.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "class_split.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    embs = [e.strip() for e in args.embeddings.split(",") if e.strip()]
    unknown = [e for e in embs if e not in EMBEDDINGS]
    if unknown:
        parser.error(f"unknown embedding {unknown[0]!r}; choose from {', '.join(EMBEDDINGS)}")
    result: dict[str, Any] = {
        "command": "nice python -m bench.class_split "
        f"--datasets {','.join(names)} --seeds {args.seeds} --embeddings {','.join(embs)}",
        "embeddings": {e: EMBEDDINGS[e] + "; L2-normalized inside propose_split" for e in embs},
        "seeds": args.seeds,
        "sample_fraction": SAMPLE,
        "host": platform.node(),
        "runs": {e: {} for e in embs},
    }
    t0 = time.perf_counter()
    for name in names:
        data = load_dataset(name)
        x = np.asarray(data.X)
        y = np.asarray(data.y).astype(int)
        for emb in embs:
            result["runs"][emb][name] = [
                run_pair(embed(x, y, pair, emb), y, pair, args.seeds) for pair in PAIRS[name]
            ]
    result["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    args.markdown.write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
