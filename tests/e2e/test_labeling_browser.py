"""End-to-end tests of the labeling page in a real browser (Debian's chromium, Playwright).

The browser is the system's ``/usr/bin/chromium``; Playwright never downloads one. Without
chromium or Playwright each test skips with the reason (conftest.py). Set ``EXEMPLAR_SCREENSHOTS=1``
to refresh the screenshots in ``docs/img/`` that the README shows.

Each test logs in as its own user in a fresh browser context, so the tests share one
server but not their leases or labels, and may run in any order or on any xdist worker.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sqlalchemy import select
from typer.testing import CliRunner

from exemplar.cli.main import app as cli
from exemplar.project import Project
from exemplar.server import create_app
from exemplar.store.accounts import add_user
from exemplar.store.schema import Item, Label, QueueEntry
from uvicorn_server import serve

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
USERS = ("keys", "accept", "undo", "help", "xss")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
XSS = "<img src=x onerror=\"alert('xss')\"><script>alert('xss')</script>"
TIMEOUT_S = 15.0


# -- servers and projects ---------------------------------------------------------------------


def _serve(root: Path) -> Iterator[str]:
    """Run the app over ``root`` in a real uvicorn on a free port; yield its base URL."""
    with serve(create_app(root)) as url:
        yield url


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


def _cli_user_add(root: Path, name: str) -> None:
    result = CliRunner().invoke(cli, ["user", "add", name, "--password", PASSWORD, "-p", str(root)])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def image_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image project in its second cycle: a model proposes a class for every queued item.

    The first 20 (random) items are labeled from ground truth through the Project API, so
    ``run`` trains a model and queues a batch of 40 that the browser tests label.
    """
    base = tmp_path_factory.mktemp("browser")
    root = base / "digits"
    images = _digit_images(base / "images", 200)
    with Project.init(
        root,
        [str(i) for i in range(10)],
        name="digits",
        oracle={"kind": "human"},
        model={"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]},
        selection={"batch_size": 40, "initial_size": 20},
        stopping={"criteria": [{"name": "label_budget", "budget": 100}]},
    ) as project:
        project.import_(images, labels_as="ground_truth")
        project.run()
        while (leased := project.next_item("seed")) is not None:
            with project.db.read() as s:
                truth = s.get_one(Item, leased.item_id).ground_truth
            assert truth is not None
            project.submit_label(leased.entry_id, "seed", truth)
        project.run()
        assert project.status()["queue"]["pending"] == 40
        for name in USERS[1:]:
            add_user(project.db, name, "annotator", PASSWORD)
        add_user(project.db, "boss", "admin", PASSWORD)
    _cli_user_add(root, USERS[0])  # one account through the CLI, as the README shows
    return root


@pytest.fixture(scope="module")
def text_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text project whose items and class names are XSS payloads."""
    base = tmp_path_factory.mktemp("xss")
    table = base / "texts.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        for i in range(12):
            writer.writerow([f"{XSS} #{i} " + "and a long tail of words " * 6])
    root = base / "texts"
    with Project.init(
        root,
        [XSS, "harmless"],
        name="texts <b>bold</b>",
        oracle={"kind": "human"},
        selection={"batch_size": 5, "initial_size": 5},
        stopping={"criteria": [{"name": "label_budget", "budget": 10}]},
    ) as project:
        project.import_(table, text_column="text")
        project.run()
        # One label to review, with a long text (the review page clips it).
        leased = project.next_item("seed")
        assert leased is not None
        project.submit_label(leased.entry_id, "seed", "harmless")
        add_user(project.db, "xss", "annotator", PASSWORD)
        add_user(project.db, "xssrev", "reviewer", PASSWORD)
    return root


@pytest.fixture(scope="module")
def overlap_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image project with ``overlap = 2``: every item goes to two annotators."""
    base = tmp_path_factory.mktemp("overlap")
    root = base / "digits"
    images = _digit_images(base / "images", 40)
    with Project.init(
        root,
        [str(i) for i in range(10)],
        name="digits-overlap",
        oracle={"kind": "human", "overlap": 2},
        model={"candidates": [{"recipe": "logreg", "params": {"C": 1.0}}]},
        selection={"batch_size": 6, "initial_size": 6},
        stopping={"criteria": [{"name": "label_budget", "budget": 20}]},
    ) as project:
        project.import_(images, labels_as="ground_truth")
        assert project.run().status == "waiting"
        assert project.status()["queue"]["pending"] == 12  # 6 items, 2 slots each
        for name in ("vote1", "vote2"):
            add_user(project.db, name, "annotator", PASSWORD)
        add_user(project.db, "rev", "reviewer", PASSWORD)
    return root


@pytest.fixture(scope="module")
def image_url(image_project: Path) -> Iterator[str]:
    yield from _serve(image_project)


@pytest.fixture(scope="module")
def overlap_url(overlap_project: Path) -> Iterator[str]:
    yield from _serve(overlap_project)


@pytest.fixture(scope="module")
def text_url(text_project: Path) -> Iterator[str]:
    yield from _serve(text_project)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies); any JS dialog or page error fails the test."""
    context = browser.new_context(viewport={"width": 900, "height": 560})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_S * 1000)
    problems: list[str] = []
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield page
    context.close()
    assert not problems, problems


# -- helpers ----------------------------------------------------------------------------------


def screenshot(page: Any, name: str) -> None:
    """Save ``docs/img/<name>.png`` when EXEMPLAR_SCREENSHOTS=1 (the README's pictures)."""
    if os.environ.get("EXEMPLAR_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def login(page: Any, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/label")
    assert page.url.endswith("/login")  # not logged in: sent to the login form
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def open_labeling(page: Any, base: str, name: str) -> int:
    """Log in as ``name`` and wait for the first image; return its item id."""
    login(page, base, name)
    page.wait_for_url(f"{base}/label")
    return shown_item(page)


def shown_item(page: Any, other_than: int | None = None) -> int:
    """The item id of the image on the page (waiting until it is not ``other_than``)."""
    page.wait_for_function(
        """(old) => {
            const img = document.getElementById('media');
            if (!img || img.hidden || !img.src.includes('/media/')) return false;
            const id = Number(img.src.split('/').pop());
            return id !== old && img.complete && img.naturalWidth > 0;
        }""",
        arg=other_than,
    )
    return int(page.get_attribute("#media", "src").rsplit("/", 1)[1])


def labels_of(root: Path, annotator: str) -> list[Label]:
    with Project.open(root) as project, project.db.read() as s:
        rows = list(s.scalars(select(Label).where(Label.annotator == annotator).order_by(Label.id)))
        s.expunge_all()
    return rows


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_labels(root: Path, annotator: str, count: int) -> list[Label]:
    return wait_for(
        lambda: (rows := labels_of(root, annotator)) and len(rows) >= count and rows,
        f"{count} label rows of {annotator}",
    )


def proposal_label(page: Any) -> str:
    text = page.inner_text("#proposal")
    assert text.startswith("Model proposes "), text
    return text.removeprefix("Model proposes ").rsplit(" (", 1)[0]


def entry_status(root: Path, item_id: int) -> str:
    with Project.open(root) as project, project.db.read() as s:
        status = s.scalars(
            select(QueueEntry.status)
            .where(QueueEntry.item_id == item_id)
            .order_by(QueueEntry.id.desc())
        ).first()
    assert status is not None
    return status


# -- the tests --------------------------------------------------------------------------------


def test_wrong_password_shows_an_error(page: Any, image_url: str) -> None:
    page.goto(f"{image_url}/login")
    screenshot(page, "login")
    login(page, image_url, "keys", "not the password")
    page.wait_for_url("**/login?error=1")
    assert "Wrong name or password" in page.inner_text(".error")
    assert page.context.cookies() == [] or page.goto(f"{image_url}/label").url.endswith("/login")


def test_label_with_a_digit_key(page: Any, image_url: str, image_project: Path) -> None:
    first = open_labeling(page, image_url, "keys")
    assert page.inner_text("header .user").startswith("keys")
    assert "chosen by" in page.inner_text("#why")
    proposal_label(page)  # cycle 1 has a model: every item comes with a proposal
    screenshot(page, "label")
    page.keyboard.press("3")  # digit classes: the key is the class name itself
    [row] = wait_labels(image_project, "keys", 1)
    assert (row.item_id, row.label, row.status, row.source) == (first, "3", "verified", "human")
    assert row.strategy and row.cycle_id is not None and row.score is not None
    assert row.seconds is not None and 0 < row.seconds < 60  # the page's labeling timer
    second = shown_item(page, other_than=first)
    page.keyboard.press("0")
    rows = wait_labels(image_project, "keys", 2)
    assert (rows[1].item_id, rows[1].label) == (second, "0")
    shown_item(page, other_than=second)
    assert entry_status(image_project, first) == entry_status(image_project, second) == "done"


def test_accept_and_reject_the_proposal(page: Any, image_url: str, image_project: Path) -> None:
    first = open_labeling(page, image_url, "accept")
    proposed = proposal_label(page)
    assert "selected" in (
        page.get_attribute(f"#classes li:nth-child({int(proposed) + 1}) button", "class") or ""
    )
    page.keyboard.press("Enter")
    [accepted] = wait_labels(image_project, "accept", 1)
    assert (accepted.item_id, accepted.label, accepted.status) == (first, proposed, "verified")
    assert accepted.strategy
    second = shown_item(page, other_than=first)
    rejected_class = proposal_label(page)
    page.keyboard.press("x")
    rows = wait_labels(image_project, "accept", 2)
    assert (rows[1].item_id, rows[1].label, rows[1].status) == (second, rejected_class, "rejected")
    assert rows[1].source == "human" and rows[1].strategy
    shown_item(page, other_than=second)


def test_skip_and_undo(page: Any, image_url: str, image_project: Path) -> None:
    first = open_labeling(page, image_url, "undo")
    page.keyboard.press("s")
    second = shown_item(page, other_than=first)
    wait_for(lambda: entry_status(image_project, first) == "skipped", "the skip")
    assert labels_of(image_project, "undo") == []
    page.keyboard.press("5")
    [labeled] = wait_labels(image_project, "undo", 1)
    assert (labeled.item_id, labeled.label) == (second, "5")
    third = shown_item(page, other_than=second)
    page.keyboard.press("u")
    # The undo supersedes the label with a class-less marker and brings the item back.
    rows = wait_labels(image_project, "undo", 2)
    assert (rows[1].item_id, rows[1].label, rows[1].status) == (second, None, "rejected")
    assert shown_item(page, other_than=third) == second
    assert entry_status(image_project, second) == "leased"
    page.keyboard.press("6")
    rows = wait_labels(image_project, "undo", 3)
    assert (rows[2].item_id, rows[2].label, rows[2].status) == (second, "6", "verified")
    shown_item(page, other_than=second)


def test_help_toggles_with_question_mark(page: Any, image_url: str) -> None:
    open_labeling(page, image_url, "help")
    assert not page.is_visible("#help")
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="visible")
    assert "undo your last label" in page.inner_text("#help")
    screenshot(page, "label-help")
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="hidden")


