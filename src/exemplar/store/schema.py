"""The project database (DESIGN.md §2, §4): items, label history, cycles, queue, model versions.

Labels are append-only: the current label of an item is its newest row. Every table is
portable between SQLite and PostgreSQL (SQLAlchemy 2 declarative models); the schema is
created and upgraded by Alembic migrations in ``exemplar/store/migrations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "OPEN_QUEUE_STATUSES",
    "Annotation",
    "AnnotationStatus",
    "Base",
    "CandidateDecision",
    "CurationCandidate",
    "CurationOperation",
    "CurationStatus",
    "Cycle",
    "CycleState",
    "Item",
    "Label",
    "LabelSource",
    "LabelStatus",
    "Media",
    "MediaKind",
    "Meta",
    "ModelVersion",
    "QueueEntry",
    "QueueStatus",
    "Split",
    "StreamDecision",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware current time (stored as UTC)."""
    return datetime.now(UTC)


class Split(StrEnum):
    """Which part of the data an item belongs to."""

    POOL = "pool"
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class LabelSource(StrEnum):
    """Who made a label."""

    HUMAN = "human"
    MODEL = "model"
    IMPORT = "import"
    SIMULATED = "simulated"


class LabelStatus(StrEnum):
    """Review state of a label.

    ``disputed`` marks an item whose overlap annotators disagree (a row with no class,
    see ``exemplar.store.overlap``); it waits for a reviewer. ``pruned`` takes a labeled
    item out of the training set after a reviewer confirmed it adds nothing (curation); it
    keeps the class, and restoring the item appends its label again.
    """

    PROPOSED = "proposed"
    VERIFIED = "verified"
    REJECTED = "rejected"
    DISPUTED = "disputed"
    PRUNED = "pruned"


class AnnotationStatus(StrEnum):
    """Review state of one object (box, polygon or mask) of an image item.

    ``hard_negative`` marks a region a person confirmed holds no object of any class (a
    model's false positive worth training against); ``deleted`` hides an object from every
    current view; ``ground_truth`` rows are hidden truth for simulation (like
    ``items.ground_truth``), never training data.
    """

    PROPOSED = "proposed"
    VERIFIED = "verified"
    REJECTED = "rejected"
    HARD_NEGATIVE = "hard_negative"
    DELETED = "deleted"
    GROUND_TRUTH = "ground_truth"


class QueueStatus(StrEnum):
    """Lifecycle of a queued item."""

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    SKIPPED = "skipped"


#: Queue statuses of entries still waiting for a label (skipped ones come back later).
OPEN_QUEUE_STATUSES = (QueueStatus.PENDING, QueueStatus.LEASED, QueueStatus.SKIPPED)


class CycleState(StrEnum):
    """The recorded steps of one cycle, in order (DESIGN.md §1)."""

    TRAIN = "train"
    SELECT_MODEL = "select_model"
    SCORE = "score"
    CURATE = "curate"
    SELECT = "select"
    LABEL = "label"
    COMPARE = "compare"
    STOP_CHECK = "stop_check"
    DONE = "done"
    STOPPED = "stopped"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Meta(Base):
    """Key/value facts about the project (feature dimension, creation time, ...)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MediaKind(StrEnum):
    """What a media row is: a whole-slide image (its items are regions) or a video (its
    items are frames)."""

    SLIDE = "slide"
    VIDEO = "video"


class Media(Base):
    """A large file whose parts are items: a slide's regions or a video's frames.

    ``width`` and ``height`` are the slide's level-0 pixels or the video's frame size;
    ``properties`` holds what the file says of itself (slides: ``mpp_x``, ``mpp_y``,
    ``objective_power``, ``vendor``, ``levels``; videos: ``fps``, ``n_frames``,
    ``duration``, ``codec``, ``frame_step``).
    """

    __tablename__ = "media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)  # content hash
    kind: Mapped[str] = mapped_column(String(16))
    uri: Mapped[str] = mapped_column(Text)
    file_id: Mapped[str | None] = mapped_column(String(64), default=None)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Item(Base):
    """One thing to label. ``row`` indexes the project's feature array."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)  # content hash
    row: Mapped[int] = mapped_column(Integer, unique=True)
    uri: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # image | text | features
    text: Mapped[str | None] = mapped_column(Text, default=None)
    split: Mapped[str] = mapped_column(String(16), default=Split.POOL, index=True)
    ground_truth: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Image items: ``<st_dev>:<st_ino>:<st_size>:<st_mtime_ns>`` of the real file at import,
    #: so the server can refuse a file replaced since (None: not recorded).
    file_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Image items: the size in pixels (None: not recorded); object boxes are checked
    #: against it.
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    #: A slide's region or a video's frame: the media row it is part of (None otherwise).
    media_id: Mapped[int | None] = mapped_column(ForeignKey("media.id"), default=None, index=True)
    #: A region: its top-left corner in the slide's level-0 pixels, and the slide's level-0
    #: pixels per item pixel (the item is the region at the magnification it was cut at).
    origin_x: Mapped[int | None] = mapped_column(Integer, default=None)
    origin_y: Mapped[int | None] = mapped_column(Integer, default=None)
    scale: Mapped[float | None] = mapped_column(Float, default=None)
    #: A frame: its index in the video.
    frame: Mapped[int | None] = mapped_column(Integer, default=None)


