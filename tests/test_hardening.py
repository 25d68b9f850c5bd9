"""Sessions and feedback mean what they say; what a careless or hostile client sends is
refused in one line, or bounded.

One test per hardening rule: sessions across catalogs, the positive-rating threshold,
strict JSON, one parameter syntax, SQLite URLs, per-key rate limits, bounded fuzzy work
and no user ids in error messages.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cli_helpers import exit_code, run
from whyrec.bundle import Bundle
from whyrec.conversation import Conversation
from whyrec.data.dataset import Dataset
from whyrec.data.loaders import load_dataset
from whyrec.engine import MAX_INEXACT_TITLES, Engine
from whyrec.errors import WhyrecError
from whyrec.models import EASE
from whyrec.serve.app import create_app
from whyrec.serve.security import KeyRing, SharedRateLimiter, parse_key
from whyrec.serve.service import Service, ServiceConfig
from whyrec.store import open_store


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A small synthetic dataset with ratings (and its folder)."""
    folder = tmp_path_factory.mktemp("synth") / "data"
    assert exit_code(["data", "synth", "--users", "120", "--items", "60", "--interactions",
                      "2400", "--out", str(folder)]) == 0  # fmt: skip
    return folder, load_dataset(folder)


def _engine(dataset: Dataset, info: dict | None = None) -> Engine:
    return Engine(Bundle(EASE(reg=50.0).fit(dataset), dataset, info=info or {}))


# ----- 1. a session resumed under another catalog ----------------------------------------
def _catalog_variant(dataset: Dataset, order: np.ndarray) -> Dataset:
    """The same interactions over the catalog's items in another order (a subset drops)."""
    catalog = dataset.catalog.subset(order)
    kept = set(catalog.item_ids)
    frame = dataset.interactions[dataset.interactions["item_id"].astype(str).isin(kept)]
    return Dataset(frame.reset_index(drop=True), catalog, name=dataset.name)


def test_a_session_is_remapped_by_item_id_or_refused(synth, tmp_path):
    _, dataset = synth
    store = open_store(str(tmp_path / "sessions.sqlite"))
    first = Conversation(_engine(dataset), store=store, wish_scorer=None)
    session = first.start(str(dataset.user_ids[0]))
    liked = [3, 7]
    for position in liked:
        session.react(position, liked=True)
    liked_ids = [dataset.catalog.item_ids[p] for p in liked]
    history_ids = [dataset.catalog.item_ids[p] for p in session.state.history]

    # the same items in reverse order: positions move, the meaning must not
    n = len(dataset.catalog)
    reordered = _catalog_variant(dataset, np.arange(n)[::-1].copy())
    second = Conversation(_engine(reordered), store=store, wish_scorer=None)
    resumed = second.resume(session.id)
    catalog = reordered.catalog
    assert [catalog.item_ids[p] for p in resumed.state.liked] == liked_ids
    assert [catalog.item_ids[p] for p in resumed.state.history] == history_ids
    resumed.send("more like the first one")  # and it goes on under the new catalog

    # a catalog without one of the liked items: refused in one line, not misread
    smaller = _catalog_variant(dataset, np.array([p for p in range(n) if p != 7]))
    third = Conversation(_engine(smaller), store=store, wish_scorer=None)
    with pytest.raises(WhyrecError, match="another catalog") as refused:
        third.resume(session.id)
    assert "\n" not in str(refused.value) and liked_ids[1] in str(refused.value)
    store.close()


# ----- 2. feedback below the positive threshold is seen, never liked ------------------------
def test_the_positive_threshold_is_min_rating_else_the_middle_of_the_scale(synth):
    _, dataset = synth
    ratings = dataset.interactions["rating"].to_numpy()
    middle = (np.nanmin(ratings) + np.nanmax(ratings)) / 2
    assert _engine(dataset).positive_threshold == pytest.approx(middle)
    assert _engine(dataset, {"min_rating": 4.0}).positive_threshold == 4.0


