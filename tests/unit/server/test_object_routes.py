"""The objects API (``exemplar.server.routes.objects``): an item's boxes and outlines, their
history, a leased item's object set submitted at once, one-object decisions and edits, who
may do what, and its OpenAPI operations.

The project is a human-oracle project whose items carry a size in pixels and a queue of
their own; the first item has three model proposals.
"""

from __future__ import annotations

import shutil
import sys
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, Served
from sqlalchemy import func, select, update

from exemplar.loop.config import ProjectSection
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.deps import CSRF_HEADER
from exemplar.store.accounts import User, add_user, create_token
from exemplar.store.annotations import OBJECTS_LABEL, AnnotationIn, add_annotations
from exemplar.store.queue import enqueue
from exemplar.store.schema import Annotation, Item, Label, QueueEntry, utcnow

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database

CLASSES = ["cell", "debris"]
WIDTH, HEIGHT = 200, 100
#: The project's task: detection once the config accepts it.
TASK = (
    "detection"
    if "detection" in typing.get_args(ProjectSection.model_fields["task"].annotation)
    else "classification"
)
NEXT = "/api/v1/items/next"


def build_detection_project(root: Path, database_url: str = "") -> Path:
    """A human-oracle project of 6 image items (200x100 pixels), all queued, three model
    proposals on the first item, users ``ann``, ``ann2`` (annotators) and ``rev`` (reviewer).

    The items are made in the database directly (the API never reads their files).
    """
    with Project.init(
        root, CLASSES, task=TASK, database_url=database_url, oracle={"kind": "human"}
    ) as project:
        with project.db.session() as s:
            items = [
                Item(
                    uid=f"img{k}",
                    row=k,
                    uri=str(root / f"img{k}.png"),
                    kind="image",
                    width=WIDTH,
                    height=HEIGHT,
                )
                for k in range(6)
            ]
            s.add_all(items)
            s.flush()
            ids = [item.id for item in items]
            enqueue(s, None, [(item_id, "test", 1.0 - k / 10) for k, item_id in enumerate(ids)])
            add_annotations(
                s,
                ids[0],
                [
                    AnnotationIn("cell", (10.0, 10.0, 50.0, 50.0), confidence=0.9),
                    AnnotationIn("cell", (60.0, 10.0, 90.0, 40.0), confidence=0.4),
                    AnnotationIn("debris", (120.0, 50.0, 150.0, 90.0), confidence=0.6),
                ],
                status="proposed",
                source="model",
                model_version="v-test",
                classes=CLASSES,
            )
        for name, role in (("ann", "annotator"), ("ann2", "annotator"), ("rev", "reviewer")):
            add_user(project.db, name, role, PASSWORD)
    return root


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_detection_project(tmp_path_factory.mktemp("objects") / "proj")


@pytest.fixture
def served(template: Path, tmp_path: Path) -> Iterator[Served]:
    """The app over a private copy of the SQLite detection project."""
    root = Path(shutil.copytree(template, tmp_path / "proj"))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield Served(root, client)