def test_xss_payloads_render_as_text(page: Any, text_url: str, text_project: Path) -> None:
    login(page, text_url, "xss")
    page.wait_for_url(f"{text_url}/label")
    page.wait_for_function("() => !document.getElementById('text').hidden")
    text = page.inner_text("#text")
    assert text.startswith(XSS)  # shown literally
    assert XSS in page.inner_text("#classes")
    assert "<b>bold</b>" in page.inner_text("header strong")
    # Nothing was parsed as markup: no injected image or script element exists.
    assert page.locator("img[src=x], main script, header b, #classes img").count() == 0
    page.keyboard.press("1")
    [row] = wait_labels(text_project, "xss", 1)
    assert row.label == XSS
    page.wait_for_function("(old) => document.getElementById('text').textContent !== old", arg=text)
    # The `page` fixture fails the test if any dialog (alert) fired.


@pytest.mark.parametrize("path", ["/review", "/dashboard"])
def test_other_pages_load(browser: Any, image_url: str, path: str) -> None:
    """The admin pages open in the browser (screenshots for the README)."""
    context = browser.new_context(viewport={"width": 900, "height": 560})
    try:
        page = context.new_page()
        login(page, image_url, "boss")
        page.wait_for_url(f"{image_url}/label")
        response = page.goto(f"{image_url}{path}")
        assert response is not None and response.status == 200
        page.wait_for_load_state("networkidle")
        assert page.inner_text("body").strip()
        screenshot(page, path.strip("/"))
    finally:
        context.close()


