"""Fuzz the JSON API from its own OpenAPI spec (schemathesis): no input may cause a 5xx.

Every operation in ``/api/v1/openapi.json`` gets generated requests (valid and invalid
bodies, paths and queries) sent in-process to the ASGI app as an admin with a bearer
token, over a project with a queued batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from server_helpers import PASSWORD, build_project

from exemplar.server import create_app
from exemplar.store.accounts import add_user, create_token


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    """The app over a project with a queued batch, and an admin's bearer token."""
    root = build_project(tmp_path_factory.mktemp("fuzz") / "proj")
    app = create_app(root)
    project = app.state.exemplar.project
    admin = add_user(project.db, "fuzzer", "admin", PASSWORD)
    token = create_token(project.db, admin.id, "fuzz")
    yield app, token
    project.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app: tuple[FastAPI, str]) -> schemathesis.BaseSchema:
    app, _ = fuzz_app
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, token: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
        )

    run()


def test_no_server_error(
    api_schema: schemathesis.BaseSchema, fuzz_app: tuple[FastAPI, str]
) -> None:
    _, token = fuzz_app
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), f"invalid operation in the spec: {result.err()}"
        operations.append(result.ok())
    assert len(operations) >= 10, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, token)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                continue
            except Exception as exc:  # noqa: BLE001 - any crash or check failure: report all
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
