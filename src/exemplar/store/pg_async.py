"""The labeling queue's hot path on psycopg's async API, for an asyncio server on PostgreSQL.

:func:`exemplar.store.queue.lease` and :func:`~exemplar.store.queue.submit` block their
thread while PostgreSQL answers, so an asyncio server has to run them in worker threads:
each call then pays a hand-off to a thread and back, and the threads fight the event loop
for the interpreter lock. :class:`AsyncQueue` runs the same statements on an
:class:`psycopg_pool.AsyncConnectionPool` instead, so the event loop awaits the network
itself. The statements, their parameters and their results are those of
:mod:`exemplar.store.queue` (one home for the queue's SQL), with the same invariants:

* a lease is one round trip (the annotator's lock with the expiry, then the claim, in one
  pipeline: one implicit transaction); it commits without waiting for the WAL flush, as in
  :mod:`exemplar.store.queue` (a lease lost in a crash is served again);
* a submit is one statement, committed durably (``synchronous_commit`` as the server has
  it, ``on`` by default): a label acknowledged to a client survives a crash. When that
  statement writes nothing (a retried submit, an overlap vote, or an error to report),
  :func:`~exemplar.store.queue.submit_in_transaction` handles the case in a worker thread.

Connections run in autocommit mode; psycopg prepares each statement on the server after
``prepare_threshold`` executions on a connection (:data:`PREPARE_THRESHOLD`), so the hot
statements are parsed and planned once per pooled connection.

One :class:`AsyncQueue` belongs to one event loop (open it in that loop, close it before the
loop ends).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Self

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from exemplar.errors import StoreError
from exemplar.store.db import PING_AFTER_IDLE_S, Database
from exemplar.store.labels import validate_class
from exemplar.store.queue import (
    PG_LEASE,
    PG_LEASE_PREFETCH,
    PG_SUBMIT,
    LeasedItem,
    check_label_seconds,
    lease_params,
    leased_item,
    pg_submit_params,
    submit_in_transaction,
    submitted_label,
)
from exemplar.store.schema import Label, LabelSource, LabelStatus

__all__ = ["PREPARE_THRESHOLD", "AsyncQueue"]

#: Connections an :class:`AsyncQueue` keeps open, and at most opens. A lease or a submit
#: holds its connection for one round trip, so a few serve a web worker's ~25 requests
#: in flight; more would only add PostgreSQL backends competing for the same cores.
POOL_MIN = 4
POOL_MAX = 8
#: Executions of a statement on one connection before psycopg prepares it on the server
#: (psycopg's default is 5; the pool's connections run only the hot statements).
PREPARE_THRESHOLD = 1
#: Seconds a request waits for a free pooled connection before failing.
POOL_TIMEOUT_S = 30.0


class AsyncQueue:
    """Lease and submit on an async connection pool to ``db`` (PostgreSQL only).

    Use it as ``async with AsyncQueue(db) as queue:``, or call :meth:`open` and
    :meth:`close`. Errors of the driver or the pool are raised as
    :class:`~exemplar.errors.StoreError`; those of the queue (a lost lease, an unknown
    class, ...) as :func:`exemplar.store.queue.submit` raises them.
    """

    def __init__(self, db: Database, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        if db.dialect != "postgresql":
            raise StoreError(f"the async queue needs PostgreSQL, not {db.dialect}")
        self.db = db
        _, params = db.engine.dialect.create_connect_args(db.engine.url)
        params.pop("context", None)  # SQLAlchemy's type adapters: the hot path binds plain values
        self._last_used: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            kwargs={**params, "autocommit": True, "prepare_threshold": PREPARE_THRESHOLD},
            min_size=min_size,
            max_size=max_size,
            open=False,
            check=self._check,
            timeout=POOL_TIMEOUT_S,
            name="exemplar-queue",
        )

    async def open(self) -> None:
        """Start the pool (its connections are opened in the background)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._pool.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def lease(
        self,
        annotator: str,
        *,
        lease_seconds: float,
        now: datetime | None = None,
        besides: int | None = None,
    ) -> LeasedItem | None:
        """:func:`exemplar.store.queue.lease` on the event loop (one round trip)."""
        dialect = self.db.engine.dialect
        params = lease_params(dialect, annotator, lease_seconds, now, besides)
        statements = PG_LEASE_PREFETCH if besides is not None else PG_LEASE
        async with self._connection() as conn:
            async with conn.pipeline():  # one round trip, one implicit transaction
                await conn.execute(statements[0], params)
                cur = await conn.execute(statements[1], params)
            row = await cur.fetchone()
        return None if row is None else leased_item(dialect, row)

    async def submit(
        self,
        entry_id: int,
        annotator: str,
        label: str | None,
        *,
        classes: Sequence[str],
        idempotency_key: str | None = None,
        status: LabelStatus | str = LabelStatus.VERIFIED,
        source: LabelSource | str = LabelSource.HUMAN,
        now: datetime | None = None,
        seconds: float | None = None,
    ) -> Label:
        """:func:`exemplar.store.queue.submit` on the event loop (one durable statement).

        The rare cases the statement does not write (a retry, an overlap vote, an error)
        run in a worker thread, through :func:`~exemplar.store.queue.submit_in_transaction`.
        """
        check_label_seconds(seconds)
        if label is not None:
            validate_class(label, classes)
            params = pg_submit_params(
                entry_id, annotator, label, idempotency_key, status, source, now, seconds
            )
            async with self._connection() as conn:
                cur = await conn.execute(PG_SUBMIT, params)
                row = await cur.fetchone()
            if row is not None:
                return submitted_label(row, params)
        return await asyncio.to_thread(
            submit_in_transaction,
            self.db,
            entry_id,
            annotator,
            label,
            classes=classes,
            idempotency_key=idempotency_key,
            status=status,
            source=source,
            now=now,
            seconds=seconds,
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection (the pool rolls back a transaction a failed block left open)."""
        try:
            async with self._pool.connection() as conn:
                try:
                    yield conn
                finally:
                    self._last_used[conn] = time.monotonic()
        except PoolTimeout as exc:
            raise StoreError(f"no database connection free after {POOL_TIMEOUT_S} s") from exc
        except psycopg.Error as exc:
            raise StoreError(f"queue database error: {exc}") from exc

    async def _check(self, conn: AsyncConnection[Any]) -> None:
        """Test a connection idle for over ``PING_AFTER_IDLE_S`` (the server may have closed
        it); a recently used one is handed out as is (a ping is a round trip per request)."""
        if time.monotonic() - self._last_used.get(conn, 0.0) >= PING_AFTER_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)
