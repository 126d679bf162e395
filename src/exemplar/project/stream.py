"""A project's stream: submit arriving items, decide at once, list the decisions.

The service the HTTP endpoint (``POST /api/v1/stream/items``), the CLI
(``exemplar stream feed``) and the Python API share. Each arriving item is stored like an
imported one (content hash, features: :mod:`exemplar.project.importing`), then the
project's :class:`~exemplar.loop.stream.ProjectStream` decides whether to ask for its
label, logs the decision and queues the item (or labels it from its ground truth when the
oracle is simulated). A duplicate (an item stored and decided before, or repeated in one
submission) is not decided again: its earlier decision comes back, marked
``duplicate``. Only a project with ``[stream] enabled = true`` takes stream items; its
background learner never queues pool items (the stream alone decides what is asked). The
labeling app serves the stream's queue as a never-ending feed: a skipped stream item
comes back after ``[stream] skip_requeue_after`` other items (:func:`requeue_after`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from exemplar.errors import ConfigError, DatasetError
from exemplar.loop.stream import STREAM_STRATEGY, ProjectStream, StreamedItem
from exemplar.project.importing import ImportReport, text_featurizer
from exemplar.sources.base import Chunk, SourceOptions, feature_records, text_records
from exemplar.sources.registry import open_source
from exemplar.sources.writer import BatchWriter, LabelsAs, check_dim
from exemplar.store.schema import Item, QueueEntry, StreamDecision

if TYPE_CHECKING:
    from exemplar.project.project import Project

__all__ = [
    "StreamFeedReport",
    "StreamItemIn",
    "feed_file",
    "project_stream",
    "requeue_after",
    "stream_decisions",
    "stream_iter",
    "submit_items",
]


@dataclass(frozen=True)
class StreamItemIn:
    """One arriving item: a feature row or a text (exactly one), with an optional URI and
    an optional hidden ground truth (read only by the simulated oracle)."""

    features: Sequence[float] | None = None
    text: str | None = None
    uri: str | None = None
    ground_truth: str | None = None


@dataclass
class StreamFeedReport:
    """What :func:`feed_file` did."""

    decisions: list[StreamedItem] = field(default_factory=list)
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def asked(self) -> int:
        """Items whose label was asked for."""
        return sum(d.asked for d in self.decisions)


_streams: weakref.WeakKeyDictionary[Any, ProjectStream] = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def project_stream(project: Project) -> tuple[ProjectStream, threading.Lock]:
    """The project's stream (one per open project, kept while the project is open) and the
    lock its decisions are made under (requests of one server decide one at a time)."""
    with _guard:
        stream = _streams.get(project)
        if stream is None:
            stream = ProjectStream(project)
            _streams[project] = stream
            _locks[project] = threading.Lock()
        return stream, _locks[project]


def submit_items(project: Project, items: Sequence[StreamItemIn]) -> list[StreamedItem]:
    """Store ``items`` (arrival order) and decide for each at once.

    Raises
    ------
    DatasetError
        An item has neither or both of features and text, mixes kinds with the project's
        data, or holds a non-finite value (nothing is stored).
    ProjectError
        The feature dimension differs from the project's.
    """
    check_stream_enabled(project)
    if not items:
        return []
    kinds = set()
    classes = set(project.classes)
    for i, item in enumerate(items):
        if (item.features is None) == (item.text is None):
            raise DatasetError(f"stream item {i}: give exactly one of features and text")
        if item.ground_truth is not None and item.ground_truth not in classes:
            raise DatasetError(
                f"stream item {i}: ground truth {item.ground_truth!r} is not one of the "
                f"project's classes ({', '.join(project.classes)})"
            )
        kinds.add("text" if item.text is not None else "features")
    if len(kinds) > 1:
        raise DatasetError("one submission holds either feature rows or texts, not both")
    report = ImportReport(labels_as="ground_truth")
    where = [f"stream#{i}" for i in range(len(items))]
    uris = [item.uri or f"stream:{i}" for i, item in enumerate(items)]
    truths = [item.ground_truth for item in items]
    if "text" in kinds:
        records, X = text_records(
            [item.text for item in items], where, uris, truths, text_featurizer(project), report
        )
    else:
        try:
            X = np.asarray([list(item.features or []) for item in items], dtype=np.float64)
        except ValueError as exc:
            raise DatasetError(f"stream items: feature rows of different lengths ({exc})") from None
        if X.ndim != 2 or X.shape[1] == 0:
            raise DatasetError("stream items: each feature row needs at least one value")
        records, X = feature_records(X, where, uris, truths, None, report)
    if report.skipped:
        at, why = report.skipped[0]
        raise DatasetError(f"{at}: {why}")
    check_dim(project.feature_dim, int(X.shape[1]), "stream items")
    chunk = Chunk(records, X, len(items))
    return _store_and_decide(project, [chunk], int(X.shape[1]), "ground_truth")[0]


def stream_iter(
    project: Project, items: Iterable[StreamItemIn], *, batch: int = 1
) -> Iterator[StreamedItem]:
    """Decide for items as a Python iterator yields them (``batch`` at a time, default one:
    each item is stored and decided before the next is read).

    Yields
    ------
    StreamedItem
        Each item's decision, in arrival order.
    """
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    group: list[StreamItemIn] = []
    for item in items:
        group.append(item)
        if len(group) >= batch:
            yield from submit_items(project, group)
            group = []
    if group:
        yield from submit_items(project, group)


def feed_file(
    project: Project,
    path: Path | str,
    *,
    label_column: str | int | None = None,
    text_column: str | None = None,
    labels_as: LabelsAs = "ground_truth",
    rows_per_transaction: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> StreamFeedReport:
    """Stream the rows (or images, or texts) of a file into the project, in file order.

    Any input ``exemplar import`` reads for classification works (CSV, Parquet, ``.npy``,
    ``.npz``, a folder of images); labels found in it become hidden ground truth by default
    (``labels_as="ground_truth"``: what a simulated oracle answers when an item is asked
    for). Items are stored and decided ``rows_per_transaction`` at a time.
    """
    check_stream_enabled(project)
    if project.config.project.objects:
        raise ConfigError("stream mode labels classes; this project's task has objects")
    data = project.config.data
    report = ImportReport(labels_as=labels_as)
    options = SourceOptions(
        label_column=label_column,
        text_column=text_column,
        image_size=data.image_size,
        max_image_pixels=data.max_image_pixels,
        text_featurizer=lambda: text_featurizer(project),
        media_dir=project.root / "media",
    )
    source = open_source(Path(path), options, report)
    check_dim(project.feature_dim, source.dim, source.what)
    out = StreamFeedReport()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for chunk in source.chunks(rows_per_transaction, pool):
            decided, duplicates = _store_and_decide(
                project, [chunk], source.dim, labels_as, pool, report
            )
            out.decisions.extend(decided)
            out.duplicates += duplicates
            if on_progress is not None:
                on_progress(len(decided))
    out.skipped = list(report.skipped)
    return out


def stream_decisions(
    project: Project, *, after: int = 0, limit: int = 100, asked: bool | None = None
) -> list[dict[str, Any]]:
    """The logged decisions with ``seq > after``, oldest first (at most ``limit``)."""
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    query = (
        select(StreamDecision, Item.uri)
        .join(Item, Item.id == StreamDecision.item_id)
        .where(StreamDecision.seq > after)
        .order_by(StreamDecision.seq)
        .limit(limit)
    )
    if asked is not None:
        query = query.where(StreamDecision.asked.is_(asked))
    with project.db.read() as s:
        return [
            {
                "seq": d.seq,
                "item_id": d.item_id,
                "uri": uri,
                "manager": d.manager,
                "utility": d.utility,
                "threshold": d.threshold,
                "asked": d.asked,
                "budget_state": d.budget_state,
                "model_version": d.model_version,
                "created_at": d.created_at.isoformat(),
            }
            for d, uri in s.execute(query)
        ]


def stream_summary(project: Project) -> dict[str, Any]:
    """Arrivals, asks and the spent share of the project's stream so far."""
    with project.db.read() as s:
        arrivals = int(s.scalar(select(func.count()).select_from(StreamDecision)) or 0)
        asked = int(
            s.scalar(select(func.count()).select_from(StreamDecision).where(StreamDecision.asked))
            or 0
        )
    cfg = project.config.stream
    return {
        "manager": cfg.manager,
        "budget": cfg.budget,
        "arrivals": arrivals,
        "asked": asked,
        "spent": asked / arrivals if arrivals else 0.0,
    }


