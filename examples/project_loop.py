"""Drive a labeling project from Python: init, import, run the loop, inspect, export.

    python examples/project_loop.py [folder]

Uses the digits images as a feature matrix with ground truth, so a simulated oracle can
stand in for the expert. Swap ``oracle={"kind": "human"}`` to label for real: ``run``
then returns "waiting" after queuing a batch, and ``next_item`` / ``submit_label`` (or
``exemplar label``) deliver the labels.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from exemplar.project import Project


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    X, y = load_digits(return_X_y=True)
    data = folder / "digits.npz"
    np.savez(data, X=X, y=y.astype(str))

    with Project.init(
        folder / "project",
        classes=[str(c) for c in range(10)],
        oracle={"kind": "simulated"},
        selection={"strategy": "default", "batch_size": 10},
        stopping={"criteria": [{"name": "label_budget", "budget": 100}]},
    ) as project:
        report = project.import_(data, labels_as="ground_truth")
        print(f"imported {report.added} items")
        outcome = project.run(on_event=print)
        print(f"{outcome.status}: {outcome.message}")
        status = project.status()
        for h in status["history"]:
            acc = h["validation"].get("accuracy")
            print(
                f"cycle {h['cycle']}: {h['n_labels'] or 0} labels, validation accuracy "
                f"{'—' if acc is None else f'{acc:.3f}'}, decision {h['decision']}"
            )
        n = project.export(folder / "labels.csv")
        print(f"exported {n} labels with provenance to {folder / 'labels.csv'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