def test_dashboard_retrain_button_calls_the_api(browser: Any, image_url: str) -> None:
    """The admin's button posts to /api/v1/retrain with the CSRF header and shows the answer.

    This test server runs without a background learner, so the API answers 409 and the
    page must say so (the learner's own behaviour is tested in tests/unit/server).
    """
    context = browser.new_context()
    try:
        page = context.new_page()
        login(page, image_url, "boss")
        page.wait_for_url(f"{image_url}/label")
        page.goto(f"{image_url}/dashboard")
        with page.expect_response("**/api/v1/retrain") as answer:
            page.click("#retrain")
        assert answer.value.status == 409
        page.wait_for_function(
            "() => document.getElementById('retrain-status').textContent.includes('409')"
        )
    finally:
        context.close()


def test_review_a_disagreement_and_see_the_dashboard_update(
    browser: Any, overlap_url: str, overlap_project: Path
) -> None:
    """Two annotators label one item differently (overlap 2): the reviewer finds it at the
    top of /review, resolves it, and the dashboard's label counts follow each step."""
    contexts = [browser.new_context(viewport={"width": 900, "height": 560}) for _ in range(3)]
    try:
        one, two, rev = (c.new_page() for c in contexts)
        for page in (one, two, rev):
            page.set_default_timeout(TIMEOUT_S * 1000)
        # The reviewer logs in through the API: the /label page would lease them an item.
        answer = rev.context.request.post(
            f"{overlap_url}/api/v1/session", data={"name": "rev", "password": PASSWORD}
        )
        assert answer.status == 200, answer.text()

        def dashboard_says(text: str) -> None:
            rev.goto(f"{overlap_url}/dashboard")
            rev.wait_for_function(
                "(t) => document.getElementById('labels').textContent === t", arg=text
            )

        dashboard_says("0 verified")
        first = open_labeling(one, overlap_url, "vote1")
        one.keyboard.press("3")
        wait_labels(overlap_project, "vote1", 1)
        second = shown_item(one, other_than=first)
        # The second annotator is given the same item (its other slot), not a new one.
        assert open_labeling(two, overlap_url, "vote2") == first
        two.keyboard.press("4")
        wait_labels(overlap_project, "vote2", 1)
        # Both agree on the next item.
        assert shown_item(two, other_than=first) == second
        two.keyboard.press("5")
        one.keyboard.press("5")
        wait_labels(overlap_project, "vote1", 2)
        wait_labels(overlap_project, "vote2", 2)
        dashboard_says("1 verified · 1 disputed (waiting for review)")

        rev.goto(f"{overlap_url}/review")
        top = rev.locator("#review tbody tr").first
        top.wait_for()
        cells = top.locator("td").all_inner_texts()
        assert [cells[0], *cells[2:4]] == [str(first), "disputed", "vote1: 3 · vote2: 4"]
        assert "disagreement" in cells[7]
        screenshot(rev, "review-disputed")
        top.get_by_role("button", name="accept 4").click()
        rev.wait_for_selector("#review tbody tr.reviewed")
        rows = labels_of(overlap_project, "rev")
        assert [(r.item_id, r.label, r.status, r.strategy) for r in rows] == [
            (first, "4", "verified", "review")
        ]
        votes = [(r.annotator, r.label) for r in labels_of(overlap_project, "vote1")]
        assert votes == [("vote1", "3"), ("vote1", "5")]  # the annotators' labels are kept
        dashboard_says("2 verified")
    finally:
        for context in contexts:
            context.close()


