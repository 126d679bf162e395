"""Turn simulation rows into the statistics of ``summary.json`` and a plain verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from exemplar.metrics import (
    estimate_cost,
    labels_to_reach,
    normalized_aulc,
    paired_difference,
    win_tie_loss,
)
from exemplar.simulate.runner import SimulationResult

__all__ = ["curve_table", "diff_text", "diffs_vs_random", "json_safe", "summarize"]

#: Fraction of full-data accuracy that defines "labels needed" (issue: 95%).
TARGET_FRACTION = 0.95


def curve_table(
    result: SimulationResult, metric: str = "accuracy"
) -> dict[str, dict[str, list[float]]]:
    """Per strategy: mean label count, mean and std of ``metric`` at each round."""
    out: dict[str, dict[str, list[float]]] = {}
    for name in result.config.strategies:
        grid = _grid(result, name, metric)
        n = _grid(result, name, "n_labels")
        out[name] = {
            "n_labels": n.mean(axis=0).tolist(),
            "mean": grid.mean(axis=0).tolist(),
            "std": grid.std(axis=0, ddof=1).tolist()
            if grid.shape[0] > 1
            else [0.0] * grid.shape[1],
        }
    return out


def summarize(result: SimulationResult) -> dict[str, Any]:
    """Everything ``summary.json`` holds: per-strategy statistics, pairwise tests, cost, verdict."""
    cfg = result.config
    target = TARGET_FRACTION * result.full_data_accuracy
    n_classes = int(result.classes.size)
    aulc: dict[str, list[float]] = {}
    strategies: dict[str, dict[str, Any]] = {}
    curves = curve_table(result)
    for name in cfg.strategies:
        acc = _grid(result, name, "accuracy")
        f1 = _grid(result, name, "macro_f1")
        n = _grid(result, name, "n_labels")
        per_seed = [normalized_aulc(n[s], acc[s]) for s in range(acc.shape[0])]
        aulc[name] = per_seed
        reach = [labels_to_reach(n[s], acc[s], target) for s in range(acc.shape[0])]
        reached = [r for r in reach if r is not None]
        batches = _grid(result, name, "batch_classes")[:, 1:]
        labeled_classes = _grid(result, name, "labeled_classes")
        strategies[name] = {
            "resolves_to": result.resolved.get(name, name),
            "aulc_mean": float(np.mean(per_seed)),
            "aulc_std": _std(per_seed),
            "aulc_per_seed": per_seed,
            "macro_f1_aulc_mean": float(
                np.mean([normalized_aulc(n[s], f1[s]) for s in range(f1.shape[0])])
            ),
            "final_accuracy_mean": float(acc[:, -1].mean()),
            "final_accuracy_std": _std(acc[:, -1]),
            "labels_to_target": {
                "target_accuracy": target,
                "mean": float(np.mean(reached)) if reached else None,
                "per_seed": reach,
                "seeds_reached": len(reached),
            },
            "class_coverage": {
                "mean_batch_coverage": (
                    float((batches / min(cfg.batch_size, n_classes)).mean())
                    if batches.size
                    else None
                ),
                "final_classes_labeled_mean": float(labeled_classes[:, -1].mean()),
                "n_classes": n_classes,
            },
            "query_seconds_mean": float(_grid(result, name, "query_seconds")[:, 1:].mean())
            if cfg.cycles
            else 0.0,
            "fit_seconds_mean": float(_grid(result, name, "fit_seconds").mean()),
        }
    for name, d in diffs_vs_random(aulc).items():
        strategies[name]["diff_vs_random"] = d
    summary: dict[str, Any] = {
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "dataset": {
            "name": cfg.dataset,
            "n_pool": result.n_pool,
            "n_test": result.n_test,
            "n_classes": n_classes,
        },
        "full_data_accuracy": result.full_data_accuracy,
        "full_data_macro_f1": result.full_data_macro_f1,
        "target_accuracy": target,
        "strategies": strategies,
        "win_tie_loss": win_tie_loss(aulc),
        "curves": curves,
    }
    summary["config"]["strategies"] = list(cfg.strategies)
    summary["cost"] = _cost(result, strategies, curves)
    summary["verdict"] = _verdict(result, summary)
    return json_safe(summary)


def diffs_vs_random(aulc: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Each arm's paired difference in per-seed AULC against random, with its 95% t-interval
    (:func:`~exemplar.metrics.paired_difference`); empty when random did not run."""
    if "random" not in aulc:
        return {}
    return {name: paired_difference(v, aulc["random"]).to_dict() for name, v in aulc.items()}


