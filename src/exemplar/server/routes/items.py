"""Item and project routes besides the hot path: skip, undo, media, status and retrain."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse

from exemplar.errors import QueueError, StoreError
from exemplar.server.deps import (
    API_PREFIX,
    Admin,
    Labeler,
    PathId,
    State,
    client_ip,
    queue_http_error,
)
from exemplar.server.items import registered_image
from exemplar.server.routes.viewer import region_image
from exemplar.server.schemas import UndoOut
from exemplar.server.security import parse_db_id

__all__ = ["router"]

log = logging.getLogger("exemplar.server")


def router() -> APIRouter:
    """The labeling routes besides next/submit (tag ``labeling``) and project routes."""
    api = APIRouter(prefix=API_PREFIX)

    @api.post("/items/{entry_id}/skip", tags=["labeling"])
    def skip_item(entry_id: PathId, user: Labeler, state: State) -> dict[str, Any]:
        """Put a leased entry back; it is served again after every pending entry."""
        try:
            state.project.skip_item(entry_id, user.name)
        except (QueueError, StoreError) as exc:
            raise queue_http_error(exc) from exc
        return {"entry_id": entry_id, "status": "skipped"}

    @api.post("/labels/undo", response_model=UndoOut, tags=["labeling"])
    def undo(user: Labeler, state: State) -> UndoOut:
        """Take back the caller's newest label still in force; its item is leased back to them.

        History stays append-only: an undo appends a ``rejected`` row without a class.
        """
        try:
            done = state.project.undo_last_label(user.name)
        except (QueueError, StoreError) as exc:
            raise queue_http_error(exc) from exc
        if done is None:
            raise HTTPException(409, "nothing to undo (no label of yours in the open cycle)")
        return UndoOut(
            entry_id=done.entry_id,
            item_id=done.item_id,
            undone_label_id=done.undone_label_id,
            marker_label_id=done.marker_label_id,
        )

    @api.get("/status", tags=["project"])
    def status(_user: Labeler, state: State) -> dict[str, Any]:
        """Cycle, state, queue, label counts per class and metric history."""
        result: dict[str, Any] = state.project.status()
        result.pop("root", None)  # no server paths to clients
        return result

    @api.post("/retrain", status_code=202, tags=["project"])
    def retrain(request: Request, _admin: Admin) -> dict[str, Any]:
        """Wake the background learner to advance the loop now (admins only)."""
        learner = getattr(request.app.state, "learner", None)
        if learner is None:
            raise HTTPException(409, "background learning is off for this server")
        learner.request_retrain()
        return {"status": "requested", "worker": learner.state()}

    @api.get("/media/{item_ref:path}", tags=["labeling"])
    def media(item_ref: str, request: Request, _user: Labeler, state: State) -> Response:
        """The image of a registered image item (a slide's region: rendered from the slide,
        as PNG); anything else is 404."""
        item_id = parse_db_id(item_ref)
        if item_id is None:
            log.warning(
                "refused media path %r from %s (not an item id)", item_ref, client_ip(request)
            )
            raise HTTPException(404, "no such media")
        path = registered_image(state.project, item_id)
        if path is None:
            png = region_image(state.project, item_id)
            if png is None:
                raise HTTPException(404, "no such media")
            return Response(
                png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
            )
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    return api