def _api_login(page: Any, base: str, name: str) -> None:
    """Log ``page``'s context in through the API (the /label page would lease an item)."""
    answer = page.context.request.post(
        f"{base}/api/v1/session", data={"name": name, "password": PASSWORD}
    )
    assert answer.status == 200, answer.text()


def _focused_item(page: Any) -> str | None:
    value: str | None = page.evaluate("() => document.activeElement.dataset.itemId || null")
    return value


def test_review_with_the_keyboard_only(page: Any, image_url: str, image_project: Path) -> None:
    """A reviewer accepts one row with its class key and rejects another with x, moving with
    j and k; no mouse. Every row shows its image as a thumbnail, and focus is visible."""
    _api_login(page, image_url, "boss")
    page.goto(f"{image_url}/review")
    rows = page.locator("#review tbody tr")
    rows.first.wait_for()
    # Thumbnails: a small lazy <img> from the media route that really loaded.
    page.wait_for_function(
        """() => {
            const img = document.querySelector('#review tbody tr img.thumb');
            return img && img.complete && img.naturalWidth > 0;
        }"""
    )
    thumb = page.locator("#review tbody tr").first.locator("img.thumb")
    assert thumb.get_attribute("loading") == "lazy"
    assert thumb.get_attribute("src") == f"/api/v1/media/{rows.first.get_attribute('data-item-id')}"
    assert (
        page.evaluate(
            "() => document.querySelector('#review img.thumb').getBoundingClientRect().width"
        )
        <= 80
    )
    ids = [rows.nth(i).get_attribute("data-item-id") for i in range(4)]
    labels = [rows.nth(i).locator("td").nth(2).inner_text() for i in range(4)]
    # The first row has focus when the page loads, and the focus ring shows.
    page.wait_for_function("(id) => document.activeElement.dataset.itemId === id", arg=ids[0])
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("j")
    assert _focused_item(page) == ids[1]
    page.keyboard.press("k")
    assert _focused_item(page) == ids[0]
    page.keyboard.press(labels[0])  # digit classes: the class key is the class itself
    page.wait_for_selector(f"#review tbody tr[data-item-id='{ids[0]}'].reviewed")
    assert _focused_item(page) == ids[1]  # a decision moves on to the next row
    page.keyboard.press("ArrowDown")
    assert _focused_item(page) == ids[2]
    page.keyboard.press("x")
    page.wait_for_selector(f"#review tbody tr[data-item-id='{ids[2]}'].reviewed")
    decided = wait_for(
        lambda: len(rows := labels_of(image_project, "boss")) >= 2 and rows, "2 reviews"
    )
    assert [(str(r.item_id), r.label, r.status, r.strategy) for r in decided] == [
        (ids[0], labels[0], "verified", "review"),
        (ids[2], labels[2], "rejected", "review"),
    ]
    assert rows.nth(1).get_attribute("class") in (None, "")  # skipped over, not decided
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="visible")
    assert "reject the row's label" in page.inner_text("#help")
    page.keyboard.press("?")
    page.wait_for_selector("#help", state="hidden")


