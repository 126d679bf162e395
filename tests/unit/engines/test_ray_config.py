"""``[scoring]`` mistakes are named when exemplar.toml loads, not at a cycle's score step."""

from __future__ import annotations

from pathlib import Path

import pytest

from exemplar.errors import ConfigError
from exemplar.loop.config import ProjectConfig
from exemplar.project import load_config

BASE = '[project]\nname = "p"\nclasses = ["a", "b"]\n'
DETECTION = '[project]\nname = "p"\ntask = "detection"\nclasses = ["cell"]\n'


def _load(tmp_path: Path, text: str) -> ProjectConfig:
    path = tmp_path / "exemplar.toml"
    path.write_text(text)
    return load_config(path)


def test_scoring_defaults_and_x_rows(tmp_path: Path) -> None:
    cfg = _load(tmp_path, BASE + '[scoring]\nengine = "ray"\nx_rows = "ship"\n')
    assert cfg.scoring.engine == "ray" and cfg.scoring.x_rows == "ship"
    assert _load(tmp_path, BASE).scoring.x_rows == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + '[scoring]\nx_rows = "disk"\n', "[scoring].x_rows"),
        (
            BASE + '[scoring]\nengine = "ray"\nray_address = "auto"\nnum_cpus = 4\n',
            "drop num_cpus",
        ),
        (DETECTION + '[scoring]\nengine = "ray"\n', "scores locally"),
    ],
)
def test_bad_scoring_sections_fail_at_load(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert message in str(info.value)
