"""The loop sits below the project facade: it never imports exemplar.project (DESIGN.md §3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import exemplar.loop

HIGHER = ("exemplar.project", "exemplar.cli", "exemplar.server")


def test_importing_the_engine_loads_no_higher_layer() -> None:
    code = (
        "import sys, exemplar.loop.engine, exemplar.simulate\n"
        f"print([m for m in sys.modules if m.startswith({HIGHER!r})])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_no_module_of_the_loop_imports_a_higher_layer_even_lazily() -> None:
    offenders = []
    for path in sorted(Path(exemplar.loop.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(HIGHER)]
    assert offenders == []


def test_project_satisfies_the_loop_context(tmp_path: Path) -> None:
    from exemplar.loop.context import LoopContext
    from exemplar.project import Project

    wanted = {"root", "config", "db", "arrays", "models_dir", "classes", "n_rows", "features"}
    assert wanted <= set(LoopContext.__annotations__) | set(vars(LoopContext))
    with Project.init(tmp_path / "p", ["a", "b"]) as project:
        context: LoopContext = project
        assert all(hasattr(context, name) for name in wanted)
