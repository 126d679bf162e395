"""Stream routes: ``POST /api/v1/stream/items`` (items arrive, decided at once) and
``GET /api/v1/stream/decisions`` (the decision log).

A thin layer over :mod:`exemplar.project.stream`, the service ``exemplar stream feed``
uses too. Posting items stores them (content-hash dedupe, like an import) and answers,
per item and in order, whether its label is asked for, with the utility, the threshold
and the budget state the decision was made on. Asked items enter the labeling feed.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from exemplar.errors import ConfigError, DatasetError, ProjectError, StoreError
from exemplar.server.deps import API_PREFIX, MAX_DB_ID, Admin, Labeler, State

__all__ = ["StreamItemBody", "StreamItemsIn", "StreamItemsOut", "router"]

#: Items one request may carry.
MAX_ITEMS = 1000


class StreamItemBody(BaseModel):
    """One arriving item: a feature row or a text (exactly one)."""

    features: list[float] | None = Field(default=None, min_length=1, max_length=1_000_000)
    text: str | None = Field(default=None, min_length=1, max_length=100_000)
    uri: str | None = Field(default=None, max_length=2048)
    #: Hidden ground truth, read only by a simulated oracle (``[oracle] kind = "simulated"``).
    ground_truth: str | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _one_kind(self) -> StreamItemBody:
        if (self.features is None) == (self.text is None):
            raise ValueError("give exactly one of features and text")
        if self.features is not None and not all(math.isfinite(v) for v in self.features):
            raise ValueError("features must be finite numbers")
        return self


class StreamItemsIn(BaseModel):
    """One item, or several in arrival order."""

    items: list[StreamItemBody] = Field(min_length=1, max_length=MAX_ITEMS)


class StreamDecisionOut(BaseModel):
    """The decision for one posted item."""

    seq: int
    item_id: int
    asked: bool
    utility: float
    threshold: float | None
    budget_state: dict[str, Any]
    model_version: str | None
    #: The item was stored and decided before: this is that decision (nothing was spent).
    duplicate: bool = False


class StreamItemsOut(BaseModel):
    """The decisions, in the order the items were posted."""

    decisions: list[StreamDecisionOut]


def router() -> APIRouter:
    """The stream routes (tag ``stream``)."""
    api = APIRouter(prefix=API_PREFIX, tags=["stream"])

    @api.post("/stream/items", response_model=StreamItemsOut)
    def post_items(body: StreamItemsIn, user: Admin, state: State) -> StreamItemsOut:
        """Items arrive: store each and decide at once whether to ask for its label.

        Asked items join the labeling feed (or are labeled from their ground truth by a
        simulated oracle). Admins only: posting adds items to the project. 422: bad
        items (an unknown ground-truth class, a wrong dimension) or not a stream project;
        503: the database refused the decisions (nothing was decided; retry).
        """
        from exemplar.project.stream import StreamItemIn, submit_items

        items = [
            StreamItemIn(
                features=item.features, text=item.text, uri=item.uri, ground_truth=item.ground_truth
            )
            for item in body.items
        ]
        try:
            decided = submit_items(state.project, items)
        except (DatasetError, ProjectError, ConfigError) as exc:
            raise HTTPException(422, str(exc)) from exc
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from exc
        return StreamItemsOut(
            decisions=[
                StreamDecisionOut(
                    seq=d.seq,
                    item_id=d.item_id,
                    asked=d.asked,
                    utility=d.utility,
                    threshold=d.threshold,
                    budget_state=d.budget_state,
                    model_version=d.model_version,
                    duplicate=d.duplicate,
                )
                for d in decided
            ]
        )

    @api.get("/stream/decisions")
    def get_decisions(
        user: Labeler,
        state: State,
        after: int = Query(default=0, ge=0, le=MAX_DB_ID),
        limit: int = Query(default=100, ge=1, le=10_000),
        asked: bool | None = None,
    ) -> dict[str, Any]:
        """The decision log, oldest first: ``seq > after``, at most ``limit`` rows, and the
        stream's totals so far."""
        from exemplar.project.stream import stream_decisions, stream_summary

        rows = stream_decisions(state.project, after=after, limit=limit, asked=asked)
        return {"summary": stream_summary(state.project), "decisions": rows}

    return api
