"""The loop layer: orchestration shared by the simulator and the project loop.

The loop sits below the project facade (DESIGN.md §3): it sees a project only through
:class:`~exemplar.loop.context.LoopContext`.
"""

from exemplar.loop.context import LoopContext
from exemplar.loop.oracle import FileOracle, HumanOracle, Oracle, SimulatedOracle, make_oracle
from exemplar.loop.pool import LabeledPool
from exemplar.loop.scoring import ScoredPool, score_pool
from exemplar.loop.selection import Pick, Selection, pick_batch, query_batch, select_batch

__all__ = [
    "FileOracle",
    "HumanOracle",
    "LabeledPool",
    "LoopContext",
    "Oracle",
    "Pick",
    "ScoredPool",
    "Selection",
    "SimulatedOracle",
    "make_oracle",
    "pick_batch",
    "query_batch",
    "score_pool",
    "select_batch",
]