def diff_text(d: Mapping[str, Any] | None) -> str:
    """A paired difference as ``+0.012 [-0.003, +0.027]`` (its 95% CI when known), or ``—``."""
    if not d:
        return "—"
    ci = "" if d["ci_low"] is None else f" [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
    return f"{d['mean']:+.3f}{ci}"


def best_strategy(summary: dict[str, Any]) -> str | None:
    """The non-random strategy with the highest mean AULC (None if only random ran)."""
    others = {k: v for k, v in summary["strategies"].items() if k != "random"}
    return max(others, key=lambda k: others[k]["aulc_mean"]) if others else None


def _cost(
    result: SimulationResult,
    strategies: dict[str, dict[str, Any]],
    curves: dict[str, dict[str, list[float]]],
) -> dict[str, Any] | None:
    others = [k for k in strategies if k != "random"]
    if "random" not in curves or not others:
        return None
    best = max(others, key=lambda k: strategies[k]["aulc_mean"])
    rand = curves["random"]
    target = min(TARGET_FRACTION * result.full_data_accuracy, max(rand["mean"]))
    n_random = _crossing(rand["n_labels"], rand["mean"], target)
    n_best = _crossing(curves[best]["n_labels"], curves[best]["mean"], target)
    budget = rand["n_labels"][-1]
    assert n_random is not None  # the target is at most random's best mean score
    estimate = estimate_cost(
        labels_random=n_random,
        labels_strategy=n_best if n_best is not None else budget,
        pool_size=result.n_pool,
        label_cost=result.config.label_cost,
        engineering_cost=result.config.engineering_cost,
        strategy=best,
    )
    return {"strategy": best, "target_accuracy": target, **estimate.to_dict()}


def _crossing(n: list[float], scores: list[float], target: float) -> float | None:
    """Label count where the mean curve first reaches ``target``, linearly interpolated."""
    for i, s in enumerate(scores):
        if s >= target:
            if i == 0:
                return float(n[0])
            s0, n0 = scores[i - 1], n[i - 1]
            return float(n0 + (target - s0) / (s - s0) * (n[i] - n0))
    return None


def _verdict(result: SimulationResult, summary: dict[str, Any]) -> str:
    cfg = result.config
    best = best_strategy(summary)
    if best is None:
        return "Only random sampling ran; add a strategy to compare against it."
    stats = summary["strategies"][best]
    head = (
        f"On {cfg.dataset} with {cfg.model}, {cfg.seeds} paired seeds and up to "
        f"{cfg.initial + cfg.batch_size * cfg.cycles} labels, the best strategy was {best} "
        f"(normalized AULC {stats['aulc_mean']:.3f})."
    )
    if "random" not in summary["strategies"]:
        return head + " Random sampling was not run, so no claim is made against it."
    diff = stats["diff_vs_random"]
    rand = summary["strategies"]["random"]
    ci = (
        f" (paired gain {diff['mean']:+.3f}, 95% CI [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}])"
        if diff["ci_low"] is not None
        else f" (gain {diff['mean']:+.3f}; one seed, no confidence interval)"
    )
    if diff["ci_low"] is not None and diff["ci_low"] > 0:
        call = f"It beats random sampling (AULC {rand['aulc_mean']:.3f}){ci}: active learning helps here."
    elif diff["ci_high"] is not None and diff["ci_high"] < 0:
        call = f"It is worse than random sampling (AULC {rand['aulc_mean']:.3f}){ci}: do not use active learning here."
    else:
        call = (
            f"It is not distinguishable from random sampling (AULC {rand['aulc_mean']:.3f}){ci}; "
            "run more seeds or expect little benefit."
        )
    losers = [
        k
        for k, v in summary["strategies"].items()
        if k != "random"
        and v.get("diff_vs_random", {}).get("ci_high") is not None
        and v["diff_vs_random"]["ci_high"] < 0
    ]
    warn = f" Worse than random: {', '.join(losers)}." if losers else ""
    cost = summary.get("cost")
    tail = f" {cost['explanation']}" if cost else ""
    return f"{head} {call}{warn}{tail}"


def _grid(result: SimulationResult, name: str, column: str) -> np.ndarray:
    """Rows of one strategy as a (seeds, rounds + 1) array of ``column``."""
    cfg = result.config
    out = np.full((cfg.seeds, cfg.cycles + 1), np.nan)
    for row in result.rows:
        if row["strategy"] == name:
            out[int(row["seed"]), int(row["round"])] = float(row[column])
    return out


def _std(values: Any) -> float:
    arr = np.asarray(values, dtype=float)
    return float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def json_safe(obj: Any) -> Any:
    """Replace NaN with None (and numpy scalars with Python ones), so the JSON is valid for
    every reader."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj
