"""The request and response models of the JSON API (``/api/v1``), one place for all of them.

They are pydantic v2 models; FastAPI documents them in the OpenAPI schema under their class
names, and the plain Starlette hot routes (:mod:`exemplar.server.routes.labeling`) validate
with the same models and document them by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue, model_validator

from exemplar.store.accounts import Role

__all__ = [
    "MAX_DB_ID",
    "MAX_OBJECTS",
    "MIN_DB_ID",
    "ItemObjectsOut",
    "LabelIn",
    "LabelOut",
    "LoginIn",
    "NextQuery",
    "ObjectHistoryOut",
    "ObjectIn",
    "ObjectOut",
    "ObjectPatchIn",
    "ObjectsIn",
    "ObjectsOut",
    "ReviewIn",
    "ReviewOut",
    "SessionOut",
    "TokenIn",
    "TokenOut",
    "UndoOut",
    "UserIn",
    "UserOut",
]

#: Database ids are SQLite INTEGERs (signed 64-bit); larger numbers are a 422, not a crash.
MIN_DB_ID = -(2**63)
MAX_DB_ID = 2**63 - 1


# -- session and accounts --------------------------------------------------------------------


class LoginIn(BaseModel):
    """Credentials for ``POST /api/v1/session``."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    """The logged-in user and the CSRF token to send in ``X-Exemplar-CSRF``."""

    name: str
    role: str
    csrf: str


class UserIn(BaseModel):
    """A new account (admin only)."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    password: str = Field(min_length=8, max_length=1024)


class UserOut(BaseModel):
    """An account, without its secret."""

    id: int
    name: str
    role: str


class TokenIn(BaseModel):
    """A name for a new API token."""

    name: str = Field(default="api", min_length=1, max_length=64)


class TokenOut(BaseModel):
    """A new API token; it is shown once and only its digest is stored."""

    token: str


# -- labeling --------------------------------------------------------------------------------


class NextQuery(BaseModel):
    """The query of ``GET /api/v1/items/next``."""

    after: int | None = Field(default=None, ge=MIN_DB_ID, le=MAX_DB_ID)


class LabelIn(BaseModel):
    """A label for a leased queue entry.

    ``action`` is ``label`` (``label`` names the class), ``accept`` (take the model's
    proposal) or ``reject`` (record the proposal as rejected). Retrying with the same
    ``idempotency_key`` returns the label written the first time. ``seconds`` is the time
    the annotator spent on the item (the page's timer, over 0 and at most 24 h); without
    it the server records the time from the lease to the answer.
    """

    entry_id: int = Field(ge=MIN_DB_ID, le=MAX_DB_ID)
    label: str | None = Field(default=None, max_length=255)
    action: Literal["label", "accept", "reject"] = "label"
    idempotency_key: str | None = Field(
        default=None, min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$"
    )
    seconds: float | None = Field(default=None, gt=0, le=86_400, allow_inf_nan=False)

    @model_validator(mode="after")
    def _label_names_a_class(self) -> LabelIn:
        if self.action == "label" and self.label is None:
            raise ValueError("action 'label' needs a label")
        return self


class LabelOut(BaseModel):
    """The label row that was written (or found, for a retry)."""

    label_id: int
    item_id: int
    label: str | None
    status: str


class UndoOut(BaseModel):
    """What an undo did: the label it superseded and the entry given back to the caller."""

    entry_id: int
    item_id: int
    undone_label_id: int
    marker_label_id: int


# -- review ----------------------------------------------------------------------------------


class ReviewIn(BaseModel):
    """A reviewer's decision on an item's current label.

    ``correct`` needs ``label``. ``accept`` of a disputed item needs ``label``, one of the
    classes its annotators chose; otherwise ``accept`` keeps the current label.
    """

    action: Literal["accept", "correct", "reject"]
    label: str | None = Field(default=None, max_length=255)


class ReviewOut(BaseModel):
    """The label row the review appended."""

    label_id: int
    item_id: int
    label: str | None
    status: str
    annotator: str | None


# -- objects (detection and segmentation) ----------------------------------------------------

#: A finite pixel coordinate (NaN and infinities are a 422).
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
#: A box ``[x0, y0, x1, y1]`` in the item's pixel coordinates.
Box = Annotated[list[Coordinate], Field(min_length=4, max_length=4)]
#: How an object's outline is given: its box only, polygons, or a run-length mask.
Geometry = Literal["box", "polygon", "mask"]
#: Most objects accepted in one submission, and most points of one polygon.
MAX_OBJECTS = 5000
MAX_POLYGON_VALUES = 20000

_BOX_EXAMPLE: list[JsonValue] = [12.0, 30.5, 64.0, 88.0]
_POLYGON_EXAMPLE: list[JsonValue] = [[12.0, 30.5, 64.0, 30.5, 64.0, 88.0, 12.0, 88.0]]


class RleIn(BaseModel):
    """A COCO run-length encoded mask: ``size`` is ``[height, width]`` of the item, ``counts``
    the compressed string of :mod:`pycocotools.mask`."""

    size: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(min_length=2, max_length=2)
    counts: str = Field(min_length=1, max_length=2_000_000, pattern=r"^[0-o]+$")