class Api:
    """The served app, with one bearer token per user."""

    def __init__(self, served: Served) -> None:
        self.client = served.client
        self.db = served.client.app.state.exemplar.project.db  # type: ignore[attr-defined]
        self._tokens: dict[str, dict[str, str]] = {}

    def auth(self, name: str) -> dict[str, str]:
        if name not in self._tokens:
            with self.db.read() as s:
                user = s.scalar(select(User).where(User.name == name))
            assert user is not None
            token = create_token(self.db, user.id, "test")
            self._tokens[name] = {"Authorization": f"Bearer {token}"}
        return self._tokens[name]

    def get(self, path: str, name: str = "ann", **kw: Any) -> Any:
        return self.client.get(path, headers=self.auth(name), **kw)

    def post(
        self, path: str, name: str = "ann", headers: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        return self.client.post(path, headers={**self.auth(name), **(headers or {})}, **kw)

    def patch(self, path: str, name: str = "ann", **kw: Any) -> Any:
        return self.client.patch(path, headers=self.auth(name), **kw)

    def lease(self, name: str = "ann") -> dict[str, Any]:
        r = self.get(NEXT, name)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def objects(self, item_id: int, name: str = "rev") -> dict[str, Any]:
        r = self.get(f"/api/v1/items/{item_id}/objects", name)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def counts(self) -> tuple[int, int]:
        """Annotation rows and label rows in the database."""
        with self.db.read() as s:
            return (
                s.scalar(select(func.count()).select_from(Annotation)) or 0,
                s.scalar(select(func.count()).select_from(Label)) or 0,
            )

    def entry_status(self, entry_id: int) -> str:
        with self.db.read() as s:
            return s.get_one(QueueEntry, entry_id).status


@pytest.fixture
def api(served: Served) -> Api:
    return Api(served)


def _by_box(objects: list[dict[str, Any]]) -> dict[tuple[float, ...], dict[str, Any]]:
    return {tuple(o["box"]): o for o in objects}


def _proposals(api: Api, item_id: int) -> list[dict[str, Any]]:
    """The item's proposals, highest confidence first."""
    found = [o for o in api.objects(item_id)["objects"] if o["status"] == "proposed"]
    return sorted(found, key=lambda o: -o["confidence"])


# -- reading ---------------------------------------------------------------------------------


def test_the_lease_names_the_task_and_objects_show_the_proposals(api: Api) -> None:
    item = api.lease()
    assert item["task"] == TASK
    r = api.get(f"/api/v1/items/{item['item_id']}/objects")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["item_id"], out["width"], out["height"]) == (item["item_id"], WIDTH, HEIGHT)
    assert (out["task"], out["classes"]) == (TASK, CLASSES)
    objects = _by_box(out["objects"])
    assert set(objects) == {(10, 10, 50, 50), (60, 10, 90, 40), (120, 50, 150, 90)}
    cell = objects[(10, 10, 50, 50)]
    assert (cell["label"], cell["status"], cell["source"]) == ("cell", "proposed", "model")
    assert (cell["confidence"], cell["model_version"], cell["geometry"]) == (0.9, "v-test", "box")
    assert cell["shape"] is None and cell["annotator"] is None
    assert cell["object_id"] == cell["annotation_id"]  # a first row names its object
    assert objects[(120, 50, 150, 90)]["label"] == "debris"


def test_hidden_ground_truth_is_never_served(api: Api) -> None:
    item_id = api.lease()["item_id"]
    with api.db.session() as s:
        (truth,) = add_annotations(
            s,
            item_id,
            [AnnotationIn("cell", (1.0, 1.0, 5.0, 5.0))],
            status="ground_truth",
            source="import",
            classes=CLASSES,
        )
        truth_id = truth.object_id
    boxes = {tuple(o["box"]) for o in api.objects(item_id, "ann")["objects"]}
    assert (1, 1, 5, 5) not in boxes and len(boxes) == 3
    assert api.get(f"/api/v1/objects/{truth_id}/history", "rev").status_code == 404
    assert api.post(f"/api/v1/objects/{truth_id}/verify", "rev").status_code == 404


# -- submitting a set ------------------------------------------------------------------------


