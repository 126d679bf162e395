"""Fixtures and helpers of the server tests: a human-oracle project with a queued batch.

Not a `conftest.py`: a second module named `conftest` would shadow tests/conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exemplar.project import Project
from exemplar.server import create_app
from exemplar.server.deps import CSRF_HEADER
from exemplar.store.accounts import add_user
from loop_helpers import make_project

PASSWORD = "correct horse battery"


@dataclass
class Served:
    """A project folder and its app."""

    root: Path
    client: TestClient

    def login(self, name: str, password: str = PASSWORD) -> TestClient:
        """Log ``client`` in with JSON and send the CSRF header from then on."""
        response = self.client.post("/api/v1/session", json={"name": name, "password": password})
        assert response.status_code == 200, response.text
        self.client.headers[CSRF_HEADER] = response.json()["csrf"]
        return self.client


def build_project(root: Path, database_url: str = "") -> Path:
    """Create at ``root`` a project whose first cycle waits for human labels, with 3 users."""
    with make_project(root, database_url=database_url, oracle="human", n=200) as project:
        outcome = project.run()
        assert "waits" in str(outcome) or project.status()["queue"]["pending"] == 20
        for name, role in (("ann", "annotator"), ("rev", "reviewer"), ("boss", "admin")):
            add_user(project.db, name, role, PASSWORD)
    return root


@pytest.fixture
def project_root(tmp_path: Path, database_url: str) -> Path:
    """A project whose first cycle (20 random items) waits for human labels, with 3 users.

    On SQLite and on PostgreSQL (the ``database_url`` fixture of tests/conftest.py).
    """
    return build_project(tmp_path / "proj", database_url)


@pytest.fixture
def served(project_root: Path) -> Iterator[Served]:
    """The app over ``project_root`` behind a TestClient."""
    with TestClient(create_app(project_root), base_url="http://127.0.0.1") as client:
        yield Served(project_root, client)


def ground_truth(root: Path, item_id: int) -> str:
    """The ground-truth class of an item (the digits project carries it)."""
    from exemplar.store.schema import Item

    with Project.open(root) as project, project.db.read() as s:
        value = s.get_one(Item, item_id).ground_truth
    assert value is not None
    return value


def until(check: Callable[[], Any], timeout: float) -> Any:
    """The first truthy ``check()``, polled every 0.1 s; AssertionError after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")
