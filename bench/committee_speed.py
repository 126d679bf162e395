"""Committee query speed: exemplar against modAL on the same committee, side by side.

    python -m bench.committee_speed [--sizes 10000,100000,1000000] [--repeats 3]
        [--queries vote_entropy,consensus_entropy] [--out bench/results/committee_speed.json]

Protocol (issue #10): the synthetic pool of ``bench.selection_scale`` (N items, float32, 64
features, 10 Gaussian class centres), 1,000 random labeled items, batch 100. One committee
of 5 bagged scikit-learn ``LogisticRegression`` members is fitted once by exemplar
(``CommitteeAdapter(..., n_members=5, proba="mean")``), and modAL's ``Committee`` is built
from the same fitted member estimators (``ActiveLearner(estimator=member)``, no refit), so
both query the very same models on the very same pool.

Queries (fit time excluded; one query = predict the pool + score + pick the batch):

* ``vote_entropy``: modAL ``Committee(query_strategy=vote_entropy_sampling).query(X_pool,
  n_instances=100)`` against exemplar ``select_batch`` with the ``vote_entropy`` strategy
  (Dagan & Engelson 1995; both in nats on the hard votes of the 5 members);
* ``consensus_entropy``: modAL ``consensus_entropy_sampling`` (entropy of the members' mean
  probabilities) against exemplar's ``entropy`` strategy on the committee, whose ``proba``
  is the members' mean with ``proba="mean"``.

modAL gets the unlabeled rows as its pool (``X[unlabeled]``, built once, untimed); exemplar
scores the whole pool in chunks of 65,536 rows and picks among the unlabeled rows, as the
loop does. In each repeat both run, in alternating order; the speed-up is modAL seconds /
exemplar seconds, and the reported figure is the median of the paired speed-ups. The goal
is a speed-up of at least 1 at every size. The picks are compared too: equal score values
(vote entropy has many ties, so the indices may differ among equal scores) or, for
consensus entropy, equal except where the float64 scores lie within 1e-5 of the k-th.

Fit time is reported separately (median of the repeats): modAL's bagged ``Committee``
fitting 5 learners, exemplar's committee with ``proba="mean"`` (5 fits) and with the default
``proba="main"`` (6 fits: a main model and 5 members).

modAL is not a dependency of exemplar. Install it for this benchmark only
(``pip install modAL-python==0.4.2.1 --no-deps``); without it the modAL arm is skipped and
the result says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.selection_scale import BATCH, SEED, machine, make_pool, split
from exemplar.loop.selection import select_batch
from exemplar.models.sklearn import CommitteeAdapter
from exemplar.strategies import get_strategy

RESULTS = Path(__file__).parent / "results"
N_MEMBERS = 5
QUERIES = {"vote_entropy": "vote_entropy", "consensus_entropy": "entropy"}
#: Float64 scores this close to the k-th score may swap places in float32.
TIE_TOLERANCE = 1e-5


def _modal() -> Any:
    """The modAL modules, or None when modAL is not installed."""
    try:
        from modAL import disagreement, models
    except ImportError:
        return None
    return models, disagreement


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _logreg() -> LogisticRegression:
    return LogisticRegression(max_iter=1000)


def run_size(n: int, queries: list[str], repeats: int, modal: Any) -> list[dict[str, Any]]:
    X, y = make_pool(n)
    labeled, unlabeled = split(n)
    y_lab = y[labeled]
    X_lab = X[labeled]
    rows: list[dict[str, Any]] = []
    print(f"\n## N = {n:,}", flush=True)

    # ---- fit (small: 1,000 labeled rows), reported beside the queries
    fit_times: dict[str, list[float]] = {"exemplar_mean": [], "exemplar_main": [], "modal": []}
    committee = None

    def modal_fit() -> Any:
        models = modal[0]
        learners = [
            models.ActiveLearner(
                estimator=_logreg(), X_training=X_lab, y_training=y_lab, bootstrap_init=True
            )
            for _ in range(N_MEMBERS)
        ]
        return models.Committee(learner_list=learners)

    for _ in range(repeats):
        t, committee = _timed(
            lambda: CommitteeAdapter(
                _logreg(), n_members=N_MEMBERS, random_state=SEED, proba="mean"
            ).fit(X_lab, y_lab)
        )
        fit_times["exemplar_mean"].append(t)
        t, _ = _timed(
            lambda: CommitteeAdapter(_logreg(), n_members=N_MEMBERS, random_state=SEED).fit(
                X_lab, y_lab
            )
        )
        fit_times["exemplar_main"].append(t)
        if modal is not None:
            t, _ = _timed(modal_fit)
            fit_times["modal"].append(t)
    assert committee is not None
    fit_row = {
        "query": "fit (5 members, 1,000 labeled)",
        "n": n,
        **{f"{k}_seconds": statistics.median(v) if v else None for k, v in fit_times.items()},
        "times": fit_times,
    }
    rows.append(fit_row)
    print(
        f"fit: exemplar proba='mean' {fit_row['exemplar_mean_seconds']:.3f} s, proba='main' "
        f"{fit_row['exemplar_main_seconds']:.3f} s, modAL "
        + (f"{fit_row['modal_seconds']:.3f} s" if modal is not None else "skipped"),
        flush=True,
    )

    X_pool = X[unlabeled] if modal is not None else None
    for query in queries:
        strategy = get_strategy(QUERIES[query])

        def ours(strategy: Any = strategy) -> np.ndarray:
            return select_batch(
                committee, X, strategy, unlabeled, labeled, BATCH, random_state=0
            ).indices

        committee_modal = None
        if modal is not None:
            models, dis = modal
            sampling = {
                "vote_entropy": dis.vote_entropy_sampling,
                "consensus_entropy": dis.consensus_entropy_sampling,
            }[query]
            committee_modal = models.Committee(
                learner_list=[models.ActiveLearner(estimator=m.model_) for m in committee.members_],
                query_strategy=sampling,
            )

        def theirs(c: Any = committee_modal) -> np.ndarray:
            idx, _ = c.query(X_pool, n_instances=BATCH)
            return unlabeled[np.asarray(idx)]

        ours_t: list[float] = []
        theirs_t: list[float] = []
        picks_ours = picks_theirs = None
        for rep in range(repeats):
            arms: list[tuple[str, Callable[[], np.ndarray]]] = [("ours", ours)]
            if modal is not None:
                arms.append(("theirs", theirs))
            if rep % 2:
                arms.reverse()
            for name, fn in arms:
                t, picks = _timed(fn)
                if name == "ours":
                    ours_t.append(t)
                    picks_ours = picks
                else:
                    theirs_t.append(t)
                    picks_theirs = picks
        row: dict[str, Any] = {
            "query": query,
            "n": n,
            "exemplar_strategy": strategy.name,
            "exemplar_seconds": statistics.median(ours_t),
            "exemplar_times": ours_t,
        }
        if modal is None:
            row["modal_seconds"] = None
            row["note"] = "modAL not importable: arm skipped"
        else:
            speedups = [t / o for t, o in zip(theirs_t, ours_t, strict=True)]
            row.update(
                modal_seconds=statistics.median(theirs_t),
                modal_times=theirs_t,
                paired_speedups=speedups,
                speedup=statistics.median(speedups),
                goal_met=statistics.median(speedups) >= 1.0,
                picks=_compare_picks(query, committee, X, unlabeled, picks_ours, picks_theirs),
            )
        rows.append(row)
        _print(row)
    return rows


def _compare_picks(
    query: str,
    committee: CommitteeAdapter,
    X: np.ndarray,
    unlabeled: np.ndarray,
    ours: np.ndarray | None,
    theirs: np.ndarray | None,
) -> dict[str, Any]:
    """Whether both picked the same items, up to ties, by float64 scores of the same members."""
    assert ours is not None and theirs is not None
    rows = np.union1d(ours, theirs)
    member_proba = np.stack([m.model_.predict_proba(X[rows]) for m in committee.members_])
    if query == "vote_entropy":
        votes = member_proba.argmax(axis=2)
        counts = np.stack([(votes == c).sum(axis=0) for c in range(member_proba.shape[2])], 1)
        frac = counts / member_proba.shape[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            score = -np.nansum(np.where(frac > 0, frac * np.log(frac), 0.0), axis=1)
    else:
        mean = member_proba.mean(axis=0)
        score = -(mean * np.log(np.clip(mean, 1e-300, None))).sum(axis=1)
    by_row = dict(zip(rows.tolist(), score.tolist(), strict=True))
    ours_scores = np.sort([by_row[r] for r in ours.tolist()])
    theirs_scores = np.sort([by_row[r] for r in theirs.tolist()])
    kth = min(ours_scores[0], theirs_scores[0])
    differ = np.setxor1d(ours, theirs)
    return {
        "same_indices": bool(differ.size == 0),
        "n_different": int(differ.size),
        "same_scores_up_to_ties": bool(
            np.allclose(ours_scores, theirs_scores, atol=TIE_TOLERANCE, rtol=0)
            and all(abs(by_row[r] - kth) <= TIE_TOLERANCE for r in differ.tolist())
        ),
    }


def _print(row: dict[str, Any]) -> None:
    modal = row.get("modal_seconds")
    text = f"{row['query']}: exemplar {row['exemplar_seconds']:.3f} s, modAL " + (
        f"{modal:.3f} s, speed-up ×{row['speedup']:.2f} (median of paired)" if modal else "—"
    )
    if "picks" in row:
        text += f", picks {row['picks']}"
    print(text, flush=True)


def table(result: dict[str, Any]) -> str:
    lines = [
        "| query | N | exemplar s | modAL s | speed-up (median of paired) | same picks | goal ≥1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "exemplar_seconds" not in r:
            continue
        modal = r.get("modal_seconds")
        picks = r.get("picks", {})
        lines.append(
            f"| {r['query']} | {r['n']:,} | {r['exemplar_seconds']:.3f} | "
            + (f"{modal:.3f} | ×{r['speedup']:.2f} | " if modal else "— | — | ")
            + (
                f"{'yes' if picks.get('same_scores_up_to_ties') else 'NO'} "
                f"({picks.get('n_different', 0)} differ) | "
                if picks
                else "— | "
            )
            + ("yes" if r.get("goal_met") else ("—" if modal is None else "NO"))
            + " |"
        )
    lines += ["", "| fit | N | exemplar proba='mean' s | exemplar proba='main' s | modAL s |"]
    lines.append("|---|---|---|---|---|")
    for r in result["rows"]:
        if "exemplar_mean_seconds" in r:
            modal = r["modal_seconds"]
            lines.append(
                f"| {r['query']} | {r['n']:,} | {r['exemplar_mean_seconds']:.3f} | "
                f"{r['exemplar_main_seconds']:.3f} | "
                + (f"{modal:.3f} |" if modal is not None else "— |")
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", default=",".join(QUERIES))
    parser.add_argument("--out", type=Path, default=RESULTS / "committee_speed.json")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    queries = args.queries.split(",")
    for q in queries:
        if q not in QUERIES:
            sys.exit(f"unknown query {q!r}; choose from {', '.join(QUERIES)}")
    if args.repeats < 1:
        sys.exit("--repeats must be at least 1")
    modal = _modal()
    if modal is None:
        print(
            "NOTE: modAL is not importable; its arm is skipped (install it for this benchmark "
            "only: pip install modAL-python==0.4.2.1 --no-deps)",
            flush=True,
        )
    info = machine()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        for n in sizes:
            rows += run_size(n, queries, args.repeats, modal)
    info["loadavg_end"] = __import__("os").getloadavg()
    info["wall_seconds"] = time.perf_counter() - t0
    result = {
        "description": (
            "synthetic data (Gaussian class centres); the same 5 fitted LogisticRegression "
            "members queried by modAL's Committee and by exemplar; see bench/committee_speed.py"
        ),
        "config": {
            "sizes": sizes,
            "repeats": args.repeats,
            "queries": {q: QUERIES[q] for q in queries},
            "members": N_MEMBERS,
            "batch": BATCH,
            "modal": None if modal is None else _modal_version(),
        },
        "machine": info,
        "rows": rows,
    }
    md = table(result)
    print("\n" + md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {args.out}")


def _modal_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modAL-python")
    except PackageNotFoundError:  # pragma: no cover - informational only
        return "unknown"


if __name__ == "__main__":
    main()
