"""One-object actions of the labeling app: draw, delete, undo, and retries of every
one-object write with the same ``Idempotency-Key`` (each action is one history row).

The project is test_object_routes' detection project: six queued 200x100 image items, three
model proposals on the first.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_helpers import Served
from sqlalchemy import func, select
from test_object_routes import Api, _proposals, build_detection_project

from exemplar.server import create_app
from exemplar.store.schema import Annotation

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pg_helpers import fresh_pg_database


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_detection_project(tmp_path_factory.mktemp("actions") / "proj")


@pytest.fixture
def api(template: Path, tmp_path: Path) -> Iterator[Api]:
    root = Path(shutil.copytree(template, tmp_path / "proj"))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield Api(Served(root, client))


def _rows(api: Api, object_id: int) -> list[Annotation]:
    with api.db.read() as s:
        return list(
            s.scalars(
                select(Annotation).where(Annotation.object_id == object_id).order_by(Annotation.id)
            )
        )


def _n_rows(api: Api) -> int:
    with api.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Annotation)) or 0)


def _draw(api: Api, item_id: int, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return api.post(f"/api/v1/items/{item_id}/objects", json=body, headers=headers)


def test_a_drawn_box_is_a_verified_human_object(api: Api) -> None:
    item_id = api.lease()["item_id"]
    r = _draw(api, item_id, {"label": "debris", "box": [5, 6, 25, 30]})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["label"], out["status"], out["source"], out["annotator"]) == (
        "debris",
        "verified",
        "human",
        "ann",
    )
    assert out["box"] == [5, 6, 25, 30] and out["object_id"] == out["annotation_id"]
    shown = {o["object_id"]: o for o in api.objects(item_id)["objects"]}
    assert shown[out["object_id"]]["status"] == "verified"


def test_a_drawn_polygon_keeps_its_outline(api: Api) -> None:
    item_id = api.lease()["item_id"]
    polygon = [[10.0, 10.0, 40.0, 10.0, 40.0, 30.0, 10.0, 30.0]]
    r = _draw(
        api,
        item_id,
        {"label": "cell", "box": [10, 10, 40, 30], "geometry": "polygon", "polygons": polygon},
    )
    assert r.status_code == 201, r.text
    assert r.json()["shape"] == {"polygons": polygon} and r.json()["geometry"] == "polygon"


def test_a_drawn_object_with_an_unknown_class_or_outside_the_item_writes_nothing(
    api: Api,
) -> None:
    item_id = api.lease()["item_id"]
    before = _n_rows(api)
    r = _draw(api, item_id, {"label": "nucleus", "box": [5, 6, 25, 30]})
    assert r.status_code == 422 and "nucleus" in r.text
    r = _draw(api, item_id, {"label": "cell", "box": [150, 50, 260, 90]})
    assert r.status_code == 422 and "outside" in r.text
    assert _n_rows(api) == before


def test_an_annotator_cannot_draw_on_an_item_it_does_not_hold(api: Api) -> None:
    item_id = api.lease("ann")["item_id"]
    r = _draw_as(api, "ann2", item_id)
    assert r.status_code == 403


def _draw_as(api: Api, name: str, item_id: int) -> Any:
    return api.client.post(
        f"/api/v1/items/{item_id}/objects",
        json={"label": "cell", "box": [1, 1, 9, 9]},
        headers=api.auth(name),
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/verify", None),
        ("post", "/reject", None),
        ("post", "/hard-negative", None),
        ("patch", "", {"label": "debris"}),
        ("delete", "", None),
    ],
)
def test_a_retried_one_object_write_returns_the_first_row(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    item_id = api.lease()["item_id"]
    target = _proposals(api, item_id)[0]["object_id"]
    headers = {**api.auth("ann"), "Idempotency-Key": f"retry-{method}-{path.strip('/') or 'x'}"}
    url = f"/api/v1/objects/{target}{path}"
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    first = api.client.request(method.upper(), url, **kwargs)
    assert first.status_code == 200, first.text
    rows = _n_rows(api)
    again = api.client.request(method.upper(), url, **kwargs)
    assert again.status_code == 200, again.text
    assert again.json()["annotation_id"] == first.json()["annotation_id"]
    assert _n_rows(api) == rows  # the retry wrote nothing


def test_a_retried_draw_adds_one_object(api: Api) -> None:
    item_id = api.lease()["item_id"]
    body = {"label": "cell", "box": [2, 2, 12, 12]}
    first = _draw(api, item_id, body, key="draw-once-1")
    again = _draw(api, item_id, body, key="draw-once-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["object_id"] == again.json()["object_id"]
    drawn = [o for o in api.objects(item_id)["objects"] if o["box"] == [2, 2, 12, 12]]
    assert len(drawn) == 1


def test_delete_hides_the_object_and_keeps_its_history(api: Api) -> None:
    item_id = api.lease()["item_id"]
    target = _proposals(api, item_id)[0]["object_id"]
    r = api.client.delete(f"/api/v1/objects/{target}", headers=api.auth("ann"))
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    assert target not in {o["object_id"] for o in api.objects(item_id)["objects"]}
    assert [row.status for row in _rows(api, target)] == ["proposed", "deleted"]


def test_undo_walks_back_through_the_annotators_actions(api: Api) -> None:
    item_id = api.lease()["item_id"]
    first, second = (p["object_id"] for p in _proposals(api, item_id)[:2])
    assert api.post(f"/api/v1/objects/{first}/verify").status_code == 200
    assert api.patch(f"/api/v1/objects/{first}", json={"box": [12, 12, 52, 52]}).status_code == 200
    assert api.post(f"/api/v1/objects/{second}/reject").status_code == 200
    drawn = _draw(api, item_id, {"label": "cell", "box": [160, 5, 190, 30]}).json()["object_id"]

    undo = api.post("/api/v1/objects/undo")  # the drawing goes
    assert undo.status_code == 200 and undo.json()["status"] == "deleted"
    assert undo.json()["object_id"] == drawn
    undo = api.post("/api/v1/objects/undo")  # the rejection: a proposal again
    assert (undo.json()["object_id"], undo.json()["status"]) == (second, "proposed")
    assert undo.json()["source"] == "model" and undo.json()["confidence"] == 0.6
    undo = api.post("/api/v1/objects/undo")  # the move: back at the old box, verified
    assert (undo.json()["object_id"], undo.json()["box"]) == (first, [10, 10, 50, 50])
    assert undo.json()["status"] == "verified"
    undo = api.post("/api/v1/objects/undo")  # the verification
    assert (undo.json()["object_id"], undo.json()["status"]) == (first, "proposed")
    assert api.post("/api/v1/objects/undo").status_code == 409  # nothing left
    statuses = {o["object_id"]: o["status"] for o in api.objects(item_id)["objects"]}
    assert statuses[first] == statuses[second] == "proposed" and drawn not in statuses


def test_a_retried_undo_undoes_once(api: Api) -> None:
    item_id = api.lease()["item_id"]
    first, second = (p["object_id"] for p in _proposals(api, item_id)[:2])
    api.post(f"/api/v1/objects/{first}/verify")
    api.post(f"/api/v1/objects/{second}/verify")
    headers = {"Idempotency-Key": "undo-key-1"}
    one = api.post("/api/v1/objects/undo", headers=headers)
    two = api.post("/api/v1/objects/undo", headers=headers)
    assert one.json()["annotation_id"] == two.json()["annotation_id"]
    statuses = {o["object_id"]: o["status"] for o in api.objects(item_id)["objects"]}
    assert (statuses[first], statuses[second]) == ("verified", "proposed")


def test_undo_never_overwrites_someone_elses_later_change(api: Api) -> None:
    item_id = api.lease()["item_id"]
    target = _proposals(api, item_id)[0]["object_id"]
    api.post(f"/api/v1/objects/{target}/verify")
    r = api.post(f"/api/v1/objects/{target}/reject", "rev")  # a reviewer decides after
    assert r.status_code == 200
    undo = api.post("/api/v1/objects/undo")
    assert undo.status_code == 409 and "rev" in undo.text
    assert _rows(api, target)[-1].status == "rejected"


def test_draw_retry_and_undo_on_postgresql(tmp_path: Path) -> None:
    for url in fresh_pg_database():
        root = build_detection_project(tmp_path / "proj", url)
        with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
            api = Api(Served(root, client))
            item_id = api.lease()["item_id"]
            target = _proposals(api, item_id)[0]["object_id"]
            key = {"Idempotency-Key": "pg-verify-0001"}
            first = api.post(f"/api/v1/objects/{target}/verify", headers=key)
            again = api.post(f"/api/v1/objects/{target}/verify", headers=key)
            assert first.json()["annotation_id"] == again.json()["annotation_id"]
            body = {"label": "cell", "box": [2, 2, 12, 12]}
            drawn = _draw(api, item_id, body, key="pg-draw-0001")
            assert _draw(api, item_id, body, key="pg-draw-0001").json() == drawn.json()
            undo = api.post("/api/v1/objects/undo")
            assert (undo.json()["object_id"], undo.json()["status"]) == (
                drawn.json()["object_id"],
                "deleted",
            )
            undo = api.post("/api/v1/objects/undo")
            assert (undo.json()["object_id"], undo.json()["status"]) == (target, "proposed")


def test_undo_is_limited_to_the_item_asked_for_and_never_reopens_a_finished_item(
    api: Api,
) -> None:
    first = api.lease("rev")  # a reviewer may touch any item: the broadest case
    target = _proposals(api, first["item_id"])[0]["object_id"]
    assert api.post(f"/api/v1/objects/{target}/verify", "rev").status_code == 200
    submitted = api.post(
        f"/api/v1/queue/{first['entry_id']}/objects",
        "rev",
        json={"objects": [{"object_id": target, "label": "cell", "box": [10, 10, 50, 50]}]},
    )
    assert submitted.status_code == 200, submitted.text
    second = api.lease("rev")
    # on the next item there is nothing of the reviewer's to undo
    r = api.post(f"/api/v1/objects/undo?item_id={second['item_id']}", "rev")
    assert r.status_code == 409 and "nothing to undo" in r.text
    # and without the item, undo refuses to reopen the finished one
    r = api.post("/api/v1/objects/undo", "rev")
    assert r.status_code == 409 and "finished since" in r.text
    assert _rows(api, target)[-1].status == "verified"


def test_an_idempotency_key_reused_for_another_object_is_409(api: Api) -> None:
    item_id = api.lease()["item_id"]
    first, second = (p["object_id"] for p in _proposals(api, item_id)[:2])
    key = {"Idempotency-Key": "reused-key-01"}
    assert api.post(f"/api/v1/objects/{first}/verify", headers=key).status_code == 200
    r = api.post(f"/api/v1/objects/{second}/reject", headers=key)
    assert r.status_code == 409 and "already used" in r.text
    assert _rows(api, second)[-1].status == "proposed"  # nothing written


def test_concurrent_undo_and_review_never_overwrite_on_postgresql(tmp_path: Path) -> None:
    """Undo checks the object's history and writes under the item's lock: a reviewer's
    decision racing it is either seen (409) or comes after the undo, never overwritten."""
    import threading

    for url in fresh_pg_database():
        root = build_detection_project(tmp_path / "proj", url)
        with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
            api = Api(Served(root, client))
            item_id = api.lease()["item_id"]
            objects = [p["object_id"] for p in _proposals(api, item_id)]
            for object_id in objects:
                assert api.post(f"/api/v1/objects/{object_id}/verify").status_code == 200
            api.auth("rev")
            results: list[int] = []
            threads = [
                threading.Thread(target=_undo_each, args=(api, item_id, len(objects), results)),
                threading.Thread(target=_reject_each, args=(api, objects)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert set(results) <= {200, 409}
            for object_id in objects:
                rows = _rows(api, object_id)
                reject = max(i for i, r in enumerate(rows) if r.annotator == "rev")
                # after the reviewer's reject, no undo of ann's restored an older state
                assert all(r.annotator == "rev" for r in rows[reject:]), [
                    (r.annotator, r.status) for r in rows
                ]


def _undo_each(api: Api, item_id: int, times: int, results: list[int]) -> None:
    for _ in range(times):
        results.append(api.post(f"/api/v1/objects/undo?item_id={item_id}").status_code)


def _reject_each(api: Api, objects: list[int]) -> None:
    for object_id in objects:
        api.post(f"/api/v1/objects/{object_id}/reject", "rev")
