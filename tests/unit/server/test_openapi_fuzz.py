"""Fuzz the JSON API from its own OpenAPI spec (schemathesis): no input may cause a 5xx.

Every operation in ``/api/v1/openapi.json`` gets generated requests (valid and invalid
bodies, paths and queries) sent in-process to the ASGI app as an admin with a bearer
token, over a project with a queued batch. Besides the generated requests, every path id,
integer query and numeric body field gets the explicit hostile values that once crashed
the server (:data:`HOSTILE_IDS`, :data:`HOSTILE_NUMBERS`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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


#: Inputs that crashed the server (issue 10, defect 4): ids beyond 64 bits or written with
#: non-ASCII digits (``int("²")`` fails, ``int("٣")`` is 3), and non-finite numbers, which
#: pydantic's JSON parser accepts and strict JSON cannot echo back in a 422.
HOSTILE_IDS = ("99999999999999999999999999", "²", "٣", "-1", "1e3", "0x1", " 1")
HOSTILE_NUMBERS = (float("nan"), float("inf"), -float("inf"), 1e308, 10**26)


def _numeric(schema: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether a JSON schema (or one branch of it) is an integer or a number."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    branches = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any(b.get("type") in ("integer", "number") for b in branches)


def _hostile_cases(
    operation: schemathesis.APIOperation, spec: dict[str, Any]
) -> Iterator[schemathesis.Case]:
    """Explicit cases: each hostile id in each path parameter and integer query parameter,
    each hostile number in each numeric body field."""
    method = operation.method.lower()
    definition = spec["paths"][operation.path][method]
    params = definition.get("parameters", [])
    path_names = [p["name"] for p in params if p["in"] == "path"]
    for value in HOSTILE_IDS:
        if path_names:
            yield operation.Case(path_parameters=dict.fromkeys(path_names, value))
        for p in params:
            if p["in"] == "query" and _numeric(p.get("schema", {}), spec):
                ids = dict.fromkeys(path_names, "1")
                yield operation.Case(path_parameters=ids, query={p["name"]: value})
    body = definition.get("requestBody", {}).get("content", {}).get("application/json")
    if body is None:
        return
    schema = body["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    fields = [k for k, v in schema.get("properties", {}).items() if _numeric(v, spec)]
    for name in fields:
        for number in HOSTILE_NUMBERS:
            yield operation.Case(
                path_parameters=dict.fromkeys(path_names, "1"),
                # Raw JSON text: NaN and Infinity as Python's json writes them (schemathesis
                # would refuse to serialize them).
                body=json.dumps(
                    {**dict.fromkeys(schema.get("required", []), "x"), name: number}
                ).encode(),
                media_type="application/json",
            )


def test_no_server_error_on_hostile_ids_and_numbers(
    api_schema: schemathesis.BaseSchema, fuzz_app: tuple[FastAPI, str]
) -> None:
    app, token = fuzz_app
    spec = app.openapi()
    failures: list[str] = []
    count = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for case in _hostile_cases(operation, spec):
            count += 1
            try:
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
                )
            except Exception as exc:  # noqa: BLE001 - any crash or check failure: report all
                failures.append(
                    f"{operation.label} {case.path_parameters} {case.query} {case.body!r}: {exc}"
                )
    assert count >= 20
    assert not failures, "\n\n".join(failures)
