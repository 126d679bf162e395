"""exemplar.toml validation: every mistake names its key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from exemplar.errors import ConfigError, ProjectError
from exemplar.project import Project, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exemplar.toml"
    path.write_text(text)
    return path


BASE = '[project]\nname = "p"\nclasses = ["a", "b"]\n'


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE))
    assert cfg.selection.strategy == "default" and cfg.selection.batch_size == 10
    assert cfg.oracle.kind == "human" and len(cfg.model.candidates) == 3
    assert cfg.oracle.overlap == 1  # one annotator per item unless asked


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[selection]\nbatchsize = 5\n", "unknown key [selection].batchsize"),
        (
            "[selection]\nbatch_size = 0\n",
            "[selection].batch_size: Input should be greater than or equal to 1",
        ),
        ('[selection]\nstrategy = "nope"\n', "unknown strategy 'nope'"),
        ('[oracle]\nkind = "robot"\n', "[oracle].kind"),
        ('[oracle]\nkind = "file"\n', "needs a path"),
        ("[oracle]\noverlap = 0\n", "[oracle].overlap"),
        ('[oracle]\nkind = "simulated"\noverlap = 2\n', "needs oracle kind 'human'"),
        ('[model]\ncandidates = [{recipe = "svm"}]\n', "unknown model recipe 'svm'"),
        ('[stopping]\ncriteria = [{name = "forever"}]\n', "forever"),
        ("[kpi]\ntarget = 2.0\n", "[kpi].target"),
        ("[surprise]\nx = 1\n", "unknown key [surprise]"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, BASE + extra))
    assert message in str(info.value)
    assert str(tmp_path / "exemplar.toml") in str(info.value)


def test_duplicate_classes_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate class names: a"):
        load_config(_write(tmp_path, '[project]\nname = "p"\nclasses = ["a", "a"]\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[project\n"))


def test_init_writes_a_config_that_reopens(tmp_path: Path) -> None:
    with Project.init(tmp_path / "p", ["x", "y"], selection={"batch_size": 7}) as project:
        assert project.config.selection.batch_size == 7
    with Project.open(tmp_path / "p") as again:
        assert again.config.selection.batch_size == 7 and again.classes == ["x", "y"]
    with pytest.raises(ProjectError, match="already holds a project"):
        Project.init(tmp_path / "p", ["x", "y"])
    with pytest.raises(ProjectError, match="not an exemplar project"):
        Project.open(tmp_path / "nowhere")