def test_a_submitted_set_verifies_rejects_draws_and_finishes_the_entry(api: Api) -> None:
    leased = api.lease()
    entry, item_id = leased["entry_id"], leased["item_id"]
    high, low, debris = _proposals(api, item_id)
    body = {
        "objects": [
            # verified, moved a little
            {"object_id": high["object_id"], "label": "cell", "box": [12, 11, 52, 49]},
            {
                "object_id": low["object_id"],
                "label": "cell",
                "box": low["box"],
                "status": "rejected",
            },
            {"label": "debris", "box": [150, 5, 190, 45]},  # drawn
            # the debris proposal is left out: rejected
        ]
    }
    r = api.post(f"/api/v1/queue/{entry}/objects", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["entry_id"], out["item_id"]) == (entry, item_id)
    counts = (out["verified"], out["drawn"], out["rejected"], out["hard_negative"])
    assert counts == (1, 1, 2, 0)

    # the current view
    now = _by_box(api.objects(item_id)["objects"])
    assert set(now) == {
        (12, 11, 52, 49),
        tuple(low["box"]),
        tuple(debris["box"]),
        (150, 5, 190, 45),
    }
    moved = now[(12, 11, 52, 49)]
    assert moved["object_id"] == high["object_id"]
    assert (moved["status"], moved["source"], moved["annotator"]) == ("verified", "human", "ann")
    assert now[tuple(low["box"])]["status"] == "rejected"
    assert now[tuple(debris["box"])]["status"] == "rejected"
    drawn = now[(150, 5, 190, 45)]
    assert (drawn["label"], drawn["status"], drawn["source"]) == ("debris", "verified", "human")
    assert drawn["object_id"] not in {high["object_id"], low["object_id"], debris["object_id"]}

    # the history of the moved proposal: the model's row, then the annotator's
    r = api.get(f"/api/v1/objects/{high['object_id']}/history", "rev")
    assert r.status_code == 200, r.text
    rows = r.json()["history"]
    assert [(h["status"], h["source"], h["box"]) for h in rows] == [
        ("proposed", "model", [10, 10, 50, 50]),
        ("verified", "human", [12, 11, 52, 49]),
    ]
    assert {h["object_id"] for h in rows} == {high["object_id"]}

    # the item's label row, and the entry is done; the next lease is another item
    with api.db.read() as s:
        label = s.get_one(Label, out["label_id"])
    assert (label.item_id, label.label, label.annotator) == (item_id, OBJECTS_LABEL, "ann")
    assert api.entry_status(entry) == "done"
    assert api.lease()["item_id"] != item_id


def test_a_retry_with_the_same_idempotency_key_returns_the_first_answer(api: Api) -> None:
    leased = api.lease()
    entry, item_id = leased["entry_id"], leased["item_id"]
    high = _proposals(api, item_id)[0]
    body = {
        "objects": [
            {"object_id": high["object_id"], "label": "cell", "box": high["box"]},
            {"label": "cell", "box": [100, 60, 130, 95]},
        ]
    }
    key = {"Idempotency-Key": "objects-retry-0001"}
    first = api.post(f"/api/v1/queue/{entry}/objects", json=body, headers=key)
    assert first.status_code == 200, first.text
    written = api.counts()
    retry = api.post(f"/api/v1/queue/{entry}/objects", json=body, headers=key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert api.counts() == written  # nothing written twice
    # without the key the same request is refused: the entry is done
    again = api.post(f"/api/v1/queue/{entry}/objects", json=body)
    assert again.status_code == 409, again.text
    assert api.counts() == written


@pytest.mark.parametrize("key", ["short", "bad key!!", "x" * 101])
def test_a_malformed_idempotency_key_is_422(api: Api, key: str) -> None:
    entry = api.lease()["entry_id"]
    r = api.post(
        f"/api/v1/queue/{entry}/objects",
        json={"objects": []},
        headers={"Idempotency-Key": key},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_a_lost_lease_is_409_and_writes_nothing(api: Api) -> None:
    leased = api.lease()
    entry, item_id = leased["entry_id"], leased["item_id"]
    high = _proposals(api, item_id)[0]
    with api.db.session() as s:  # the lease lapses, and ann2 takes the item
        s.execute(
            update(QueueEntry)
            .where(QueueEntry.id == entry)
            .values(lease_expires=utcnow() - timedelta(hours=1))
        )
    assert api.lease("ann2")["entry_id"] == entry
    before = api.counts()
    body = {"objects": [{"object_id": high["object_id"], "label": "cell", "box": high["box"]}]}
    r = api.post(f"/api/v1/queue/{entry}/objects", json=body)
    assert r.status_code == 409, r.text
    assert "ann2" in r.json()["detail"]
    assert api.counts() == before
    assert api.entry_status(entry) == "leased"
    assert _proposals(api, item_id)[0]["status"] == "proposed"
    # the new holder submits fine
    r = api.post(f"/api/v1/queue/{entry}/objects", "ann2", json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"label": "dog", "box": [1, 1, 5, 5]}, "label", "unknown class 'dog'"),
        ({"label": "cell", "box": [150, 50, 210, 90]}, "box", "outside the 200x100 image"),
        ({"label": "cell", "box": [-5, 50, 10, 90]}, "box", "outside the 200x100 image"),
        ({"label": "cell", "box": [50, 50, 40, 90]}, "box", "empty or inverted"),
        (
            {"label": "cell", "box": [5, 5, 10, 10], "geometry": "polygon"},
            "geometry",
            "needs polygons",
        ),
        (
            {
                "label": "cell",
                "box": [5, 5, 10, 10],
                "geometry": "polygon",
                "polygons": [[5, 5, 10, 5, 10, 10, 5]],
            },
            "geometry",
            "odd number",
        ),
        (
            {
                "label": "cell",
                "box": [5, 5, 10, 10],
                "geometry": "mask",
                "rle": {"size": [10, 10], "counts": "0"},
            },
            "geometry",
            "not the image's",
        ),
        ({"object_id": 999999, "label": "cell", "box": [5, 5, 10, 10]}, "object_id", "999999"),
    ],
)
def test_a_bad_object_is_422_naming_its_position_and_writes_nothing(
    api: Api, bad: dict[str, Any], field: str, words: str
) -> None:
    entry = api.lease()["entry_id"]
    before = api.counts()
    good = {"label": "cell", "box": [1, 1, 5, 5]}
    r = api.post(f"/api/v1/queue/{entry}/objects", json={"objects": [good, bad]})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "objects", 1, field]
    assert error["msg"].startswith("object 1: ") and words in error["msg"], error["msg"]
    assert api.counts() == before
    assert api.entry_status(entry) == "leased"
    # the corrected set goes through
    r = api.post(f"/api/v1/queue/{entry}/objects", json={"objects": [good]})
    assert r.status_code == 200, r.text


