"""DESIGN.md §3 is enforced: `make lint` runs import-linter with the contracts in pyproject.toml.

These tests run the same contracts: on the package as it is (kept), and on a copy with one
import that goes up a layer, or that closes a cycle (broken), so a contract that stopped
checking anything would fail here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT), str(ROOT / "pyproject.toml"), "--no-cache"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "exemplar",
        src / "exemplar",
        ignore=shutil.ignore_patterns("*.pyc", "__pycache__", "static", "templates"),
    )
    path = src / "exemplar" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return src


def test_the_package_keeps_every_contract() -> None:
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


def test_an_import_up_a_layer_breaks_the_layers_contract(tmp_path: Path) -> None:
    src = _copy_with(tmp_path, "strategies/random.py", "import exemplar.store  # noqa")
    result = _lint(src)
    assert result.returncode != 0
    assert "exemplar.strategies.random -> exemplar.store" in result.stdout


def test_a_lazy_import_from_the_loop_into_the_server_is_caught_too(tmp_path: Path) -> None:
    line = "def _late() -> None:\n    import exemplar.server.app  # noqa"
    result = _lint(_copy_with(tmp_path, "loop/selection.py", line))
    assert result.returncode != 0
    assert "exemplar.loop.selection -> exemplar.server.app" in result.stdout
