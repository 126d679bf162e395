"""Every exception exemplar raises on bad input lives here, so callers catch one family.

Each carries a message meant for a person: what was wrong and what to do about it.
"""

from __future__ import annotations


class ExemplarError(Exception):
    """Base class of all exemplar errors. The CLI prints these as one line."""


class StrategyError(ExemplarError, ValueError):
    """A strategy was called with inputs it cannot use."""


class EmptyPoolError(StrategyError):
    """The unlabeled pool has no items left to select from."""


class BatchTooLargeError(StrategyError):
    """The requested batch is larger than the unlabeled pool."""


class InvalidPredictionsError(StrategyError):
    """Predictions are malformed: NaN/inf values, wrong shape, or rows that are not distributions."""


class MissingPredictionsError(StrategyError):
    """A strategy needs an output (stochastic samples, embeddings) that the predictions lack."""


class SingleClassError(StrategyError):
    """The labeled set (or the model trained on it) covers only one class."""


class InvalidIndicesError(StrategyError):
    """Index sets are out of range, duplicated, or overlap (an item both labeled and unlabeled)."""


class StoppingError(ExemplarError, ValueError):
    """A stopping criterion was given an observation or state it cannot use."""


class MissingObservationError(StoppingError):
    """The observation lacks what the criterion reads (stop-set predictions, a metric, ...)."""


class InvalidObservationError(StoppingError):
    """An observation is malformed: NaN values, a changed stop set, rounds out of order."""


class DatasetError(ExemplarError):
    """A dataset could not be found, read or parsed."""


class FormatError(DatasetError):
    """An annotation file (COCO, YOLO, Pascal VOC, Label Studio) cannot be parsed at all.

    The message names the file. Single bad objects are reported as problems, not raised.
    """


class ModelError(ExemplarError):
    """A model adapter could not fit or predict."""


class ConfigError(ExemplarError):
    """A configuration value is unknown or invalid."""


class StoreError(ExemplarError):
    """The project database cannot be opened, migrated or written."""


class EmptyDatabaseError(StoreError):
    """The database holds no exemplar schema (a missing, emptied or foreign database)."""


class ProjectError(ExemplarError):
    """A project is missing, locked by another process, or in a state that forbids the action."""


class DamagedProjectError(ProjectError):
    """The project's database is missing, emptied or corrupt while its data files remain.

    The message names the file and how to recover (restore a backup, or ``.recover``).
    """


class UsageError(ExemplarError, ValueError):
    """A command's options do not go together, or an option's value is malformed."""


class QueueError(ExemplarError):
    """A labeling-queue operation cannot be done: unknown entry, entry not leased, already done."""


class LeaseLostError(QueueError):
    """The caller's lease on a queue entry expired and another annotator has taken the item."""


class ReviewError(ExemplarError, ValueError):
    """A reviewer's decision does not fit the item (a disputed item needs a class named)."""


class NothingToReviewError(ReviewError, LookupError):
    """The item does not exist, or it has no label (or dispute) to review."""