def test_one_object_twice_in_a_set_is_422(api: Api) -> None:
    leased = api.lease()
    high = _proposals(api, leased["item_id"])[0]
    same = {"object_id": high["object_id"], "label": "cell", "box": high["box"]}
    r = api.post(f"/api/v1/queue/{leased['entry_id']}/objects", json={"objects": [same, same]})
    assert r.status_code == 422 and "appears twice" in r.json()["detail"][0]["msg"]


def test_polygons_and_masks_round_trip(api: Api) -> None:
    from pycocotools import mask as mask_utils

    leased = api.lease()
    grid = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    grid[20:40, 30:70] = 1
    rle = mask_utils.encode(grid)
    rle = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}
    polygon = [[100.0, 10.0, 140.0, 10.0, 140.0, 50.0]]
    body = {
        "objects": [
            {
                "label": "cell",
                "box": [100, 10, 140, 50],
                "geometry": "polygon",
                "polygons": polygon,
            },
            {"label": "debris", "box": [30, 20, 70, 40], "geometry": "mask", "rle": rle},
        ]
    }
    r = api.post(f"/api/v1/queue/{leased['entry_id']}/objects", json=body)
    assert r.status_code == 200, r.text
    drawn = _by_box(api.objects(leased["item_id"])["objects"])
    assert drawn[(100, 10, 140, 50)]["geometry"] == "polygon"
    assert drawn[(100, 10, 140, 50)]["shape"] == {"polygons": polygon}
    assert drawn[(30, 20, 70, 40)]["geometry"] == "mask"
    assert drawn[(30, 20, 70, 40)]["shape"] == {"rle": rle}