def test_review_shows_text_items_escaped_and_clipped(
    page: Any, text_url: str, text_project: Path
) -> None:
    _api_login(page, text_url, "xssrev")
    page.goto(f"{text_url}/review")
    row = page.locator("#review tbody tr").first
    row.wait_for()
    summary = row.locator("details summary")
    clipped = summary.inner_text()
    assert clipped.startswith(XSS) and clipped.endswith("…")  # shown literally, clipped
    full = row.locator("details .full")
    assert not full.is_visible()
    summary.focus()
    page.keyboard.press("Enter")  # a summary opens with the keyboard too
    full.wait_for(state="visible")
    assert full.inner_text().startswith(XSS) and full.inner_text().rstrip().endswith("of words")
    assert len(full.inner_text()) > len(clipped)
    # Nothing was parsed as markup: no injected image or script element exists.
    assert page.locator("img[src=x], main script, #review img").count() == 0


# -- a stream project's feed ------------------------------------------------------------------


def _shown_text(page: Any, expected: str, timeout_s: float = TIMEOUT_S) -> None:
    """Wait until the page shows the text item ``expected``."""
    page.wait_for_function(
        """(want) => {
            const t = document.getElementById('text');
            return t && !t.hidden && t.textContent === want;
        }""",
        arg=expected,
        timeout=timeout_s * 1000,
    )


def _waiting(page: Any) -> None:
    page.wait_for_function(
        """() => {
            const m = document.getElementById('message').textContent;
            return m.includes('Waiting for the stream') && document.getElementById('text').hidden;
        }"""
    )
    assert "queue is empty" not in page.inner_text("#message")


def test_stream_feed_waits_shows_arrivals_and_brings_a_skip_back(page: Any, tmp_path: Path) -> None:
    """A stream project's page is a feed from the start: it waits (never "queue is
    empty"), shows asked items as they arrive without a reload, and a skipped item comes
    back after ``skip_requeue_after`` = 1 other item."""
    from exemplar.project.stream import StreamItemIn, submit_items

    root = tmp_path / "feed"
    with Project.init(
        root,
        ["0", "1"],
        name="feed",
        oracle={"kind": "human"},
        stream={"enabled": True, "manager": "random", "budget": 1.0, "skip_requeue_after": 1},
    ) as project:
        add_user(project.db, "feed", "annotator", PASSWORD)

    def arrive(*texts: str) -> None:
        with Project.open(root) as project:
            decided = submit_items(project, [StreamItemIn(text=t) for t in texts])
        assert all(d.asked for d in decided)

    for base in _serve(root):
        login(page, base, "feed")
        page.wait_for_url(f"{base}/label")
        _waiting(page)
        arrive("alpha")
        _shown_text(page, "alpha", timeout_s=6.0)  # polled in, no reload
        arrive("bravo", "charlie")
        page.keyboard.press("s")
        _shown_text(page, "bravo")
        page.keyboard.press("0")
        _shown_text(page, "alpha")  # the skipped item, before charlie
        page.keyboard.press("1")
        _shown_text(page, "charlie")
        page.keyboard.press("0")
        rows = wait_labels(root, "feed", 3)
        _waiting(page)
    with Project.open(root) as project, project.db.read() as s:
        assert len(s.scalars(select(Item.id)).all()) == 3
    assert [r.label for r in rows] == ["0", "1", "0"]
    assert len({r.item_id for r in rows}) == 3
