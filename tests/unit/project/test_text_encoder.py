"""Text items embedded by MiniLM at import ([data] text_encoder = "minilm"), then the loop."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from exemplar.project import Project

QUESTIONS = [
    ("What is the capital of France ?", "LOC"),
    ("Where is the Eiffel Tower ?", "LOC"),
    ("Which country has the most lakes ?", "LOC"),
    ("Where do penguins live ?", "LOC"),
    ("Who wrote Hamlet ?", "HUM"),
    ("Who was the first president of the United States ?", "HUM"),
    ("Who invented the telephone ?", "HUM"),
    ("Who painted the Mona Lisa ?", "HUM"),
    ("How many legs does a spider have ?", "NUM"),
    ("How far is the moon from the earth ?", "NUM"),
    ("When did World War II end ?", "NUM"),
    ("How many people live in Tokyo ?", "NUM"),
] * 3


def _csv(path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i, (text, label) in enumerate(QUESTIONS):
            writer.writerow([f"{text} ({i})", label])
    return path


def _project(root: Path) -> Project:
    return Project.init(
        root,
        ["HUM", "LOC", "NUM"],
        data={"text_encoder": "minilm"},
        oracle={"kind": "simulated"},
        model={"candidates": [{"recipe": "logreg"}]},
        selection={"strategy": "margin", "batch_size": 4, "initial_size": 8},
        stopping={"criteria": [{"name": "label_budget", "budget": 16}]},
    )


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _csv(tmp_path_factory.mktemp("text") / "questions.csv")


def test_minilm_features_are_cached_per_project_and_drive_the_loop(
    tmp_path: Path, table: Path
) -> None:
    with _project(tmp_path / "p") as project:
        report = project.import_(table, labels_as="ground_truth")
        assert report.added == len(QUESTIONS) and report.kinds == {"text": len(QUESTIONS)}
        features = np.asarray(project.features())
        assert features.shape == (len(QUESTIONS), 384)
        # Unit-length sentence embeddings, and paraphrase-like rows are closer than others.
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-4)
        same = float(features[0] @ features[12])  # "capital of France" (0) vs (12)
        other = float(features[0] @ features[4])  # vs "Who wrote Hamlet"
        assert same > other
        cache = project.root / "cache" / "embeddings"
        assert any(cache.rglob("*")), "embeddings were not cached in the project"
        assert project.run().status == "stopped"
        assert project.status()["labels"]["verified"] == 16
