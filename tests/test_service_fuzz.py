"""Fuzz the API from its own OpenAPI document (schemathesis): valid, invalid and stateful.

- positive cases (what the document calls valid) must never be refused as malformed:
  their status is 2xx, or one the document cannot rule out (401/403 credentials, 404 an
  unknown user or item, 409 a conflict, 429 a rate limit), never 400/413/422 and never 5xx;
- negative cases (schema violations) must never crash the server (no 5xx) and every error
  is one message;
- a stateful run follows the document's links (start a session, talk in it, read it back)
  with generated messages.

A bounded number of examples per operation and mode keeps this within about a minute;
`benchmarks/fuzz_service.py` runs the same checks with the schemathesis CLI against a
live server for ten thousand requests and more.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from whyrec.bundle import Bundle
from whyrec.engine import Engine
from whyrec.serve.app import create_app
from whyrec.serve.service import Service, ServiceConfig
from whyrec.store import open_store

EXAMPLES = 20
"""Generated requests per operation and mode."""
ACCEPTABLE_FOR_VALID = {401, 403, 404, 409, 429}
"""What a schema-valid request may get besides 2xx: the document cannot know which users,
items, tokens or session turns exist (schemathesis' own positive_data_acceptance list)."""


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


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests(api_schema, real_session, mode):
    """Every operation, EXAMPLES generated requests each (schemathesis' pytest plugin does
    not run under this pytest, so hypothesis drives its strategies directly)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @SETTINGS
        def call(case):
            statuses[_check(case, real_session, mode)] += 1

        try:
            call()
        except Unsatisfiable:  # nothing to violate (/healthz, /metrics take no input)
            assert mode is GenerationMode.NEGATIVE
            assert not (operation.body or operation.query or operation.path_parameters)
    print(f"\n{mode.value}: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    assert sum(statuses.values()) >= len(operations) * EXAMPLES // 2
    if mode is GenerationMode.NEGATIVE:
        assert statuses[422] > 0  # invalid input was generated, and refused as such


def _check(case, session, mode: GenerationMode) -> int:
    if case.path_parameters and "session_id" in case.path_parameters:
        case.path_parameters["session_id"] = session["session_id"]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {session['token']}"}
    response = case.call()
    where = f"{mode.value} {case.method} {case.formatted_path} {case.body!r:.300}"
    status = response.status_code
    assert status < 500, f"{where}: {response.text}"
    if status >= 400:
        assert response.json()["error"]["message"], where
    if mode is GenerationMode.POSITIVE:
        assert status < 400 or status in ACCEPTABLE_FOR_VALID, f"{where}: {response.text}"
    return status


def test_stateful_sessions(api_schema, fuzzed):
    """Follow the document's links by hand: start a session, send it generated messages
    with its token, read it back (every answered turn is there), and send feedback about
    it; the rules above hold for every response."""
    from hypothesis import strategies as st

    operations = {op.label: op for op in (r.ok() for r in api_schema.get_all_operations())}
    start = operations["POST /v1/sessions"]
    send = operations["POST /v1/sessions/{session_id}/messages"]
    read = operations["GET /v1/sessions/{session_id}"]
    statuses: Counter[int] = Counter()

    def checked(case) -> object:
        response = case.call()
        where = f"{case.method} {case.formatted_path} {case.body!r:.300}"
        statuses[response.status_code] += 1
        assert response.status_code < 500, f"{where}: {response.text}"
        assert response.status_code < 400 or response.status_code in ACCEPTABLE_FOR_VALID, where
        return response

    @given(data=st.data())
    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def conversation(data):
        created = checked(data.draw(start.as_strategy()))
        if created.status_code != 201:
            return  # a generated user_id nobody has: 404, nothing to follow
        opened = created.json()
        links = {
            "path_parameters": {"session_id": opened["session_id"]},
            "headers": {"Authorization": f"Bearer {opened['token']}"},
        }
        answered = 0
        for _ in range(data.draw(st.integers(1, 3))):
            turn = checked(data.draw(send.as_strategy(**links)))
            answered += turn.status_code == 200
        view = checked(data.draw(read.as_strategy(**links))).json()
        assert view["turn"] == answered
        assert len(view["messages"]) == 2 * answered

    conversation()
    print(f"\nstateful: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    assert statuses[200] > 0  # generated messages reached real sessions
