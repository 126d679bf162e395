"""The object labeling page (``/annotate``): who gets it, what it loads, and its policy.

Its behaviour in a browser is tested in tests/e2e/test_annotate_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, Served

from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.routes.pages import ANNOTATE_CSP
from exemplar.server.security import CONTENT_SECURITY_POLICY
from exemplar.store.accounts import add_user

STATIC = Path(__file__).resolve().parents[3] / "src" / "exemplar" / "server" / "static"


def _project(root: Path, task: str, classes: list[str]) -> Path:
    with Project.init(root, classes, task=task, oracle={"kind": "human"}) as project:
        add_user(project.db, "ann", "annotator", PASSWORD)
    return root


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_label_sends_object_projects_to_annotate(tmp_path: Path, task: str) -> None:
    root = _project(tmp_path / "proj", task, ["nucleus", "<b>debris</b>"])
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        assert client.get("/annotate", follow_redirects=False).headers["location"] == "/login"
        served = Served(root, client)
        served.login("ann")
        response = client.get("/label", follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/annotate")
        page = client.get("/annotate")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == ANNOTATE_CSP
        html = page.text
        for script in (
            "/static/vendor/openseadragon.min.js",
            "/static/vendor/annotorious-openseadragon.js",
            "/static/viewer.js",
            "/static/annotate.js",
        ):
            assert f'<script src="{script}" defer></script>' in html
            assert client.get(script).status_code == 200
        assert 'name="exemplar-csrf"' in html
        assert "&lt;b&gt;debris&lt;/b&gt;" in html and "<b>debris</b>" not in html  # escaped
        assert 'id="threshold" type="range"' in html and 'for="threshold"' in html


def test_classification_projects_keep_the_label_page(tmp_path: Path) -> None:
    root = _project(tmp_path / "proj", "classification", ["cat", "dog"])
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        Served(root, client).login("ann")
        response = client.get("/label", follow_redirects=False)
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_the_annotate_policy_only_adds_eval_for_scripts() -> None:
    """PixiJS (inside Annotorious) needs ``new Function``; nothing else is loosened."""
    assert ANNOTATE_CSP == f"{CONTENT_SECURITY_POLICY}; script-src 'self' 'unsafe-eval'"
    assert "unsafe-inline" not in ANNOTATE_CSP


def test_the_vendored_libraries_ship_with_their_licenses() -> None:
    vendor = STATIC / "vendor"
    for name in (
        "openseadragon.min.js",
        "annotorious-openseadragon.js",
        "annotorious-openseadragon.css",
        "openseadragon-LICENSE.txt",
        "annotorious-LICENSE.txt",
        "README.md",
    ):
        assert (vendor / name).is_file(), name
    assert (vendor / "openseadragon.min.js").read_text()[:40].startswith("//! openseadragon 6.1.1")
    assert "BSD 3-Clause" in (vendor / "annotorious-LICENSE.txt").read_text()
    assert "CodePlex Foundation" in (vendor / "openseadragon-LICENSE.txt").read_text()
