"""The simulator: prove active learning against random on fully labeled data."""

from exemplar.simulate.report import render_html, write_outputs
from exemplar.simulate.runner import (
    SimulationConfig,
    SimulationResult,
    run_simulation,
    validate_config,
)
from exemplar.simulate.summary import best_strategy, curve_table, summarize

__all__ = [
    "SimulationConfig",
    "SimulationResult",
    "best_strategy",
    "curve_table",
    "render_html",
    "run_simulation",
    "summarize",
    "validate_config",
    "write_outputs",
]
