"""The HTTP API through FastAPI's TestClient: every endpoint, and every kind of error."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from whyrec.bundle import Bundle
from whyrec.engine import Engine
from whyrec.serve.app import create_app
from whyrec.serve.service import Service, ServiceConfig
from whyrec.store import open_store, read_feedback

KEY = "test-key-123"


@pytest.fixture(scope="module")
def engine(served_bundle):
    return Engine(Bundle.load(served_bundle))


@pytest.fixture(scope="module")
def service(engine, tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("api") / "store.sqlite"))
    yield Service(engine, store)
    store.close()


def make_client(service, **settings) -> TestClient:
    config = ServiceConfig(bundle=service.engine.bundle, **settings)
    return TestClient(create_app(service, config), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(service):
    return make_client(service, rate_limit=0)


@pytest.fixture(scope="module")
def keyed(service):
    return make_client(service, api_keys=[KEY], rate_limit=0)


def _session(client, **headers):
    created = client.post("/v1/sessions", json={}, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    return body["session_id"], {"Authorization": f"Bearer {body['token']}"}


def _error(response, status: int, contains: str = "") -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert contains.lower() in message.lower(), message
    assert "Traceback" not in response.text
    return message


# ----- recommend / explain / search --------------------------------------------------
def test_recommend_for_a_user_matches_the_library(client, engine):
    response = client.post("/v1/recommend", json={"user_id": "1", "k": 5})
    assert response.status_code == 200
    items = response.json()["items"]
    expected = engine.recommend(engine.user_history("1"), k=5, user_id="1", explain=False)
    assert [i["item_id"] for i in items] == [r.item_id for r in expected]
    first = items[0]
    assert {"item_id", "title", "score", "explanation", "year", "attributes"} <= set(first)
    assert first["explanation"]["text"].startswith("Because you liked")
    assert first["because"] and first["attributes"]["genres"]


def test_recommend_for_a_history_with_filters(client, engine):
    body = {
        "history": ["Toy Story", "Finding Nemo (2003)"],
        "k": 4,
        "filters": {"include": {"genres": ["Animation"]}, "year_min": 1990},
        "explain": False,
    }
    items = client.post("/v1/recommend", json=body).json()["items"]
    assert len(items) == 4 and all(i.get("explanation") is None for i in items)
    for item in items:
        assert "Animation" in item["attributes"]["genres"] and item["year"] >= 1990
    assert not {"Toy Story (1995)", "Finding Nemo (2003)"} & {i["title"] for i in items}


def test_recommend_for_a_description(client, engine):
    """A free-text query alone, or with a history; filters hold as for any request."""
    body = {"query": "an animated film about toys", "k": 5, "explain": False}
    items = client.post("/v1/recommend", json=body).json()["items"]
    assert len(items) == 5
    direct = engine.recommend(np.zeros(0, dtype=np.int64), k=5, explain=False, text=body["query"])
    assert [i["item_id"] for i in items] == [r.item_id for r in direct]
    assert sum("Animation" in i["attributes"]["genres"] for i in items) >= 3
    explained = client.post("/v1/recommend", json={**body, "explain": True}).json()["items"]
    assert [i["item_id"] for i in explained] == [i["item_id"] for i in items]
    for item in explained:  # the description's terms, which add up to the score
        evidence = item["explanation"]
        assert evidence["description"]["text"] == body["query"]
        terms = evidence["terms"]
        assert sum(terms.values()) == pytest.approx(item["score"], rel=1e-4, abs=1e-3)
        assert evidence["text"].startswith('It fits "an animated film about toys"')
    filtered = {**body, "filters": {"exclude": {"genres": ["Animation"]}}, "user_id": "1"}
    items = client.post("/v1/recommend", json=filtered).json()["items"]
    assert items and all("Animation" not in i["attributes"]["genres"] for i in items)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"k": 5}, 422, "exactly one of user_id or history"),
        ({"query": "  "}, 422, "query"),
        ({"user_id": "1", "history": ["1"]}, 422, "exactly one"),
        ({"user_id": "1", "k": 0}, 422, "k: input should be greater than or equal to 1"),
        ({"user_id": "1", "k": 101}, 422, "k: input should be less"),
        ({"user_id": "1", "colour": "red"}, 422, "colour: extra inputs"),
        ({"history": []}, 422, "history"),
        ({"user_id": "1", "filters": {"year_min": None}}, 422, "year_min"),
        ({"user_id": "no-such-user"}, 404, "unknown user"),
        ({"history": ["Qwzxv Plorkt"]}, 404, "no item titled"),
        ({"user_id": "1", "filters": {"include": {"colour": ["red"]}}}, 400, "unknown attribute"),
        ({"user_id": "1", "filters": {"include": {"genres": ["Comdy"]}}}, 400, "did you mean"),
    ],
)
def test_recommend_errors_are_clear(client, body, status, message):
    _error(client.post("/v1/recommend", json=body), status, message)


def test_malformed_json_is_a_422(client):
    response = client.post(
        "/v1/recommend", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    _error(response, 422, "json")


def test_explain_why_and_why_not(client):
    inside = client.post("/v1/recommend", json={"user_id": "1", "k": 3}).json()["items"][0]
    why = client.post("/v1/explain", json={"user_id": "1", "item_id": inside["item_id"]}).json()
    assert why["explanation"]["recommended"] and why["item"]["item_id"] == inside["item_id"]
    why_not = client.post("/v1/explain", json={"user_id": "1", "item_id": "Finding Nemo"}).json()
    assert not why_not["explanation"]["recommended"]
    assert "below the top 10" in why_not["explanation"]["text"]
    _error(client.post("/v1/explain", json={"user_id": "1", "item_id": "1"}), 409, "already in")
    _error(client.post("/v1/explain", json={"user_id": "1", "item_id": "Qwzxv"}), 404, "no item")
    _error(client.post("/v1/explain", json={"user_id": "1"}), 422, "item_id: field required")


def test_search(client):
    titles = [i["title"] for i in client.get("/v1/items/search?q=matrx&limit=3").json()["items"]]
    assert titles[0] == "Matrix, The (1999)" and len(titles) == 3
    _error(client.get("/v1/items/search?q="), 422, "q:")
    _error(client.get("/v1/items/search?q=x&limit=500"), 422, "limit")
    _error(client.get("/v1/items/search"), 422, "q: field required")


# ----- sessions ---------------------------------------------------------------------
def test_a_conversation_with_a_reaction(client, service):
    session_id, auth = _session(client)
    url = f"/v1/sessions/{session_id}/messages"
    turn = client.post(url, json={"text": "a funny animated film like Toy Story"}, headers=auth)
    assert turn.status_code == 200, turn.text
    first = turn.json()
    assert first["turn"] == 1 and first["items"] and "attributes" in first["items"][0]
    liked = first["items"][0]["item_id"]
    reacted = client.post(url, json={"reaction": {"item_id": liked, "liked": True}}, headers=auth)
    assert reacted.status_code == 200 and "Noted: you like" in reacted.json()["reply"]
    assert liked not in [i["item_id"] for i in reacted.json()["items"]]
    view = client.get(f"/v1/sessions/{session_id}", headers=auth).json()
    assert view["turn"] == 2 and [m["role"] for m in view["messages"]] == ["user", "assistant"] * 2
    assert view["messages"][1]["items"][0]["item_id"] == liked
    assert view["messages"][2]["reaction"] == {"item_id": liked, "liked": True}
    stored = [e for e in read_feedback(service.store) if e.session_id == session_id]
    assert [(e.item_id, e.kind) for e in stored] == [(liked, "like")]


def test_session_for_a_known_user(client, service):
    created = client.post("/v1/sessions", json={"user_id": "1"})
    assert created.status_code == 201
    # the greeting's example is worded from this catalog's own values, and understood
    body = created.json()
    example = body["greeting"].split("'")[1]
    named = {c.words for c in service.conversation.space.columns if c.kind != "range"}
    assert example.removeprefix("something ") in named
    auth = {"Authorization": f"Bearer {body['token']}"}
    url = f"/v1/sessions/{body['session_id']}/messages"
    assert client.post(url, json={"text": example}, headers=auth).json()["items"]
    _error(client.post("/v1/sessions", json={"user_id": "nobody"}), 404, "unknown user")


def test_sessions_are_private(client):
    mine, my_auth = _session(client)
    theirs, their_auth = _session(client)
    for session_id, auth in ((mine, my_auth), (theirs, their_auth)):  # tokens now remembered
        assert client.get(f"/v1/sessions/{session_id}", headers=auth).status_code == 200
    _error(client.get(f"/v1/sessions/{mine}"), 401, "token")
    _error(client.get(f"/v1/sessions/{mine}", headers=their_auth), 401, "token")
    _error(
        client.get(f"/v1/sessions/{mine}", headers={"Authorization": "Basic abc"}),
        401,
        "Bearer",
    )
    _error(
        client.post(f"/v1/sessions/{theirs}/messages", json={"text": "hi"}, headers=my_auth), 401
    )
    _error(client.get("/v1/sessions/unknown0", headers=my_auth), 401)
    _error(client.get("/v1/sessions/bad id!", headers=my_auth), 422, "session_id")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "exactly one of text or reaction"),
        ({"text": "   "}, 422, "blank"),
        ({"text": "x" * 2001}, 422, "at most 2000"),
        ({"text": "hi", "reaction": {"item_id": "1", "liked": True}}, 422, "exactly one"),
        ({"reaction": {"item_id": "no-such-item", "liked": True}}, 404, "unknown item id"),
        ({"reaction": {"item_id": "1"}}, 422, "liked: field required"),
    ],
)
def test_message_errors(client, body, status, message):
    session_id, auth = _session(client)
    _error(
        client.post(f"/v1/sessions/{session_id}/messages", json=body, headers=auth), status, message
    )


def test_concurrent_turns_on_one_session_are_serialized(client):
    session_id, auth = _session(client)
    url = f"/v1/sessions/{session_id}/messages"
    statuses = []

    def talk(text):
        statuses.append(client.post(url, json={"text": text}, headers=auth).status_code)

    threads = [threading.Thread(target=talk, args=(t,)) for t in ("comedies", "from the 90s", "hi")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200, 200, 200]
    view = client.get(f"/v1/sessions/{session_id}", headers=auth).json()
    assert view["turn"] == 3 and sorted(m["turn"] for m in view["messages"]) == [1, 1, 2, 2, 3, 3]


# ----- feedback ------------------------------------------------------------------------
def test_feedback_is_stored(keyed, service):
    before = len(read_feedback(service.store))
    events = [
        {"item_id": "1", "user_id": "42", "kind": "interaction", "timestamp": 1_700_000_000},
        {"item_id": "50", "user_id": "42", "kind": "rating", "rating": 4.5},
    ]
    response = keyed.post("/v1/feedback", json={"events": events}, headers={"X-API-Key": KEY})
    assert response.status_code == 201 and response.json()["accepted"] == 2
    stored = read_feedback(service.store)[before:]
    assert [(e.item_id, e.kind, e.rating) for e in stored] == [
        ("1", "interaction", None),
        ("50", "rating", 4.5),
    ]
    assert stored[0].timestamp == 1_700_000_000 and stored[0].source.startswith("key:")


def test_feedback_with_a_session_token_only_for_that_session(keyed, service):
    session_id, auth = _session(keyed, **{"X-API-Key": KEY})
    own = {"events": [{"item_id": "1", "session_id": session_id, "kind": "like"}]}
    assert keyed.post("/v1/feedback", json=own, headers=auth).status_code == 201
    other = {"events": [{"item_id": "1", "session_id": "someone-else", "kind": "like"}]}
    _error(keyed.post("/v1/feedback", json=other, headers=auth), 401, "feedback needs")
    as_user = {"events": [{"item_id": "1", "session_id": session_id, "user_id": "7"}]}
    _error(keyed.post("/v1/feedback", json=as_user, headers=auth), 401)
    _error(keyed.post("/v1/feedback", json=own), 401)


@pytest.mark.parametrize(
    ("events", "status", "message"),
    [
        ([], 422, "at least 1"),
        ([{"item_id": "1", "user_id": "1", "kind": "purchase"}], 422, "kind"),
        ([{"item_id": "1", "user_id": "1", "kind": "rating"}], 422, "needs a rating"),
        ([{"item_id": "1"}], 422, "user_id or a session_id"),
        ([{"item_id": "1", "user_id": "1", "timestamp": -5}], 422, "timestamp"),
        ([{"item_id": "nope", "user_id": "1"}], 404, "unknown item ids: nope"),
        ([{"item_id": "1", "user_id": "1"}] * 1001, 422, "at most 1000"),
    ],
)
def test_feedback_errors_store_nothing(client, service, events, status, message):
    before = len(read_feedback(service.store))
    _error(client.post("/v1/feedback", json={"events": events}), status, message)
    assert len(read_feedback(service.store)) == before


# ----- keys, limits, errors --------------------------------------------------------------
def test_api_keys(keyed):
    body = {"user_id": "1", "k": 2}
    _error(keyed.post("/v1/recommend", json=body), 401, "X-API-Key")
    _error(keyed.post("/v1/recommend", json=body, headers={"X-API-Key": "wrong"}), 401, "unknown")
    assert keyed.post("/v1/recommend", json=body, headers={"X-API-Key": KEY}).status_code == 200
    _error(keyed.post("/v1/sessions", json={}), 401)
    session_id, auth = _session(keyed, **{"X-API-Key": KEY})
    assert keyed.get(f"/v1/sessions/{session_id}", headers=auth).status_code == 200
    assert keyed.get(f"/v1/sessions/{session_id}", headers={"X-API-Key": KEY}).status_code == 200
    assert keyed.get("/healthz").status_code == 200


def test_keys_come_from_the_environment(monkeypatch):
    from whyrec.serve.security import api_keys_from

    monkeypatch.setenv("WHYREC_API_KEYS", "a, b,,c")
    assert api_keys_from(None) == ["a", "b", "c"]
    assert api_keys_from(["flag"]) == ["flag"]


def test_rate_limit_per_caller(service):
    limited = make_client(service, rate_limit=1, rate_burst=3)
    codes = [limited.get("/v1/items/search?q=heat").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    response = limited.get("/v1/items/search?q=heat")
    _error(response, 429, "rate limit")
    assert int(response.headers["Retry-After"]) >= 1
    _, auth = _session(make_client(service, rate_limit=0))
    assert limited.get("/v1/items/search?q=heat", headers=auth).status_code == 200  # own bucket
    assert "whyrec_rate_limited_total 3.0" in limited.get("/metrics").text


def test_body_size_limit(service):
    small = make_client(service, max_body_bytes=2048, rate_limit=0)
    big = {"history": ["Toy Story"] * 400}
    _error(small.post("/v1/recommend", json=big), 413, "over 2048 bytes")

    def chunks():
        yield b'{"history": ['
        for _ in range(300):
            yield b'"Toy Story",'
        yield b'"Heat"]}'

    streamed = small.post(
        "/v1/recommend", content=chunks(), headers={"Content-Type": "application/json"}
    )
    _error(streamed, 413)


def test_crashes_say_nothing_of_the_internals(service, monkeypatch):
    client = make_client(service, rate_limit=0)

    def broken(request):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "recommend", broken)
    response = client.post("/v1/recommend", json={"user_id": "1"})
    message = _error(response, 500, "internal error (request id")
    assert "secret" not in response.text and "RuntimeError" not in message


def test_cors_only_for_configured_origins(service):
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    open_cors = make_client(service, cors_origins=["https://shop.example"])
    allowed = open_cors.options("/v1/recommend", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    plain = make_client(service)
    assert (
        "access-control-allow-origin"
        not in plain.options("/v1/recommend", headers=preflight).headers
    )


# ----- operations and the page ---------------------------------------------------------
def test_healthz_metrics_openapi_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["store"] == "sqlite" and health["items"] > 0
    client.post("/v1/recommend", json={"user_id": "1", "k": 2})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'whyrec_http_requests_total{method="POST",route="/v1/recommend",status="200"}' in text
    assert 'whyrec_http_request_duration_seconds_bucket{le="0.05",route="/v1/recommend"}' in text
    assert 'whyrec_store_rows{table="sessions"}' in text
    spec = client.get("/openapi.json").json()
    assert {
        "/v1/recommend",
        "/v1/explain",
        "/v1/sessions",
        "/v1/sessions/{session_id}/messages",
        "/v1/sessions/{session_id}",
        "/v1/items/search",
        "/v1/feedback",
        "/healthz",
        "/metrics",
    } <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert client.get("/static/app.js").status_code == 200
    _error(client.get("/nowhere"), 404)


def test_healthz_reports_a_dead_database(engine, tmp_path):
    store = open_store(str(tmp_path / "dead.sqlite"))
    service = Service(engine, store, warm_up=False)
    client = make_client(service)
    store.close()
    _error(client.get("/healthz"), 503, "database")


def test_feedback_folds_into_recommendations_and_survives_a_restart(served_bundle, tmp_path):
    path = str(tmp_path / "fold.sqlite")
    store = open_store(path)
    service = Service(Engine(Bundle.load(served_bundle)), store, warm_up=False)
    client = make_client(service, rate_limit=0)
    user = str(service.engine.bundle.train.user_ids[0])
    first = client.post("/v1/recommend", json={"user_id": user, "k": 5}).json()["items"][0]
    events = [{"item_id": first["item_id"], "user_id": user, "kind": "interaction"}]
    assert client.post("/v1/feedback", json={"events": events}).status_code == 201
    after = client.post("/v1/recommend", json={"user_id": user, "k": 5}).json()["items"]
    assert first["item_id"] not in [i["item_id"] for i in after]  # now seen: never shown
    store.close()

    restarted = Service(Engine(Bundle.load(served_bundle)), open_store(path), warm_up=False)
    again = make_client(restarted, rate_limit=0)
    items = again.post("/v1/recommend", json={"user_id": user, "k": 5}).json()["items"]
    assert [i["item_id"] for i in items] == [i["item_id"] for i in after]
    dislike = [{"item_id": items[0]["item_id"], "user_id": user, "kind": "dislike"}]
    assert again.post("/v1/feedback", json={"events": dislike}).status_code == 201
    assert restarted.engine.user_history(user)[-1] == restarted.catalog.position(first["item_id"])
    restarted.store.close()


def test_recommend_answers_are_cached_until_the_history_changes(served_bundle, tmp_path):
    store = open_store(str(tmp_path / "cache.sqlite"))
    service = Service(Engine(Bundle.load(served_bundle)), store, warm_up=False, cache_size=8)
    client = make_client(service, rate_limit=0)
    user = str(service.engine.bundle.train.user_ids[1])
    first = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()
    again = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()
    assert first == again and (service.answers.hits, service.answers.misses) == (1, 1)
    events = [{"item_id": first["items"][0]["item_id"], "user_id": user}]
    assert client.post("/v1/feedback", json={"events": events}).status_code == 201
    changed = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()
    assert changed != first and service.answers.misses == 2  # new history, new answer
    assert 'whyrec_recommend_cache_total{outcome="hit"} 1.0' in client.get("/metrics").text
    for k in range(1, 12):  # more distinct requests than the cache holds
        client.post("/v1/recommend", json={"user_id": user, "k": k})
    assert len(service.answers._entries) == 8
    store.close()
