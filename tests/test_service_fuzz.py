"""Fuzz the API from its own OpenAPI spec (schemathesis): no input may cause a 500.

A bounded number of examples per operation keeps this under a minute. Session routes are
called on a real session with its token, so their bodies reach the conversation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from whyrec.bundle import Bundle
from whyrec.engine import Engine
from whyrec.serve.app import create_app
from whyrec.serve.service import Service, ServiceConfig
from whyrec.store import open_store

EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzzed(served_bundle, tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("fuzz") / "store.sqlite"))
    service = Service(Engine(Bundle.load(served_bundle)), store)
    app = create_app(service, ServiceConfig(bundle=served_bundle, rate_limit=0))
    session = service.start_session(None)
    yield schemathesis.openapi.from_asgi("/openapi.json", app), session
    store.close()


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    return fuzzed[0]


@pytest.fixture(scope="module")
def real_session(fuzzed):
    return fuzzed[1]


def test_no_input_crashes_the_server(api_schema, real_session):
    """Every operation, EXAMPLES generated requests each (schemathesis' own pytest plugin
    does not run under this pytest, so hypothesis drives its strategies directly)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case):
            _check(case, real_session)

        call()


def _check(case, session) -> None:
    if case.path_parameters and "session_id" in case.path_parameters:
        case.path_parameters["session_id"] = session["session_id"]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {session['token']}"}
    response = case.call()
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where}: {response.text}"
    if response.status_code >= 400:
        assert response.json()["error"]["message"], where
