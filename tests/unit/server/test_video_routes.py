"""The video API over a project that imported the fixture video (real nuclei crops moving
with known boxes): keyframes, interpolation, tracker proposals, finished frames, retries
with the same Idempotency-Key, and bad input that writes nothing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_helpers import PASSWORD
from sqlalchemy import func, select

from exemplar.data.video_fixture import VideoFixture, build_video_fixture
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.store.accounts import add_user, create_token
from exemplar.store.annotations import revise
from exemplar.store.queue import enqueue
from exemplar.store.schema import Annotation, Label, Media, QueueEntry

N_FRAMES = 16


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> VideoFixture:
    return build_video_fixture(tmp_path_factory.mktemp("clip") / "clip.mp4", n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, clip: VideoFixture) -> Path:
    root = tmp_path_factory.mktemp("video-project") / "proj"
    with Project.init(
        root, ["nucleus", "debris"], task="detection", data={"image_side": 32}
    ) as project:
        assert project.import_(clip.path).added == N_FRAMES
        add_user(project.db, "ann", "annotator", PASSWORD)
        add_user(project.db, "ann2", "annotator", PASSWORD)
    return root


class VideoApi:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.project: Project = client.app.state.exemplar.project  # type: ignore[attr-defined]
        self.tokens: dict[str, dict[str, str]] = {}
        with self.project.db.read() as s:
            self.media_id = int(s.scalar(select(Media.id)) or 0)

    def auth(self, name: str) -> dict[str, str]:
        if name not in self.tokens:
            from exemplar.store.accounts import User

            with self.project.db.read() as s:
                user = s.scalar(select(User).where(User.name == name))
            assert user is not None
            token = create_token(self.project.db, user.id, "test")
            self.tokens[name] = {"Authorization": f"Bearer {token}"}
        return self.tokens[name]

    def get(self, path: str, name: str = "ann") -> Any:
        return self.client.get(f"/api/v1/videos/{self.media_id}{path}", headers=self.auth(name))

    def post(self, path: str, body: Any = None, key: str | None = None, name: str = "ann") -> Any:
        headers = {**self.auth(name), **({} if key is None else {"Idempotency-Key": key})}
        return self.client.post(f"/api/v1/videos/{self.media_id}{path}", json=body, headers=headers)

    def items(self) -> dict[int, int]:
        r = self.get("")
        assert r.status_code == 200, r.text
        return {f["frame"]: f["item_id"] for f in r.json()["frames"]}

    def rows(self) -> int:
        with self.project.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(Annotation)) or 0)


@pytest.fixture
def api(template: Path, tmp_path: Path) -> Iterator[VideoApi]:
    root = Path(shutil.copytree(template, tmp_path / "proj"))
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield VideoApi(client)


def test_an_annotator_reads_the_video_and_its_frames(api: VideoApi) -> None:
    r = api.get("")
    assert r.status_code == 200, r.text
    video = r.json()
    assert (video["width"], video["height"], video["fps"], video["codec"]) == (
        256,
        256,
        12.0,
        "h264",
    )
    assert [f["frame"] for f in video["frames"]] == list(range(N_FRAMES))
    assert api.get("/objects").json() == {"media_id": api.media_id, "objects": []}
    assert api.client.get(f"/api/v1/videos/{api.media_id}").status_code == 401
    missing = api.client.get("/api/v1/videos/999", headers=api.auth("ann"))
    assert missing.status_code == 404 and "no video 999" in missing.text


def test_two_keyframes_and_interpolation_box_the_middle_frame(
    api: VideoApi, clip: VideoFixture
) -> None:
    items, truth = api.items(), clip.tracks[0].boxes
    r = api.post("/keyframes", {"item_id": items[2], "label": "nucleus", "box": list(truth[2])})
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["frame"], first["keyframe"], first["status"], first["source"]) == (
        2,
        True,
        "verified",
        "human",
    )
    track = first["track_id"]
    r = api.post(
        "/keyframes",
        {"item_id": items[6], "label": "nucleus", "box": list(truth[6]), "track_id": track},
    )
    assert r.status_code == 201 and r.json()["track_id"] == track
    r = api.post(f"/tracks/{track}/interpolate", key="interp-0001")
    assert r.status_code == 200, r.text
    out = r.json()
    assert [o["frame"] for o in out["added"]] == [3, 4, 5] and out["revised"] == []
    middle = next(o for o in out["added"] if o["frame"] == 4)
    assert middle["box"] == pytest.approx((np.add(truth[2], truth[6]) / 2).tolist())
    assert (middle["keyframe"], middle["track_id"]) == (False, track)
    # a retry with the same key: the first answer, nothing written
    rows = api.rows()
    again = api.post(f"/tracks/{track}/interpolate", key="interp-0001")
    assert again.status_code == 200 and again.json()["retry"] is True
    assert [o["annotation_id"] for o in again.json()["added"]] == [
        o["annotation_id"] for o in out["added"]
    ]
    assert api.rows() == rows
    objects = api.get("/objects").json()["objects"]
    assert sorted(o["frame"] for o in objects) == [2, 3, 4, 5, 6]
    frames = {f["frame"]: f for f in api.get("").json()["frames"]}
    assert frames[2]["keyframe"] and frames[6]["keyframe"] and not frames[4]["keyframe"]
    assert frames[4]["n_objects"] == 1


def test_a_retried_keyframe_writes_once(api: VideoApi) -> None:
    items = api.items()
    body = {"item_id": items[0], "label": "nucleus", "box": [10, 10, 40, 40]}
    a = api.post("/keyframes", body, key="key-00000001")
    b = api.post("/keyframes", body, key="key-00000001")
    assert a.status_code == b.status_code == 201
    assert a.json()["annotation_id"] == b.json()["annotation_id"] and api.rows() == 1
    # the key is the user's own: another user's same key is another write
    c = api.post("/keyframes", body, key="key-00000001", name="ann2")
    assert c.status_code == 201 and c.json()["annotation_id"] != a.json()["annotation_id"]


def test_propagation_proposes_the_tracked_boxes(api: VideoApi, clip: VideoFixture) -> None:
    items, truth = api.items(), clip.tracks[2].boxes
    start = api.post("/keyframes", {"item_id": items[0], "label": "nucleus", "box": list(truth[0])})
    body = {"item_id": items[0], "object_id": start.json()["object_id"], "frames": 5}
    r = api.post("/tracks/propagate", body)
    assert r.status_code == 200, r.text
    added = r.json()["added"]
    assert [o["frame"] for o in added] == [1, 2, 3, 4, 5]
    for o in added:
        assert (o["status"], o["source"], o["model_version"]) == (
            "proposed",
            "model",
            "tracker:template",
        )
        assert o["confidence"] >= 0.5 and o["track_id"] == start.json()["track_id"]
        assert np.abs(np.subtract(o["box"], truth[o["frame"]])).max() <= 2
    bad = api.post("/tracks/propagate", {**body, "method": "csrt"})
    assert bad.status_code == 422


def test_frames_done_labels_frames_and_closes_their_entries(api: VideoApi) -> None:
    items = api.items()
    with api.project.db.session() as s:
        enqueue(s, None, [(items[f], "test", 0.5) for f in (1, 2, 12)])
    start = api.post(
        "/keyframes", {"item_id": items[1], "label": "nucleus", "box": [100, 100, 130, 125]}
    )
    api.post(
        "/tracks/propagate",
        {"item_id": items[1], "object_id": start.json()["object_id"], "frames": 2, "min_score": -1},
    )
    r = api.post("/frames/done", {"first_frame": 0, "last_frame": 3})
    assert r.status_code == 200, r.text
    assert r.json() == {"frames": 4, "labeled": 4, "closed": 2, "accepted": 0, "rejected": 2}
    again = api.post("/frames/done", {"first_frame": 0, "last_frame": 3})
    assert again.json() == {"frames": 4, "labeled": 0, "closed": 0, "accepted": 0, "rejected": 0}
    with api.project.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 4
        status = dict(s.execute(select(QueueEntry.item_id, QueueEntry.status)).all())
    assert status == {items[1]: "done", items[2]: "done", items[12]: "pending"}
    assert [f["labeled"] for f in api.get("").json()["frames"]][:5] == [True] * 4 + [False]


def test_bad_input_is_refused_and_writes_nothing(api: VideoApi) -> None:
    items = api.items()
    api.post("/keyframes", {"item_id": items[0], "label": "nucleus", "box": [10, 10, 40, 40]})
    rows = api.rows()
    cases = [
        ("/keyframes", {"item_id": items[1], "label": "cat", "box": [1, 1, 9, 9]}, 422, "cat"),
        (
            "/keyframes",
            {"item_id": items[1], "label": "nucleus", "box": [200, 1, 300, 9]},
            422,
            "outside",
        ),
        ("/keyframes", {"item_id": items[1], "label": "nucleus", "box": [1, 1, 9]}, 422, "box"),
        (
            "/keyframes",
            {"item_id": items[1], "label": "nucleus", "box": [1, 1, 9, 9], "track_id": 4242},
            404,
            "no track 4242",
        ),
        ("/keyframes", {"item_id": 99999, "label": "nucleus", "box": [1, 1, 9, 9]}, 404, "no item"),
        ("/tracks/4242/interpolate", None, 404, "no track 4242"),
        ("/tracks/propagate", {"item_id": items[1], "object_id": 4242}, 404, "no object 4242"),
        ("/frames/done", {"first_frame": 5, "last_frame": 1}, 422, "empty range"),
        ("/frames/done", {"first_frame": 500, "last_frame": 600}, 422, "no imported frame"),
    ]
    for path, body, status, text in cases:
        r = api.post(path, body)
        assert r.status_code == status, (path, body, r.text)
        assert text in r.text, (path, r.text)
    assert api.rows() == rows
    bad_key = api.post(
        "/keyframes", {"item_id": items[1], "label": "nucleus", "box": [1, 1, 9, 9]}, key="x"
    )
    assert bad_key.status_code == 422 and api.rows() == rows


def test_the_video_page_needs_a_session_and_a_video(api: VideoApi) -> None:
    client = api.client
    r = client.get(f"/video/{api.media_id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    login = client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD})
    assert login.status_code == 200, login.text
    page = client.get(f"/video/{api.media_id}")
    assert page.status_code == 200
    assert 'data-media-id="1"' in page.text and "/static/video.js" in page.text
    assert "'unsafe-eval'" in page.headers["content-security-policy"]
    assert client.get("/video/999").status_code == 404
    assert client.get("/static/video.js").status_code == 200


def test_the_video_list_counts_imported_and_done_frames(api: VideoApi) -> None:
    r = api.client.get("/api/v1/videos", headers=api.auth("ann"))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "videos": [
            {
                "media_id": api.media_id,
                "name": "clip.mp4",
                "width": 256,
                "height": 256,
                "fps": 12.0,
                "n_frames": N_FRAMES,
                "imported": N_FRAMES,
                "labeled": 0,
            }
        ]
    }
    assert api.post("/frames/done", {"first_frame": 0, "last_frame": 4}).status_code == 200
    listed = api.client.get("/api/v1/videos", headers=api.auth("ann2")).json()["videos"]
    assert [(v["imported"], v["labeled"]) for v in listed] == [(N_FRAMES, 5)]
    assert api.client.get("/api/v1/videos").status_code == 401


def test_the_videos_page_links_each_video_and_escapes_its_name(api: VideoApi) -> None:
    client = api.client
    r = client.get("/videos", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    with api.project.db.session() as s:
        media = s.get(Media, api.media_id)
        assert media is not None
        media.uri = str(Path(media.uri).with_name("clip<script>.mp4"))
    assert client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD}).is_success
    page = client.get("/videos")
    assert page.status_code == 200
    assert f'<a href="/video/{api.media_id}">video {api.media_id}</a>' in page.text
    assert "clip&lt;script&gt;.mp4" in page.text and "<script>" not in page.text
    assert "256×256" in page.text and f"0 of {N_FRAMES}" in page.text
    assert '<a href="/videos">videos</a>' in client.get(f"/video/{api.media_id}").text


def test_a_project_without_videos_lists_none(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    with Project.init(root, ["nucleus"], task="detection", data={"image_side": 32}) as project:
        add_user(project.db, "ann", "annotator", PASSWORD)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        assert client.post("/api/v1/session", json={"name": "ann", "password": PASSWORD}).is_success
        assert client.get("/api/v1/videos").json() == {"videos": []}
        page = client.get("/videos")
        assert page.status_code == 200 and "No videos in this project" in page.text


def test_an_annotator_cannot_change_or_finish_a_frame_leased_to_another(api: VideoApi) -> None:
    """The video API keeps the objects API's lease rule: ann2 may neither move ann's object
    on the frame ann leased nor close ann's lease; ann submits her frame afterwards."""
    items = api.items()
    add_user(api.project.db, "rev", "reviewer", PASSWORD)
    with api.project.db.session() as s:
        enqueue(s, None, [(items[3], "test", 0.5)])
    r = api.client.get("/api/v1/items/next", headers=api.auth("ann"))
    assert r.status_code == 200 and r.json()["item_id"] == items[3], r.text
    entry = r.json()["entry_id"]
    with api.project.db.session() as s:
        enqueue(s, None, [(items[5], "test", 0.4)])  # queued, not leased
    drawn = api.client.post(
        f"/api/v1/items/{items[3]}/objects",
        json={"label": "nucleus", "box": [10, 10, 40, 40]},
        headers=api.auth("ann"),
    )
    assert drawn.status_code == 201, drawn.text
    mine = drawn.json()["object_id"]
    other = api.post(
        "/keyframes",
        {"item_id": items[1], "label": "nucleus", "box": [10, 10, 40, 40]},
        name="ann2",
    ).json()
    api.post(
        "/keyframes",
        {
            "item_id": items[6],
            "label": "nucleus",
            "box": [15, 10, 45, 40],
            "track_id": other["track_id"],
        },
        name="ann2",
    )
    rows = api.rows()
    move = {"item_id": items[3], "label": "debris", "box": [0, 0, 5, 5], "object_id": mine}
    refused = [
        api.post("/keyframes", move, name="ann2"),
        api.post("/keyframes", {**move, "object_id": None}, name="ann2"),
        api.post(f"/tracks/{other['track_id']}/interpolate", name="ann2"),
        api.post(
            "/tracks/propagate",
            {"item_id": items[1], "object_id": other["object_id"], "frames": 4, "min_score": -1},
            name="ann2",
        ),
        api.post("/frames/done", {"first_frame": 0, "last_frame": 15}, name="ann2"),
    ]
    for r in refused:
        assert r.status_code == 403, r.text
        assert f"frame 3 (item {items[3]}) to 'ann'" in r.json()["detail"], r.text
    assert "may not finish frames leased" in refused[-1].json()["detail"]
    assert api.rows() == rows
    with api.project.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 0
        status = dict(s.execute(select(QueueEntry.item_id, QueueEntry.status)).all())
    assert status == {items[3]: "leased", items[5]: "pending"}
    # frames nobody else leases are anyone's: the pending entry closes
    done = api.post("/frames/done", {"first_frame": 4, "last_frame": 6}, name="ann2")
    assert done.status_code == 200, done.text
    assert (done.json()["labeled"], done.json()["closed"]) == (3, 1)
    # ann's own submit still works, her lease untouched by ann2
    r = api.client.post(
        f"/api/v1/queue/{entry}/objects",
        json={"objects": [{"object_id": mine, "label": "nucleus", "box": [10, 10, 40, 40]}]},
        headers=api.auth("ann"),
    )
    assert r.status_code == 200, r.text
    # a reviewer may write on any frame, frame 2 leased to ann included
    with api.project.db.session() as s:
        enqueue(s, None, [(items[2], "test", 0.5)])
    assert (
        api.client.get("/api/v1/items/next", headers=api.auth("ann")).json()["item_id"] == items[2]
    )
    ok = api.post(f"/tracks/{other['track_id']}/interpolate", name="rev")
    assert ok.status_code == 200, ok.text
    assert sorted(o["frame"] for o in ok.json()["added"]) == [2, 3, 4, 5]
    assert ok.json()["kept"] == 0


