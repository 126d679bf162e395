"""The labeling hot path: ``GET /api/v1/items/next`` and ``POST /api/v1/labels``.

Every label costs an annotator these two requests, so they are plain Starlette routes: they
parse and validate with the same pydantic models and authenticate with the same function
as the rest of the API (:func:`exemplar.server.deps.authenticate`), but skip FastAPI's
per-request dependency solving and response validation, which cost more than the lease or
the submit itself (``python -m bench.server_load``; docs/benchmarks.md). Their store work
runs through :meth:`~exemplar.server.deps.ServerState.run_store`, or on PostgreSQL is
awaited on the event loop (:class:`~exemplar.store.pg_async.AsyncQueue`, the state's
``queue`` while the app runs). Errors are the API's:
``HTTPException`` and ``RequestValidationError`` (422, FastAPI's shape). Their OpenAPI
operations are written here, from the same models (:func:`document`).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.routing import BaseRoute, Route

from exemplar.errors import QueueError, StoreError
from exemplar.project import Project
from exemplar.server.deps import ALL_ROLES, authenticate, queue_http_error, server_state
from exemplar.server.items import entry_proposal, item_payload
from exemplar.server.schemas import LabelIn, LabelOut, NextQuery
from exemplar.store.accounts import User
from exemplar.store.labels import UnknownClassError
from exemplar.store.queue import LeasedItem, lease, submit
from exemplar.store.schema import Label, LabelSource, LabelStatus

__all__ = ["LabelIn", "LabelOut", "document", "routes"]


def _validated(model: type[BaseModel], where: str, parse: Any) -> Any:
    """``parse()`` (a pydantic validation of ``model``), its errors as FastAPI's 422."""
    try:
        return parse()
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            error = {**error, "loc": (where, *error["loc"])}
            if isinstance(error.get("input"), bytes):  # a body that is not UTF-8 text
                error["input"] = error["input"].decode("utf-8", "replace")
            errors.append(error)
        raise RequestValidationError(errors) from None


async def next_item(request: Request) -> Response:
    """Lease the next item for the caller (the same one again while its lease lives).

    With ``after=<entry_id>`` (prefetch), return the caller's other live lease, or lease
    one more item; a caller holds at most two items this way. 204 when the queue is empty.
    """
    user = await authenticate(request, ALL_ROLES)
    query = _validated(
        NextQuery, "query", lambda: NextQuery.model_validate(dict(request.query_params))
    )
    state = server_state(request)
    try:
        if state.queue is not None:  # PostgreSQL: awaited here, no thread hand-off
            leased = await state.queue.lease(
                user.name,
                lease_seconds=state.project.config.oracle.lease_seconds,
                besides=query.after,
            )
            payload = leased_payload(state.project, leased, query.after)
        else:
            payload = await state.run_store(lambda: next_payload(state.project, user, query.after))
    except (QueueError, StoreError) as exc:
        raise queue_http_error(exc) from exc
    if payload is None:
        return Response(status_code=204)
    return JSONResponse(payload)


async def post_label(request: Request) -> Response:
    """Label a leased entry; a retry with the same idempotency key returns the same label."""
    user = await authenticate(request, ALL_ROLES)
    raw = await request.body()
    body: LabelIn = _validated(LabelIn, "body", lambda: LabelIn.model_validate_json(raw))
    state = server_state(request)
    try:
        if state.queue is not None and body.action == "label":  # PostgreSQL, no proposal
            written = await state.queue.submit(
                body.entry_id,
                user.name,
                body.label,
                classes=state.project.classes,
                idempotency_key=_key(user, body),
                status=LabelStatus.VERIFIED,
                source=LabelSource.HUMAN,
                seconds=body.seconds,
            )
            out = _label_out(written)
        else:
            out = await state.run_store(lambda: write_label(state.project, user, body))
    except UnknownClassError as exc:
        where = {"loc": ("body", "label"), "input": body.label}
        raise RequestValidationError([{"type": "unknown_class", "msg": str(exc), **where}]) from exc
    except (QueueError, StoreError) as exc:
        raise queue_http_error(exc) from exc
    return Response(out.model_dump_json(), media_type="application/json")


def next_payload(project: Project, user: User, after: int | None) -> dict[str, Any] | None:
    """Lease the caller's next item (see :func:`next_item`); its JSON, or None if none."""
    seconds = project.config.oracle.lease_seconds
    leased = lease(project.db, user.name, lease_seconds=seconds, besides=after)
    return leased_payload(project, leased, after)


def leased_payload(
    project: Project, leased: LeasedItem | None, after: int | None
) -> dict[str, Any] | None:
    """The JSON of a lease made for :func:`next_item`, or None (nothing to serve)."""
    if leased is not None and leased.entry_id == after:  # ``after`` itself, its lease lapsed
        leased = None
    return None if leased is None else item_payload(project, leased)


def write_label(project: Project, user: User, body: LabelIn) -> LabelOut:
    """Write the label of :func:`post_label` (accept and reject take the model's proposal)."""
    label = body.label
    status = LabelStatus.VERIFIED
    if body.action != "label":
        proposal = entry_proposal(project, body.entry_id)
        if proposal is None:
            raise HTTPException(
                409, f"entry {body.entry_id} has no model proposal to {body.action}"
            )
        label = proposal.label
        if body.action == "reject":
            status = LabelStatus.REJECTED
    written = submit(
        project.db,
        body.entry_id,
        user.name,
        label,
        classes=project.classes,
        idempotency_key=_key(user, body),
        status=status,
        source=LabelSource.HUMAN,
        seconds=body.seconds,
    )
    return _label_out(written)


def _key(user: User, body: LabelIn) -> str | None:
    """The stored idempotency key: the client's, scoped to the user."""
    return None if body.idempotency_key is None else f"u{user.id}:{body.idempotency_key}"


def _label_out(written: Label) -> LabelOut:
    return LabelOut(
        label_id=written.id, item_id=written.item_id, label=written.label, status=written.status
    )


def routes(prefix: str) -> list[BaseRoute]:
    """The two hot routes under ``prefix`` (put them first: they are matched most often)."""
    return [
        Route(f"{prefix}/items/next", next_item, methods=["GET"], name="next_item"),
        Route(f"{prefix}/labels", post_label, methods=["POST"], name="post_label"),
    ]


def document(spec: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Add the hot routes' operations (and their models) to the OpenAPI ``spec``."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (LabelIn, LabelOut):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    invalid = {
        "description": "Validation Error",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }
    after = NextQuery.model_json_schema()["properties"]["after"]
    spec.setdefault("paths", {})[f"{prefix}/items/next"] = {
        "get": {
            "tags": ["labeling"],
            "summary": "Next Item",
            "description": _doc(next_item),
            "operationId": "next_item",
            "parameters": [{"name": "after", "in": "query", "required": False, "schema": after}],
            "responses": {
                "200": {
                    "description": "the leased item",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "204": {"description": "queue empty"},
                "422": invalid,
            },
        }
    }
    spec["paths"][f"{prefix}/labels"] = {
        "post": {
            "tags": ["labeling"],
            "summary": "Post Label",
            "description": _doc(post_label),
            "operationId": "post_label",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/LabelIn"}}
                },
            },
            "responses": {
                "200": {
                    "description": "the label written (or found again, for a retry)",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/LabelOut"}}
                    },
                },
                "422": invalid,
            },
        }
    }
    return spec


def _doc(endpoint: Any) -> str:
    import inspect

    return inspect.cleandoc(endpoint.__doc__ or "")
