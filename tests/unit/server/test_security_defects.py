"""Defects found by attacking the server as a user would (issue 10, §3 items 4, 6, 7, 9, 11).

Each test failed before its fix: unhandled 500s on hostile ids and on ``NaN`` bodies, the
API docs blocked by the app's own CSP, sessions that outlived logout, media that followed a
symlink planted after import, and a login limiter that never limited password spraying.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import server_helpers
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, Served, build_project
from sqlalchemy import select, update

from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.deps import AUTH_CACHE_SECONDS, CSRF_HEADER
from exemplar.server.middleware import SESSION_COOKIE
from exemplar.server.security import (
    CONTENT_SECURITY_POLICY,
    LoginRateLimiter,
    json_safe,
    parse_db_id,
)
from exemplar.store.accounts import add_user, create_token, deactivate_user
from exemplar.store.schema import Item
from uvicorn_server import serve

# Fixtures shared through a helper module (a second `conftest` would shadow tests/conftest).
project_root = server_helpers.project_root
served = server_helpers.served


# -- defect 11: the login limiter -------------------------------------------------------------


def test_spraying_many_names_from_one_ip_is_limited() -> None:
    limiter = LoginRateLimiter(max_failures=5, window=60.0, max_ip_failures=20)
    refused = 0
    for i in range(30):
        if limiter.retry_after("10.0.0.1", f"name{i}") is not None:
            refused += 1
        else:
            limiter.failed("10.0.0.1", f"name{i}")
    assert refused == 10  # the 21st to the 30th name
    # Another IP is not affected, and the sprayer is blocked for a known name too.
    assert limiter.retry_after("10.0.0.2", "name0") is None
    wait = limiter.retry_after("10.0.0.1", "ann")
    assert wait is not None and 1.0 <= wait <= 60.0


def test_other_names_failing_below_the_ip_limit_do_not_lock_out_a_name() -> None:
    limiter = LoginRateLimiter(max_failures=5, window=60.0, max_ip_failures=20)
    for _ in range(4):
        limiter.failed("10.0.0.1", "rev")
    for i in range(10):
        limiter.failed("10.0.0.1", f"typo{i}")
    assert limiter.retry_after("10.0.0.1", "ann") is None
    # One account: five failures lock that name from that IP only.
    limiter.failed("10.0.0.1", "rev")
    assert limiter.retry_after("10.0.0.1", "rev") is not None
    assert limiter.retry_after("10.0.0.9", "rev") is None


def test_a_success_forgets_its_name_but_not_the_ip_count() -> None:
    limiter = LoginRateLimiter(max_failures=3, window=60.0, max_ip_failures=5)
    for _ in range(2):
        limiter.failed("ip", "mine")
    limiter.succeeded("ip", "mine")
    for _ in range(2):
        limiter.failed("ip", "mine")
    assert limiter.retry_after("ip", "mine") is None  # 2 of 3 since the success
    limiter.succeeded("ip", "mine")  # an attacker's own account cannot reset the IP count
    limiter.failed("ip", "victim")
    assert limiter.retry_after("ip", "victim") is not None  # 5 failures from the IP


def test_failures_expire_after_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("exemplar.server.security.time.monotonic", lambda: now[0])
    limiter = LoginRateLimiter(max_failures=2, window=60.0, max_ip_failures=3)
    for name in ("a", "b", "c"):
        limiter.failed("ip", name)
    assert limiter.retry_after("ip", "d") is not None
    now[0] += 61.0
    assert limiter.retry_after("ip", "d") is None


def test_stale_keys_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("exemplar.server.security.time.monotonic", lambda: now[0])
    monkeypatch.setattr(LoginRateLimiter, "MAX_KEYS", 10)
    limiter = LoginRateLimiter(max_failures=5, window=60.0, max_ip_failures=20)
    for i in range(10):
        limiter.failed(f"ip{i}", "x")
    now[0] += 120.0
    limiter.failed("late", "x")
    assert len(limiter._failures) == 1 and len(limiter._ip_failures) == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 failure"):
        LoginRateLimiter(max_failures=0)


def _login(client: TestClient, name: str, password: str) -> httpx.Response:
    return client.post("/api/v1/session", json={"name": name, "password": password})


def test_login_spraying_30_names_is_limited(project_root: Path) -> None:
    app = create_app(project_root, login_failures_per_minute=5, login_failures_per_ip=20)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        codes = [_login(client, f"user{i}", "wrong password").status_code for i in range(30)]
        assert codes[:20] == [401] * 20
        assert codes[20:] == [429] * 10
        # The IP is blocked for every name now, the right password included.
        response = _login(client, "ann", PASSWORD)
        assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1


def test_right_password_after_another_names_failures(served: Served) -> None:
    for _ in range(4):
        assert _login(served.client, "rev", "wrong password").status_code == 401
    for i in range(6):
        assert _login(served.client, f"nobody{i}", "wrong password").status_code == 401
    assert _login(served.client, "ann", PASSWORD).status_code == 200
    # A fifth failure locks "rev" out from this IP, but not the others.
    assert _login(served.client, "rev", "wrong password").status_code == 401
    assert _login(served.client, "rev", PASSWORD).status_code == 429
    assert _login(served.client, "boss", PASSWORD).status_code == 200


# -- defect 4: hostile ids and non-finite numbers ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        (str(2**63 - 1), 2**63 - 1),
        (str(2**63), None),
        ("99999999999999999999999999", None),
        ("²", None),
        ("٣", None),  # an Arabic-Indic three: int() reads it, the database id is not that
        ("-1", None),
        ("1_0", None),
        (" 1", None),
        ("1\n", None),
        ("", None),
        ("1e3", None),
    ],
)
def test_parse_db_id(text: str, expected: int | None) -> None:
    assert parse_db_id(text) == expected


def test_json_safe_writes_non_finite_numbers_as_strings() -> None:
    value = {"a": [float("nan"), (float("inf"), -float("inf"))], "b": 1.5, "c": "x", "d": None}
    assert json_safe(value) == {
        "a": ["NaN", ["Infinity", "-Infinity"]],
        "b": 1.5,
        "c": "x",
        "d": None,
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real uvicorn serving a project (SQLite), and an annotator's bearer token."""
    root = build_project(tmp_path_factory.mktemp("live") / "proj")
    with Project.open(root) as project:
        user = add_user(project.db, "bearer", "annotator", PASSWORD)
        token = create_token(project.db, user.id, "t")
    with serve(create_app(root)) as url:
        yield url, token


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("socket").getsockname()[1])


