"""End-to-end tests of the curation pages in a real browser (Debian's chromium, Playwright).

``/curate``: accept a proposal with Enter and reject one with ``r``; find label errors, accept
the candidates shown and apply them. ``/gallery``: a class's thumbnails ordered by risk, one
flagged with ``f`` and corrected with ``s``. Each effect is checked in the database.

The browser is the system's ``/usr/bin/chromium``; Playwright never downloads one. Without
chromium or Playwright each test skips with the reason (conftest.py). The project is scikit-learn's
digits as 64x64 PNGs, run by the simulated oracle until its budget, so a model exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select

from exemplar.project import Project
from exemplar.project import curation as facade
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.schema import CurationOperation, Label
from uvicorn_server import serve

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
TIMEOUT_S = 15.0


def _digit_images(folder: Path, n: int) -> Path:
    """``n`` scikit-learn digits as 64x64 grayscale PNGs in class subfolders."""
    from PIL import Image

    X, y = load_digits(return_X_y=True)
    for i in range(n):
        pixels = (255 - X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)
        sub = folder / str(y[i])
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").resize((64, 64), Image.Resampling.NEAREST).save(
            sub / f"digit-{i:04d}.png"
        )
    return folder


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digit images labeled by the simulated oracle (budget 80), 40 open proposals, users."""
    base = tmp_path_factory.mktemp("curation-browser")
    root = base / "digits"
    images = _digit_images(base / "images", 300)
    with Project.init(
        root,
        [str(i) for i in range(10)],
        name="digits-curation",
        oracle={"kind": "simulated"},
        model={"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]},
        selection={"batch_size": 20, "initial_size": 20},
        stopping={"criteria": [{"name": "label_budget", "budget": 80}]},
    ) as project:
        project.import_(images, labels_as="ground_truth")
        assert project.run().status == "stopped"
        assert facade.propose_now(project, sample=40)["proposed"] == 40
        for name in ("verifier", "curator", "galler"):
            add_user(project.db, name, "reviewer", PASSWORD)
    return root


@pytest.fixture(scope="module")
def base_url(project_root: Path) -> Iterator[str]:
    with serve(create_app(project_root)) as url:
        yield url


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies); any JS dialog or page error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    problems: list[str] = []

    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield page
    context.close()
    assert not problems, problems


def login(page: Any, base: str, name: str, then: str) -> None:
    page.goto(f"{base}{then}")
    assert "/login" in page.url  # not logged in: sent to the login form
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/label")
    page.goto(f"{base}{then}")


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def newest_label(root: Path, item_id: int) -> Label:
    with Project.open(root) as project, project.db.read() as s:
        row = s.scalars(
            select(Label).where(Label.item_id == item_id).order_by(Label.id.desc()).limit(1)
        ).one()
        s.expunge(row)
        return row


def written_by(root: Path, item_id: int, name: str) -> Label | None:
    row = newest_label(root, item_id)
    return row if row.annotator == name else None


# -- the tests --------------------------------------------------------------------------------


def test_enter_accepts_and_r_rejects_a_proposal(
    page: Any, base_url: str, project_root: Path
) -> None:
    login(page, base_url, "verifier", "/curate")
    page.wait_for_selector("#queue tbody tr")
    assert "40 open proposals" in page.inner_text("#queue-message")
    first = page.locator("#queue tbody tr").nth(0)
    item, proposed = (
        int(first.get_attribute("data-item-id")),
        first.locator("td").nth(2).inner_text(),
    )
    confidence = float(first.locator("td.confidence").inner_text())
    assert 0.0 < confidence <= 1.0  # the confidence is shown
    page.keyboard.press("Enter")
    row = wait_for(lambda: written_by(project_root, item, "verifier"), "the accepted label")
    assert (row.label, row.status, row.source) == (proposed, "verified", "human")
    page.wait_for_selector("#queue tbody tr.decided.accepted")

    second = page.locator("#queue tbody tr").nth(1)
    assert second.evaluate("tr => tr === document.activeElement")  # focus moved on
    other = int(second.get_attribute("data-item-id"))
    page.keyboard.press("r")
    row = wait_for(lambda: written_by(project_root, other, "verifier"), "the rejection")
    assert row.status == "rejected"
    page.wait_for_selector("#queue tbody tr.decided.rejected")

    # the threshold: only proposals at least 0.9 sure are listed
    page.fill("#min-confidence", "0.9")
    page.dispatch_event("#min-confidence", "change")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#queue td.confidence')].every("
        "td => Number(td.textContent) >= 0.9) && !document.querySelector('#queue tr.decided')"
    )


def test_find_accept_all_and_apply(page: Any, base_url: str, project_root: Path) -> None:
    login(page, base_url, "curator", "/curate")
    page.wait_for_selector("#queue tbody tr")
    page.click("#find-errors")
    page.wait_for_selector("#candidates tbody tr")
    title = page.inner_text("#operation-title")
    assert "label_errors (proposed)" in title
    operation = int(title.split(":")[0].removeprefix("Operation "))
    shown = [
        (int(r.get_attribute("data-candidate-id")), r.locator("td").nth(0).inner_text())
        for r in page.locator("#candidates tbody tr").all()
    ]
    assert shown
    page.click("#accept-shown")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#candidates tbody tr')].every("
        "tr => tr.classList.contains('accepted'))"
    )
    page.click("#apply")
    page.wait_for_selector("#undo:not([hidden])")
    assert "applied" in page.inner_text("#ops-status")
    with Project.open(project_root) as project, project.db.read() as s:
        op = s.get_one(CurationOperation, operation)
        assert (op.status, op.decided_by) == ("applied", "curator")
    with Project.open(project_root) as project:
        detail = facade.operation(project, operation)
    assert [c["id"] for c in detail["items"]] == [cid for cid, _ in shown]
    assert all(c["decision"] == "accepted" for c in detail["items"])
    written = [c for c in detail["items"] if c["written"]]
    assert written  # applied: the labels changed
    for cand in written:
        row = newest_label(project_root, cand["item_id"])
        assert (row.label, row.annotator) == (cand["suggested_label"], "curator")


def test_gallery_shows_thumbnails_by_risk(page: Any, base_url: str, project_root: Path) -> None:
    with Project.open(project_root) as project:
        expected = facade.gallery(project, "3", limit=200)
    assert expected["total"] >= 3
    login(page, base_url, "galler", "/gallery?label=3")
    page.wait_for_selector("#gallery .tile")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery .tile img')].every("
        "img => img.complete && img.naturalWidth > 0)"
    )
    tiles = page.locator("#gallery .tile")
    assert tiles.count() == len(expected["items"])
    risks = [float(t.get_attribute("data-risk")) for t in tiles.all()]
    assert risks == sorted(risks, reverse=True)
    shown = [int(t.get_attribute("data-item-id")) for t in tiles.all()]
    assert shown == [e["item_id"] for e in expected["items"]]
    assert f"{expected['total']} exemplars of 3" in page.inner_text("#message")

    # the riskiest one is flagged with f and sent as an 8
    target = shown[0]
    assert page.evaluate("() => document.activeElement.dataset.itemId") == str(target)
    page.select_option("#relabel", "8")
    page.focus("#gallery .tile")
    page.keyboard.press("f")
    assert "1 flagged" in page.inner_text("#flag-count")
    page.keyboard.press("s")
    row = wait_for(lambda: written_by(project_root, target, "galler"), "the correction")
    assert (row.label, row.status) == ("8", "verified")
    page.wait_for_selector("#gallery .tile.sent")