def requeue_after(project: Project, entry_id: int) -> int | None:
    """``[stream] skip_requeue_after`` for a stream entry (the feed), else None."""
    if not project.config.stream.enabled:  # no feed: a plain skip, with no extra read
        return None
    with project.db.read() as s:
        strategy = s.scalar(select(QueueEntry.strategy).where(QueueEntry.id == entry_id))
    if strategy != STREAM_STRATEGY:
        return None
    return project.config.stream.skip_requeue_after


def is_stream_project(project: Project) -> bool:
    """Whether the project is a stream project (``[stream] enabled = true``): its label page
    is then a feed, and its background learner never queues pool items."""
    return bool(project.config.stream.enabled)


def check_stream_enabled(project: Project) -> None:
    """Stream items go only to a stream project (raises :class:`ConfigError` otherwise)."""
    if not is_stream_project(project):
        raise ConfigError(
            "this project is not a stream project: set enabled = true in the [stream] "
            "section of exemplar.toml (its learner then queues no pool items)"
        )


def _earlier_decisions(s: Any, item_ids: list[int]) -> dict[int, StreamedItem]:
    """The newest logged decision of each of ``item_ids`` that has one (as duplicates)."""
    if not item_ids:
        return {}
    rows = s.scalars(
        select(StreamDecision)
        .where(StreamDecision.item_id.in_(item_ids))
        .order_by(StreamDecision.seq)
    )
    return {row.item_id: StreamedItem.from_row(row, duplicate=True) for row in rows}