class Label(Base):
    """One entry of an item's append-only label history, with provenance."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=LabelStatus.VERIFIED)
    source: Mapped[str] = mapped_column(String(16))
    annotator: Mapped[str | None] = mapped_column(String(255), default=None)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"), default=None)
    strategy: Mapped[str | None] = mapped_column(String(64), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: A model's proposal (``source`` model): which checkpoint proposed it, how sure it was.
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    #: A verified label correcting a confident proposal: a confident error to learn.
    hard_negative: Mapped[bool | None] = mapped_column(default=None)
    #: Seconds a person spent on this label (the labeling app's timer, else lease to answer).
    seconds: Mapped[float | None] = mapped_column(Float, default=None)

    __table_args__ = (Index("ix_labels_item_id_id", "item_id", "id"),)


class Annotation(Base):
    """One entry of an object's append-only history (detection and segmentation).

    ``object_id`` names the object across its history: it is the ``id`` of the object's
    first row. A change (a moved box, a new class, a verdict) is a new row with the same
    ``object_id``; the object's current state is its newest row. ``geometry`` is ``box``
    (``x0, y0, x1, y1`` in pixels), ``polygon`` (``shape = {"polygons": [[x, y, ...]]}``)
    or ``mask`` (``shape = {"rle": {"size": [h, w], "counts": str}}``, COCO run-length
    encoding); polygons and masks keep their bounding box in ``x0..y1``.
    """

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    label: Mapped[str] = mapped_column(String(255))
    geometry: Mapped[str] = mapped_column(String(16), default="box")
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    shape: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    annotator: Mapped[str | None] = mapped_column(String(255), default=None)
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(160), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Video: the objects of one track (one thing followed across frames) share this id.
    track_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), default=None, index=True
    )
    #: Video: True for a box a person placed on a keyframe (False: interpolated or tracked).
    keyframe: Mapped[bool | None] = mapped_column(default=None)


class ModelVersion(Base):
    """A trained checkpoint. Its arrays (scores, embeddings) are named by ``version``."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"), default=None)
    recipe: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    path: Mapped[str] = mapped_column(Text)
    n_labels: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    selected: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Cycle(Base):
    """One turn of the loop, as a recorded state machine."""

    __tablename__ = "cycles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    state: Mapped[str] = mapped_column(String(16), default=CycleState.TRAIN)
    seed: Mapped[int] = mapped_column(BigInteger)
    strategy: Mapped[str] = mapped_column(String(64))
    # Not a foreign key: cycles and model versions refer to each other.
    model_version_id: Mapped[int | None] = mapped_column(Integer, default=None)
    batch_size: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decision: Mapped[str | None] = mapped_column(String(32), default=None)
    stop_reason: Mapped[str | None] = mapped_column(Text, default=None)
    stopping_state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QueueEntry(Base):
    """One slot of an item waiting for a label, leased to at most one annotator at a time.

    An item queued with overlap N has N entries in its cycle (``slot`` 0..N-1), and one
    annotator never holds or labels two slots of the same item.
    """

    __tablename__ = "queue"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"), default=None)
    slot: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    strategy: Mapped[str | None] = mapped_column(String(64), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=QueueStatus.PENDING)
    annotator: Mapped[str | None] = mapped_column(String(255), default=None)
    lease_expires: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("item_id", "cycle_id", "slot", name="uq_queue_item_cycle_slot"),
        Index("ix_queue_status_rank", "status", "rank", "id"),
    )


class StreamDecision(Base):
    """Whether exemplar asked for the label of one item that arrived in stream mode.

    One row per arrival, in stream order (``seq``), written when the decision is made:
    the budget manager, the item's utility, the threshold it was held against, the
    decision and the manager's budget state after it (what a resumed stream restores).
    """

    __tablename__ = "stream_decisions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), unique=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    manager: Mapped[str] = mapped_column(String(64))
    utility: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float, default=None)
    asked: Mapped[bool] = mapped_column()
    budget_state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_version: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CurationStatus(StrEnum):
    """Lifecycle of a recorded curation operation."""

    PROPOSED = "proposed"
    APPLIED = "applied"
    DISMISSED = "dismissed"
    UNDONE = "undone"


class CandidateDecision(StrEnum):
    """A reviewer's decision on one candidate of a curation operation."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class CurationOperation(Base):
    """One recorded curation operation (DESIGN.md §4, issue #12).

    ``kind`` is ``prune`` (labeled items proposed for removal), ``label_errors`` (probable
    label errors to review), ``split`` or ``merge`` (classes). An operation is proposed,
    then applied (its accepted candidates written as new label rows), dismissed, or undone
    (the rows it replaced appended again); nothing is overwritten.
    """

    __tablename__ = "curation_operations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=CurationStatus.PROPOSED)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycles.id"), default=None)
    summary: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str | None] = mapped_column(String(255), default=None)
    decided_by: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CurationCandidate(Base):
    """One item (or object) a curation operation concerns, and what became of it.

    ``written`` lists the ids of the label (or annotation) rows applying it wrote and of the
    rows they replaced, which undoing the operation appends again.
    """

    __tablename__ = "curation_candidates"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("curation_operations.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    object_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), default=None
    )
    reason: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float, default=None)
    current_label: Mapped[str | None] = mapped_column(String(255), default=None)
    suggested_label: Mapped[str | None] = mapped_column(String(255), default=None)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    decision: Mapped[str] = mapped_column(String(16), default=CandidateDecision.PENDING)
    decided_by: Mapped[str | None] = mapped_column(String(255), default=None)
    written: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