def test_reinterpolating_keeps_a_box_a_person_corrected(api: VideoApi) -> None:
    items = api.items()
    first = api.post(
        "/keyframes", {"item_id": items[2], "label": "nucleus", "box": [10, 10, 40, 40]}
    ).json()
    track = first["track_id"]
    api.post(
        "/keyframes",
        {"item_id": items[6], "label": "nucleus", "box": [30, 10, 60, 40], "track_id": track},
    )
    added = {o["frame"]: o for o in api.post(f"/tracks/{track}/interpolate").json()["added"]}
    assert sorted(added) == [3, 4, 5]
    # a reviewer corrects frame 4 on /annotate; frame 5 is rejected
    add_user(api.project.db, "rev", "reviewer", PASSWORD)
    moved = api.client.patch(
        f"/api/v1/objects/{added[4]['object_id']}",
        json={"box": [1, 1, 21, 21]},
        headers=api.auth("rev"),
    )
    assert moved.status_code == 200, moved.text
    with api.project.db.session() as s:
        revise(
            s,
            added[5]["object_id"],
            annotator="rev",
            status="rejected",
            classes=api.project.classes,
        )
    api.post(
        "/keyframes",
        {
            "item_id": items[2],
            "label": "nucleus",
            "box": [12, 10, 42, 40],
            "object_id": first["object_id"],
        },
    )
    r = api.post(f"/tracks/{track}/interpolate")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (len(body["added"]), [o["frame"] for o in body["revised"]], body["kept"]) == (0, [3], 2)
    objects = {o["frame"]: o for o in api.get("/objects").json()["objects"]}
    assert objects[4]["box"] == [1, 1, 21, 21] and objects[4]["annotator"] == "rev"
    assert objects[5]["status"] == "rejected"