# -- one object at a time --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status"),
    [("verify", "verified"), ("reject", "rejected"), ("hard-negative", "hard_negative")],
)
def test_one_key_decisions_append_a_row(api: Api, action: str, status: str) -> None:
    leased = api.lease()
    high, low, _ = _proposals(api, leased["item_id"])
    r = api.post(f"/api/v1/objects/{low['object_id']}/{action}")
    assert r.status_code == 200, r.text
    row = r.json()
    assert (row["object_id"], row["status"], row["source"], row["annotator"]) == (
        low["object_id"],
        status,
        "human",
        "ann",
    )
    assert (row["label"], row["box"]) == (low["label"], low["box"])
    assert row["annotation_id"] != low["annotation_id"]
    now = {o["object_id"]: o for o in api.objects(leased["item_id"])["objects"]}
    assert now[low["object_id"]]["status"] == status
    assert now[high["object_id"]]["status"] == "proposed"  # the others are untouched
    history = api.get(f"/api/v1/objects/{low['object_id']}/history").json()["history"]
    assert [h["status"] for h in history] == ["proposed", status]
    assert api.entry_status(leased["entry_id"]) == "leased"  # the set is not submitted yet


def test_patch_moves_and_relabels_an_object(api: Api) -> None:
    leased = api.lease()
    high = _proposals(api, leased["item_id"])[0]
    path = f"/api/v1/objects/{high['object_id']}"
    r = api.patch(path, json={"box": [20, 20, 60, 60]})
    assert r.status_code == 200, r.text
    assert (r.json()["box"], r.json()["label"]) == ([20, 20, 60, 60], "cell")
    r = api.patch(path, json={"label": "debris"})
    assert r.status_code == 200, r.text
    assert (r.json()["box"], r.json()["label"]) == ([20, 20, 60, 60], "debris")
    history = api.get(f"{path}/history").json()["history"]
    assert [(h["label"], h["box"], h["annotator"]) for h in history] == [
        ("cell", [10, 10, 50, 50], None),
        ("cell", [20, 20, 60, 60], "ann"),
        ("debris", [20, 20, 60, 60], "ann"),
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"box": [20, 20, 260, 60]}, "outside the 200x100 image"),
        ({"label": "dog"}, "unknown class 'dog'"),
        ({"polygons": [[1, 1, 5, 1, 5, 5]]}, "geometry 'box' takes no polygons"),
        ({}, "nothing to change"),
    ],
)
def test_a_bad_patch_is_422_and_writes_nothing(api: Api, body: dict[str, Any], words: str) -> None:
    leased = api.lease()
    high = _proposals(api, leased["item_id"])[0]
    before = api.counts()
    r = api.patch(f"/api/v1/objects/{high['object_id']}", json=body)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"][0]["msg"], r.json()
    assert api.counts() == before


def test_unknown_objects_and_items_are_404(api: Api) -> None:
    api.lease()
    for path in ("/api/v1/objects/999999/history",):
        assert api.get(path, "rev").status_code == 404
    assert api.post("/api/v1/objects/999999/verify", "rev").status_code == 404
    assert api.patch("/api/v1/objects/999999", "rev", json={"label": "cell"}).status_code == 404
    assert api.get("/api/v1/items/999999/objects", "rev").status_code == 404
    r = api.post("/api/v1/queue/999999/objects", json={"objects": []})
    assert r.status_code == 404, r.text


# -- who may do what -------------------------------------------------------------------------


def test_another_annotator_cannot_see_or_change_objects_of_an_item_it_does_not_hold(
    api: Api,
) -> None:
    leased = api.lease("ann")
    entry, item_id = leased["entry_id"], leased["item_id"]
    high = _proposals(api, item_id)[0]
    oid = high["object_id"]
    api.lease("ann2")  # ann2 holds another item
    before = api.counts()
    assert api.get(f"/api/v1/items/{item_id}/objects", "ann2").status_code == 403
    assert api.get(f"/api/v1/objects/{oid}/history", "ann2").status_code == 403
    for action in ("verify", "reject", "hard-negative"):
        assert api.post(f"/api/v1/objects/{oid}/{action}", "ann2").status_code == 403
    assert api.patch(f"/api/v1/objects/{oid}", "ann2", json={"label": "debris"}).status_code == 403
    body = {"objects": [{"object_id": oid, "label": "cell", "box": high["box"]}]}
    r = api.post(f"/api/v1/queue/{entry}/objects", "ann2", json=body)
    assert r.status_code == 409, r.text
    assert api.counts() == before
    # the holder can; a reviewer reads and revises any item
    assert api.get(f"/api/v1/items/{item_id}/objects", "ann").status_code == 200
    assert api.post(f"/api/v1/objects/{oid}/verify", "rev").status_code == 200


