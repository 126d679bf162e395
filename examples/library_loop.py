"""Use exemplar's strategies from your own scikit-learn loop (no project, no database).

    python examples/library_loop.py

Labels 10 items per round on the digits data with the default strategy and with random
sampling, and prints test accuracy side by side.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from exemplar.models import SklearnAdapter, make_estimator
from exemplar.stopping import LabelBudget, Observation
from exemplar.strategies import get_strategy


def run(strategy_name: str, seed: int = 0) -> list[tuple[int, float]]:
    X, y = load_digits(return_X_y=True)
    X_pool, X_test, y_pool, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    rng = np.random.default_rng(seed)
    labeled = rng.choice(len(y_pool), 20, replace=False)
    strategy = get_strategy(strategy_name)
    stop = LabelBudget(120)
    curve = []
    for rnd in range(100):
        model = SklearnAdapter(make_estimator("logreg", seed)).fit(X_pool[labeled], y_pool[labeled])
        curve.append((labeled.size, float((model.predict_labels(X_test) == y_test).mean())))
        if stop.update(Observation(round=rnd, n_labeled=labeled.size)).stop:
            break
        predictions = model.predict(X_pool, embeddings="embeddings" in strategy.requires)
        batch = strategy.query(
            predictions, labeled=labeled, batch_size=10, y_labeled=y_pool[labeled], random_state=rng
        )
        labeled = np.concatenate([labeled, batch])  # here a person would label `batch`
    return curve


if __name__ == "__main__":
    active, passive = run("default"), run("random")
    print(f"{'labels':>6}  {'default':>8}  {'random':>8}")
    for (n, a), (_, r) in zip(active, passive, strict=True):
        print(f"{n:>6}  {a:>8.3f}  {r:>8.3f}")
