"""Orchestration primitives shared by the simulator and the project loop."""

from exemplar.loop.oracle import Oracle, SimulatedOracle
from exemplar.loop.pool import LabeledPool
from exemplar.loop.scoring import ScoredPool, score_pool
from exemplar.loop.selection import Selection, query_batch, select_batch

__all__ = [
    "LabeledPool",
    "Oracle",
    "ScoredPool",
    "Selection",
    "SimulatedOracle",
    "query_batch",
    "score_pool",
    "select_batch",
]