def test_a_low_rating_marks_seen_and_never_liked(synth, tmp_path):
    _, dataset = synth
    engine = _engine(dataset)
    service = Service(engine, open_store(str(tmp_path / "fb.sqlite")), warm_up=False)
    client = TestClient(create_app(service, ServiceConfig(bundle=tmp_path, rate_limit=0)))
    user = str(dataset.user_ids[0])
    before = list(engine.user_history(user))
    top = client.post("/v1/recommend", json={"user_id": user, "k": 3}).json()["items"]
    low, high = top[0]["item_id"], top[1]["item_id"]
    low_rating = float(np.nanmin(dataset.interactions["rating"]))
    events = [
        {"item_id": low, "user_id": user, "kind": "rating", "rating": low_rating},
        {"item_id": high, "user_id": user, "kind": "rating", "rating": 5.0},
    ]
    assert client.post("/v1/feedback", json={"events": events}).status_code == 201
    history = list(engine.user_history(user))
    assert history == [*before, engine.catalog.position(high)]  # only the high one is liked
    after = client.post("/v1/recommend", json={"user_id": user, "k": 10}).json()["items"]
    shown = [item["item_id"] for item in after]
    assert low not in shown and high not in shown  # both seen: neither recommended again
    cited = {c["item_id"] for item in after for c in item["because"]}
    cited |= {c["item_id"] for item in after for c in item["explanation"]["history"]}
    assert low not in cited and high in cited  # explanations cite the like, not the dislike
    service.close()


# ----- 5. strict JSON ------------------------------------------------------------------------
def test_explain_eval_json_is_strict_even_when_a_measure_is_undefined(synth, tmp_path, monkeypatch):
    import whyrec.explain.fidelity as fidelity

    real = fidelity.explanation_fidelity

    def with_undefined(*args, **kwargs):
        result = real(*args, **kwargs)
        result["pn@5"] = float("nan")
        return result

    monkeypatch.setattr(fidelity, "explanation_fidelity", with_undefined)
    folder, _ = synth
    out = tmp_path / "fidelity.json"
    argv = ["explain-eval", "--data", str(folder), "--model", "pop", "-k", "5", "--json", str(out)]
    assert exit_code(argv) == 0

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    result = json.loads(out.read_text(), parse_constant=refuse)
    assert result["pn@5"] is None


# ----- 6. one parameter syntax -----------------------------------------------------------------
@pytest.mark.parametrize("param", ["reg=77", "ease.reg=77"])
def test_train_takes_model_dot_name_too(synth, tmp_path, param):
    folder, _ = synth
    out = tmp_path / "bundle"
    argv = ["train", "--data", str(folder), "--model", "ease", "--param", param, "--out", str(out)]
    assert exit_code(argv) == 0
    assert Bundle.load(out).model.config.reg == 77


# ----- 7 is in test_chat_cli.py; 8. SQLite URLs ----------------------------------------------
def test_sqlite_urls_name_files_not_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///relative.sqlite").close()
    assert (tmp_path / "relative.sqlite").is_file() and not (tmp_path / "sqlite:").exists()
    absolute = tmp_path / "deep" / "absolute.sqlite"
    open_store(f"sqlite:///{absolute}").close()
    assert absolute.is_file()
    assert open_store("sqlite://").path == ":memory:"
    with pytest.raises(WhyrecError, match="unsupported database URL"):
        open_store("mysql://host/db")


# ----- 10. rate limits per key -----------------------------------------------------------------
def test_key_specs():
    assert parse_key("shop") == ("shop", None)
    assert parse_key("shop:50") == ("shop", 50.0)
    assert parse_key("a:b") == ("a:b", None)
    with pytest.raises(WhyrecError):
        parse_key("shop:-1")
    ring = KeyRing(["shop", "widget:2"])
    assert ring.lookup("shop") == (None,) and ring.lookup("widget") == (2.0,)
    assert ring.lookup("nope") is None