HOSTILE = [
    ("GET", "/api/v1/media/99999999999999999999999999", None, 404),
    ("GET", "/api/v1/media/%C2%B2", None, 404),
    ("GET", "/api/v1/media/%D9%A3", None, 404),
    ("GET", "/api/v1/media/-1", None, 404),
    ("POST", "/api/v1/labels", b'{"entry_id":NaN,"label":"3"}', 422),
    ("POST", "/api/v1/labels", b'{"entry_id":Infinity,"label":"3"}', 422),
    ("POST", "/api/v1/labels", b'{"entry_id":1,"label":-Infinity}', 422),
    ("POST", "/api/v1/items/99999999999999999999999999/skip", None, 422),
    ("POST", "/api/v1/items/%C2%B2/skip", None, 422),
    ("GET", "/api/v1/items/next?after=NaN", None, 422),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), HOSTILE)
def test_hostile_input_is_a_clean_4xx_on_a_kept_connection(
    live: tuple[str, str],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, token = live
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with (
        caplog.at_level(logging.ERROR),
        httpx.Client(base_url=url, headers=headers, timeout=10) as client,
    ):
        bad = client.request(method, path, content=body)
        assert bad.status_code == status, bad.text
        assert bad.headers["content-type"] == "application/json"
        assert "detail" in bad.json()
        assert bad.headers.get("connection", "").lower() != "close"
        good = client.get("/api/v1/status")
        assert good.status_code == 200
        assert _local_port(good) == _local_port(bad), "the server closed the connection"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_nan_in_a_validation_error_is_echoed_as_a_string(served: Served) -> None:
    client = served.login("ann")
    response = client.post(
        "/api/v1/labels",
        content=b'{"entry_id":NaN,"label":"3"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "entry_id"] and error["input"] == "NaN"


# -- defect 6: the API docs under the CSP ------------------------------------------------------


def test_docs_page_uses_only_same_origin_assets_and_passes_its_csp(served: Served) -> None:
    response = served.client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "cdn" not in html and "http://" not in html and "https://" not in html
    for url in urls:
        asset = served.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 500, url
    (policy,) = response.headers.get_list("content-security-policy")
    assert policy.startswith(CONTENT_SECURITY_POLICY)
    import base64
    import hashlib

    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy
    # Every other page keeps the strict policy, with no script hash.
    for other in ("/login", "/api/v1/openapi.json"):
        assert served.client.get(other).headers.get_list("content-security-policy") == [
            CONTENT_SECURITY_POLICY
        ]


def test_vendored_swagger_ui_ships_its_license() -> None:
    vendor = Path(__file__).resolve().parents[3] / "src/exemplar/server/static/vendor"
    assert "Apache License" in (vendor / "swagger-ui-LICENSE").read_text()
    assert (vendor / "swagger-ui-NOTICE").is_file()


# -- defect 7: sessions end on the server -----------------------------------------------------


def _replay(client: TestClient, cookie: str) -> int:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    return client.get("/api/v1/status").status_code


def test_a_session_cookie_replayed_after_logout_is_refused(served: Served) -> None:
    client = served.login("ann")
    cookie = client.cookies[SESSION_COOKIE]
    assert client.get("/api/v1/status").status_code == 200
    assert client.delete("/api/v1/session").status_code == 204
    assert _replay(client, cookie) == 401
    client.headers[CSRF_HEADER] = "stale"
    assert client.post("/api/v1/labels", json={"entry_id": 1, "label": "3"}).status_code == 401
    # The cookie carries only a random secret: no user id to forge or replay.
    assert b"user_id" not in _cookie_payload(cookie)


def _cookie_payload(cookie: str) -> bytes:
    import base64

    data = cookie.split(".", 1)[0]
    return base64.b64decode(data + "=" * (-len(data) % 4))


def test_logging_in_again_does_not_revive_the_old_session(served: Served) -> None:
    client = served.login("ann")
    first = client.cookies[SESSION_COOKIE]
    client.delete("/api/v1/session")
    served.login("ann")
    assert _replay(client, first) == 401


#: A short auth cache for the tests that wait for it to lapse (the server's is 5 s).
SHORT_CACHE_S = 0.3


def _short_cache(client: TestClient) -> None:
    cache = client.app.state.exemplar.users  # type: ignore[attr-defined]
    cache.ttl = SHORT_CACHE_S
    cache.clear()


def test_a_deactivated_users_session_is_refused(served: Served) -> None:
    _short_cache(served.client)
    client = served.login("ann")
    cookie = client.cookies[SESSION_COOKIE]
    assert client.get("/api/v1/status").status_code == 200  # cached now
    with Project.open(served.root) as project:
        deactivate_user(project.db, "ann")  # as `exemplar user deactivate` does
    # A new worker refuses it at once; this one once its cache entry lapses.
    with TestClient(create_app(served.root), base_url="http://127.0.0.1") as other:
        assert _replay(other, cookie) == 401
    time.sleep(SHORT_CACHE_S + 0.05)
    assert _replay(client, cookie) == 401


def test_logout_in_one_worker_ends_the_session_in_another_within_the_cache_bound(
    served: Served,
) -> None:
    assert AUTH_CACHE_SECONDS <= 5.0  # the bound the README states
    client = served.login("ann")
    cookie = client.cookies[SESSION_COOKIE]
    with TestClient(create_app(served.root), base_url="http://127.0.0.1") as other:
        _short_cache(other)
        assert _replay(other, cookie) == 200  # cached by the other worker now
        assert client.delete("/api/v1/session").status_code == 204
        time.sleep(SHORT_CACHE_S + 0.05)
        assert _replay(other, cookie) == 401


def test_the_label_page_needs_a_live_session(served: Served) -> None:
    client = served.login("ann")
    cookie = client.cookies[SESSION_COOKIE]
    assert client.get("/label", follow_redirects=False).status_code == 200
    client.delete("/api/v1/session")
    client.cookies.set(SESSION_COOKIE, cookie)
    response = client.get("/label", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


# -- defect 9: media that changed since import ------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Served]:
    """An image project (8 PNGs) behind a TestClient, logged in as an annotator."""
    from PIL import Image

    folder = tmp_path / "images"
    for i in range(8):
        sub = folder / str(i % 2)
        sub.mkdir(parents=True, exist_ok=True)
        Image.new("L", (16, 16), color=i * 30).save(sub / f"img{i}.png")
    root = tmp_path / "proj"
    with Project.init(root, ["0", "1"], name="img", oracle={"kind": "human"}) as project:
        project.import_(folder)
        add_user(project.db, "ann", "annotator", PASSWORD)
    return root, Served(root, TestClient(create_app(root), base_url="http://127.0.0.1"))


def _image_items(root: Path) -> list[tuple[int, str, str | None]]:
    with Project.open(root) as project, project.db.read() as s:
        rows = s.execute(select(Item.id, Item.uri, Item.file_id).order_by(Item.id)).all()
    return [(int(i), str(u), f) for i, u, f in rows]


def test_media_refuses_a_file_replaced_by_a_symlink(
    images: tuple[Path, Served], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, served = images
    with served.client:
        client = served.login("ann")
        (item_id, uri, recorded), *_ = _image_items(root)
        assert recorded is not None
        assert client.get(f"/api/v1/media/{item_id}").status_code == 200
        secret = tmp_path / "secret.png"
        secret.write_bytes(Path(uri).read_bytes())  # same bytes, another file
        Path(uri).unlink()
        Path(uri).symlink_to(secret)
        with caplog.at_level(logging.WARNING, "exemplar.server"):
            response = client.get(f"/api/v1/media/{item_id}")
        assert response.status_code == 404 and response.json() == {"detail": "no such media"}
        assert "real path" in caplog.text


def test_media_refuses_a_file_modified_in_place(images: tuple[Path, Served]) -> None:
    root, served = images
    with served.client:
        client = served.login("ann")
        _, (item_id, uri, _), *_ = _image_items(root)
        assert client.get(f"/api/v1/media/{item_id}").status_code == 200
        with open(uri, "r+b") as fh:  # same inode, other bytes
            data = fh.read()
            fh.seek(0)
            fh.write(bytes([data[0] ^ 1]) + data[1:] + b"\0")
        assert client.get(f"/api/v1/media/{item_id}").status_code == 404


def test_media_of_items_without_file_id_is_checked_by_real_path(
    images: tuple[Path, Served], tmp_path: Path
) -> None:
    root, served = images
    with Project.open(root) as project, project.db.session() as s:
        s.execute(update(Item).values(file_id=None))  # imported before migration 0005
    (first, uri, _), (second, _, _), *_ = _image_items(root)
    with served.client:
        client = served.login("ann")
        assert client.get(f"/api/v1/media/{second}").status_code == 200
        Path(uri).unlink()
        Path(uri).symlink_to("/etc/hostname" if Path("/etc/hostname").exists() else tmp_path)
        assert client.get(f"/api/v1/media/{first}").status_code == 404