class ObjectShapeIn(BaseModel):
    """The outline fields of an object: ``polygons`` (geometry ``polygon``, COCO's
    ``[[x, y, x, y, ...], ...]``) or ``rle`` (geometry ``mask``); neither for ``box``."""

    polygons: (
        list[Annotated[list[Coordinate], Field(min_length=6, max_length=MAX_POLYGON_VALUES)]] | None
    ) = Field(default=None, min_length=1, max_length=100)
    rle: RleIn | None = None


class ObjectIn(ObjectShapeIn):
    """One object of a submitted set.

    ``object_id`` names an existing object of the item (a proposal being verified, moved
    or rejected, or an earlier annotation); without it the object is new (drawn).
    ``status`` is the annotator's decision: ``verified`` (a real object), ``rejected`` (a
    wrong proposal) or ``hard_negative`` (looks like an object of the class but is not one:
    kept as a negative example).
    """

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"object_id": 17, "label": "cell", "box": _BOX_EXAMPLE, "status": "verified"},
                {
                    "label": "cell",
                    "box": _BOX_EXAMPLE,
                    "geometry": "polygon",
                    "polygons": _POLYGON_EXAMPLE,
                    "status": "verified",
                },
            ]
        }
    }

    object_id: int | None = Field(default=None, ge=MIN_DB_ID, le=MAX_DB_ID)
    label: str = Field(min_length=1, max_length=255)
    box: Box
    geometry: Geometry = "box"
    status: Literal["verified", "rejected", "hard_negative"] = "verified"


class DrawnObjectIn(ObjectShapeIn):
    """One object a person drew on an item: its class, box and outline (``polygons`` for
    geometry ``polygon``, ``rle`` for a brush ``mask``)."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"label": "cell", "box": _BOX_EXAMPLE},
                {
                    "label": "cell",
                    "box": _BOX_EXAMPLE,
                    "geometry": "polygon",
                    "polygons": _POLYGON_EXAMPLE,
                },
            ]
        }
    }

    label: str = Field(min_length=1, max_length=255)
    box: Box
    geometry: Geometry = "box"


class ObjectsIn(BaseModel):
    """The whole object set of a leased item, submitted at once.

    Every model proposal of the item that the set does not mention is recorded as
    rejected. Send an ``Idempotency-Key`` header to make a retry return the first answer.
    """

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "objects": [
                        {"object_id": 17, "label": "cell", "box": _BOX_EXAMPLE},
                        {
                            "object_id": 18,
                            "label": "cell",
                            "box": _BOX_EXAMPLE,
                            "status": "rejected",
                        },
                        {"label": "debris", "box": [100.0, 4.0, 120.0, 30.0]},
                    ]
                }
            ]
        }
    }

    objects: list[ObjectIn] = Field(max_length=MAX_OBJECTS)


class ObjectPatchIn(ObjectShapeIn):
    """A change to one object: a move or resize (``box``), a new class (``label``) or a
    new outline (``polygons``/``rle``, matching the object's geometry). At least one field."""

    model_config = {"json_schema_extra": {"examples": [{"box": _BOX_EXAMPLE}, {"label": "cell"}]}}

    label: str | None = Field(default=None, min_length=1, max_length=255)
    box: Box | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ObjectPatchIn:
        if self.label is None and self.box is None and self.polygons is None and self.rle is None:
            raise ValueError("nothing to change: send label, box, polygons or rle")
        return self


class ObjectOut(BaseModel):
    """One object as it stands now (its newest history row), or one row of its history.

    ``annotation_id`` is the row; ``object_id`` stays the same across the object's
    history. ``shape`` is ``{"polygons": [...]}``, ``{"rle": {...}}`` or null (a box).
    ``confidence`` and ``model_version`` are set for a model's proposals.
    """

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "annotation_id": 41,
                    "object_id": 17,
                    "item_id": 5,
                    "label": "cell",
                    "geometry": "box",
                    "box": _BOX_EXAMPLE,
                    "shape": None,
                    "status": "proposed",
                    "source": "model",
                    "annotator": None,
                    "model_version": "c0003-logreg",
                    "confidence": 0.87,
                    "cycle_id": 3,
                    "created_at": "2026-12-06T20:15:03+00:00",
                }
            ]
        }
    }

    annotation_id: int
    object_id: int
    item_id: int
    label: str
    geometry: str
    box: list[float]
    shape: dict[str, Any] | None
    status: str
    source: str
    annotator: str | None
    model_version: str | None
    confidence: float | None
    cycle_id: int | None
    created_at: datetime
    #: Video: the track the object belongs to, and whether a person placed it on a keyframe.
    track_id: int | None = None
    keyframe: bool | None = None


class ItemObjectsOut(BaseModel):
    """An item's current objects (proposals and people's decisions), its size in pixels,
    the project's task and classes."""

    item_id: int
    width: int | None
    height: int | None
    task: str
    classes: list[str]
    objects: list[ObjectOut]


class ObjectHistoryOut(BaseModel):
    """Every row of one object's append-only history, oldest first."""

    object_id: int
    item_id: int
    history: list[ObjectOut]


class ObjectsOut(BaseModel):
    """What a submitted object set did: the item's label row and the objects per decision
    (``drawn``: new objects; ``verified``: existing ones confirmed, moved or relabeled)."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "entry_id": 9,
                    "item_id": 5,
                    "label_id": 120,
                    "verified": 1,
                    "drawn": 1,
                    "rejected": 1,
                    "hard_negative": 0,
                }
            ]
        }
    }

    entry_id: int
    item_id: int
    label_id: int
    verified: int
    drawn: int
    rejected: int
    hard_negative: int