def test_an_annotator_loses_access_once_the_item_is_submitted(api: Api) -> None:
    leased = api.lease()
    item_id = leased["item_id"]
    r = api.post(f"/api/v1/queue/{leased['entry_id']}/objects", json={"objects": []})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 3  # every proposal left out
    assert api.get(f"/api/v1/items/{item_id}/objects", "ann").status_code == 403
    assert api.get(f"/api/v1/items/{item_id}/objects", "rev").status_code == 200


def test_the_objects_api_needs_authentication_and_csrf(served: Served) -> None:
    client = served.client
    assert client.get("/api/v1/items/1/objects").status_code == 401
    assert client.post("/api/v1/objects/1/verify").status_code == 401
    assert client.post("/api/v1/queue/1/objects", json={"objects": []}).status_code == 401
    client = served.login("ann")
    csrf = client.headers.pop(CSRF_HEADER)
    item = client.get(NEXT).json()
    oid = client.get(f"/api/v1/items/{item['item_id']}/objects").json()["objects"][0]["object_id"]
    assert client.post(f"/api/v1/objects/{oid}/verify").status_code == 403
    r = client.post(f"/api/v1/objects/{oid}/verify", headers={CSRF_HEADER: csrf})
    assert r.status_code == 200, r.text


# -- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_documents_the_objects_api(served: Served) -> None:
    spec = served.client.get("/api/v1/openapi.json").json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    expected = {
        ("/api/v1/items/{item_id}/objects", "get", "ItemObjectsOut"),
        ("/api/v1/objects/{object_id}/history", "get", "ObjectHistoryOut"),
        ("/api/v1/queue/{entry_id}/objects", "post", "ObjectsOut"),
        ("/api/v1/objects/{object_id}/verify", "post", "ObjectOut"),
        ("/api/v1/objects/{object_id}/reject", "post", "ObjectOut"),
        ("/api/v1/objects/{object_id}/hard-negative", "post", "ObjectOut"),
        ("/api/v1/objects/{object_id}", "patch", "ObjectOut"),
    }
    for path, method, out in expected:
        op = paths[path][method]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{out}"}, (path, ok)
        assert op["tags"] == ["objects"] and op["description"]
    submit = paths["/api/v1/queue/{entry_id}/objects"]["post"]
    body = submit["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ObjectsIn"}
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in submit["parameters"])
    for name in ("ObjectsIn", "ObjectIn", "ObjectPatchIn", "ObjectOut", "ObjectsOut"):
        assert schemas[name].get("examples"), name
    assert set(schemas["ObjectIn"]["properties"]["status"]["enum"]) == {
        "verified",
        "rejected",
        "hard_negative",
    }


# -- PostgreSQL ------------------------------------------------------------------------------


def test_a_set_submitted_on_postgresql(tmp_path: Path) -> None:
    for url in fresh_pg_database():
        root = build_detection_project(tmp_path / "proj", url)
        with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
            api = Api(Served(root, client))
            leased = api.lease()
            high = _proposals(api, leased["item_id"])[0]
            body = {
                "objects": [
                    {"object_id": high["object_id"], "label": "cell", "box": high["box"]},
                    {"label": "debris", "box": [150, 5, 190, 45], "status": "hard_negative"},
                ]
            }
            key = {"Idempotency-Key": "pg-objects-0001"}
            path = f"/api/v1/queue/{leased['entry_id']}/objects"
            first = api.post(path, json=body, headers=key)
            assert first.status_code == 200, first.text
            out = first.json()
            assert (out["verified"], out["drawn"], out["rejected"], out["hard_negative"]) == (
                1,
                0,
                2,
                1,
            )
            written = api.counts()
            assert api.post(path, json=body, headers=key).json() == out
            assert api.counts() == written
            statuses = sorted(o["status"] for o in api.objects(leased["item_id"])["objects"])
            assert statuses == ["hard_negative", "rejected", "rejected", "verified"]
            assert api.entry_status(leased["entry_id"]) == "done"