def test_a_key_without_a_rate_is_not_limited_and_one_with_a_rate_is(synth, tmp_path):
    _, dataset = synth
    service = Service(_engine(dataset), open_store(":memory:"), warm_up=False)
    # slow rates, so that a slow (shared, loaded) machine cannot refill a bucket mid-test
    config = ServiceConfig(
        bundle=tmp_path, api_keys=["shop", "widget:0.2"], rate_limit=0.2, rate_burst=2
    )
    client = TestClient(create_app(service, config))
    body = {"user_id": str(dataset.user_ids[0]), "k": 3, "explain": False}
    shop = [client.post("/v1/recommend", json=body, headers={"X-API-Key": "shop"})
            for _ in range(60)]  # fmt: skip
    assert {r.status_code for r in shop} == {200}  # a shop's backend is never throttled
    widget = [client.post("/v1/recommend", json=body, headers={"X-API-Key": "widget"})
              for _ in range(5)]  # fmt: skip
    assert widget[0].status_code == 200 and widget[-1].status_code == 429  # burst of 1
    assert "0.2 requests a second" in widget[-1].json()["error"]["message"]
    # a chat session (the page) keeps the default limit: burst of 2, then 429
    created = client.post("/v1/sessions", json={}, headers={"X-API-Key": "shop"}).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    views = [client.get(f"/v1/sessions/{created['session_id']}", headers=auth) for _ in range(4)]
    assert views[0].status_code == 200 and views[-1].status_code == 429


def test_per_key_rates_hold_across_worker_processes(tmp_path):
    """Two limiters over one table stand for two workers: a key's rate is shared."""
    table = tmp_path / "rates.bin"
    SharedRateLimiter.create(table)
    first, second = SharedRateLimiter(table, 20, 40), SharedRateLimiter(table, 20, 40)
    allowed = [limiter.retry_after("key:widget", 1.0) is None for limiter in (first, second) * 3]
    assert allowed[:2] == [True, True] and not any(allowed[2:])  # burst 2, then shared wait
    assert first.retry_after("ip:other") is None  # anonymous callers keep their own bucket


# ----- 11. bounded work per request; 12. no user ids in errors -------------------------------
@pytest.fixture(scope="module")
def served(served_bundle):
    service = Service(Engine(Bundle.load(served_bundle)), open_store(":memory:"), warm_up=False)
    yield TestClient(create_app(service, ServiceConfig(bundle=served_bundle, rate_limit=0)))
    service.close()


def test_hundreds_of_near_miss_titles_are_refused_at_once(served, served_bundle):
    names = [t.rsplit(" (", 1)[0] for t in Bundle.load(served_bundle).catalog.titles]
    history = [n[:4] + n[3] + n[4:] for n in names if len(n) > 12][:500]  # one letter doubled
    started = time.perf_counter()
    allowed = served.post("/v1/recommend", json={"history": history[:MAX_INEXACT_TITLES]})
    bound = time.perf_counter() - started
    assert allowed.status_code == 200, allowed.text
    started = time.perf_counter()
    answer = served.post("/v1/recommend", json={"history": history})
    refused = time.perf_counter() - started
    assert answer.status_code == 404 and f"at most {MAX_INEXACT_TITLES}" in answer.text
    # the work stops at the bound: no dearer than the largest request that is allowed
    assert refused < 1.5 * bound + 0.1, (refused, bound)
    documented = served.get("/openapi.json").json()["components"]["schemas"]
    assert f"At most {MAX_INEXACT_TITLES}" in documented["RecommendRequest"]["properties"][
        "history"
    ].get("description", "")


def test_the_unknown_user_error_names_no_real_user(served, served_bundle):
    answer = served.post("/v1/recommend", json={"user_id": "no-such-user"})
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    known = {str(u) for u in Bundle.load(served_bundle).train.user_ids}
    assert not {word.strip("(),.;'") for word in message.split()} & known, message


def test_the_cli_says_the_same_without_examples(served_bundle, capsys):
    code, _, err = run(capsys, "recommend", "--bundle", str(served_bundle), "--user", "nobody")
    assert code == 2 and "e.g." not in err