def _store_and_decide(
    project: Project,
    chunks: Iterable[Chunk],
    dim: int,
    labels_as: LabelsAs,
    pool: ThreadPoolExecutor | None = None,
    report: ImportReport | None = None,
) -> tuple[list[StreamedItem], int]:
    """Write the chunks' items (dedupe by content hash), then decide for each new one, in
    order; a duplicate gets its earlier decision back (``duplicate=True``), undecided again.
    Rows the writer skips (an unknown class) go to ``report``."""
    stream, lock = project_stream(project)
    decided: list[StreamedItem] = []
    duplicates = 0
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=1)
    try:
        for chunk in chunks:
            writer = BatchWriter(
                project.db,
                project.arrays,
                project.classes,
                dim,
                labels_as,
                report or ImportReport(labels_as=labels_as),
            )
            with lock:
                written = writer.write(chunk, pool)
                duplicates += written.duplicates
                uids = [r.uid for r in chunk.records]
                with project.db.read() as s:
                    ids = dict(s.execute(select(Item.uid, Item.id).where(Item.uid.in_(uids))).all())
                    earlier = _earlier_decisions(s, list(ids.values()))
                order = [ids[u] for u in uids if u in ids]
                new = list(dict.fromkeys(i for i in order if i not in earlier))
                fresh = {d.item_id: d for d in stream.process(new)}
                seen: set[int] = set()
                for item_id in order:
                    if item_id in earlier:
                        decided.append(earlier[item_id])
                    elif item_id in seen:  # repeated within this chunk
                        decided.append(replace(fresh[item_id], duplicate=True))
                    else:
                        decided.append(fresh[item_id])
                    seen.add(item_id)
    finally:
        if own_pool:
            pool.shutdown()
    return decided, duplicates
