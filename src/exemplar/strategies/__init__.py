"""Query strategies (the Data Selector): predictions and index sets in, a batch out.

Every strategy is listed by ``exemplar strategies`` and documented in docs/strategies.md.
"""

from exemplar.strategies.albl import ALBL
from exemplar.strategies.badge import Badge
from exemplar.strategies.bald import Bald
from exemplar.strategies.base import (
    QueryContext,
    ReducedSamples,
    ScoringStrategy,
    Strategy,
    TopRows,
    as_rng,
    top_k,
)
from exemplar.strategies.batchbald import BatchBald
from exemplar.strategies.box_committee import BoxCommittee
from exemplar.strategies.box_entropy import BoxEntropy
from exemplar.strategies.box_margin import BoxMargin
from exemplar.strategies.box_uncertain_diverse import BoxUncertainThenDiverse
from exemplar.strategies.class_balanced import ClassBalanced
from exemplar.strategies.cluster_margin import ClusterMargin
from exemplar.strategies.consensus_kl import ConsensusKL
from exemplar.strategies.coreset import CoreSet
from exemplar.strategies.cost_aware import CostAware
from exemplar.strategies.entropy import Entropy
from exemplar.strategies.expected_count import ExpectedCount
from exemplar.strategies.information_density import InformationDensity
from exemplar.strategies.least_confidence import LeastConfidence
from exemplar.strategies.localization_stability import LocalizationStability
from exemplar.strategies.margin import Margin
from exemplar.strategies.mean_std import MeanSTD
from exemplar.strategies.probcover import ProbCover
from exemplar.strategies.random import RandomSampling
from exemplar.strategies.ratio import RatioOfConfidence
from exemplar.strategies.registry import DEFAULT_STRATEGY, STRATEGIES, get_strategy, register
from exemplar.strategies.typiclust import TypiClust
from exemplar.strategies.uncertain_diverse import UncertainThenDiverse
from exemplar.strategies.variation_ratios import VariationRatios
from exemplar.strategies.vote_entropy import VoteEntropy

for _cls in (
    RandomSampling,
    LeastConfidence,
    Margin,
    Entropy,
    RatioOfConfidence,
    VoteEntropy,
    ConsensusKL,
    Bald,
    VariationRatios,
    MeanSTD,
    BatchBald,
    InformationDensity,
    CoreSet,
    Badge,
    ClusterMargin,
    TypiClust,
    ProbCover,
    ClassBalanced,
    UncertainThenDiverse,
    BoxEntropy,
    BoxMargin,
    LocalizationStability,
    BoxCommittee,
    ExpectedCount,
    BoxUncertainThenDiverse,
    CostAware,
    ALBL,
):
    register(_cls)

__all__ = [
    "ALBL",
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "Badge",
    "Bald",
    "BatchBald",
    "BoxCommittee",
    "BoxEntropy",
    "BoxMargin",
    "BoxUncertainThenDiverse",
    "ClassBalanced",
    "ClusterMargin",
    "ConsensusKL",
    "CoreSet",
    "CostAware",
    "Entropy",
    "ExpectedCount",
    "InformationDensity",
    "LeastConfidence",
    "LocalizationStability",
    "Margin",
    "MeanSTD",
    "ProbCover",
    "QueryContext",
    "RandomSampling",
    "RatioOfConfidence",
    "ReducedSamples",
    "ScoringStrategy",
    "Strategy",
    "TopRows",
    "TypiClust",
    "UncertainThenDiverse",
    "VariationRatios",
    "VoteEntropy",
    "as_rng",
    "get_strategy",
    "register",
    "top_k",
]
