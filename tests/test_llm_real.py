"""The LLM layer against a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M.

`.ci/run` starts the server (its own throw-away environment) and exports
WHYREC_TEST_LLM_BASE_URL and WHYREC_TEST_LLM_MODEL. Without them these tests skip on a
developer's machine and fail in CI, so a broken server set-up cannot pass unnoticed.
The model is tiny and often wrong: the tests check what whyrec guarantees with a weak
real model (its requests are understood, nothing invented reaches the user, the turn
ends in time), not what the model says. They are few and short: the model runs on CPU.
"""

from __future__ import annotations

import os
import time

import pytest

from whyrec.bundle import Bundle
from whyrec.engine import Engine
from whyrec.llm import LLMConfig, open_conversation
from whyrec.models import EASE

TIMEOUT = 20.0
"""Seconds of LLM time per turn (the default budget): a turn ends within it whatever the
model does, so this bounds each test; on a busy 2-core machine the model may use only
part of the turn (the trace says which), which these tests do not judge."""
HTTP_ERRORS = ("rejected", "server_error", "rate_limited")


@pytest.fixture(scope="module")
def real_llm() -> LLMConfig:
    url = os.environ.get("WHYREC_TEST_LLM_BASE_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must run the real LLM server (.ci/run); WHYREC_TEST_LLM_BASE_URL unset")
        pytest.skip("no real LLM server (set WHYREC_TEST_LLM_BASE_URL; .ci/run starts one)")
    return LLMConfig(
        base_url=url,
        model=os.environ.get("WHYREC_TEST_LLM_MODEL", "smollm2"),
        timeout=TIMEOUT,
        max_tokens=120,
        cooldown=0,
    )


@pytest.fixture(scope="module")
def engine(ml_core):
    return Engine(Bundle(EASE(reg=200.0).fit(ml_core), ml_core))


def _http_errors(calls: list[dict]) -> list[str]:
    """4xx/5xx answers of the server: none, since it describes what it accepts."""
    return [e for c in calls for e in c.get("errors", []) if e.split(" ")[0] in HTTP_ERRORS]


def test_check_finds_llama_cpp_dialect(real_llm):
    from whyrec.llm.check import check_server

    report = check_server(real_llm)
    assert report.ok, report.to_dict()
    assert report.structured == "json_object", report.to_dict()  # llama.cpp: json_object + schema
    assert report.described.startswith("openapi.json"), report.to_dict()
    assert report.forms == {  # read from its description: json_schema is never sent
        "json_schema": "not offered by the server's description",
        "json_object": "works",
    }
    assert report.tools in ("native", "json") and report.latency is not None
    assert real_llm.model in (report.served_models or [])


def test_a_real_chat_turn_uses_the_llm_safely(engine, real_llm, tmp_path):
    from whyrec.conversation import SessionStore

    conversation = open_conversation(
        engine, store=SessionStore(tmp_path / "s.sqlite"), llm=real_llm, wish_scorer=None
    )
    started = time.perf_counter()
    turn = conversation.start().send("a funny animated film from the 90s, nothing scary")
    elapsed = time.perf_counter() - started
    trace = turn.trace["llm"]
    assert elapsed <= TIMEOUT + 1.0, trace
    assert turn.items or turn.question  # the policy may ask first
    assert all(engine.catalog.has(i["item_id"]) for i in turn.items)
    assert "[[" not in turn.reply
    assert _http_errors(trace["calls"]) == [], trace["calls"]
    assert trace["dialect"]["structured"] == "json_object" and trace["dialect"]["stream"]
    # what the model contributed depends on the machine's speed; the trace says which
    assert trace["understanding"]["source"] in ("llm", "embedded")


def test_simulate_with_a_real_llm_user(engine, real_llm):
    import numpy as np

    from whyrec.evaluation.conversational import simulate
    from whyrec.evaluation.simulated_users import Episode

    target = int(np.random.default_rng(1).integers(len(engine.catalog)))
    report = simulate(
        engine,
        [Episode(None, target, ())],
        ["ours"],
        user_mode="llm",
        max_turns=1,
        semantic_wishes=False,
        llm=real_llm,
    )
    user = report["llm_user"]
    assert report["episodes"] == 1 and user["messages"] >= 1
    assert user["from_llm"] + user["fallbacks"] == user["messages"], user


def test_serve_with_a_real_llm(engine, real_llm, tmp_path):
    from fastapi.testclient import TestClient

    from whyrec.serve.app import create_app
    from whyrec.serve.service import Service, ServiceConfig
    from whyrec.store import open_store

    store = open_store(str(tmp_path / "api.sqlite"))
    config = ServiceConfig(bundle=tmp_path, rate_limit=0, llm=real_llm)
    service = Service(engine, store, warm_up=False, llm=config.llm)
    client = TestClient(create_app(service, config), raise_server_exceptions=False)
    created = client.post("/v1/sessions", json={}).json()
    answer = client.post(
        f"/v1/sessions/{created['session_id']}/messages",
        json={"text": "something like Toy Story"},
        headers={"Authorization": f"Bearer {created['token']}"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["items"] or body["question"], body  # the policy may ask first
    assert all(engine.catalog.has(i["item_id"]) for i in body["items"])
    assert _http_errors(body["trace"]["llm"]["calls"]) == []
    store.close()


def test_llm_recommender_on_real_users(ml_core, real_llm):
    from whyrec.data.splits import split
    from whyrec.evaluation.protocol import evaluate_models
    from whyrec.llm.recommender import LLMRecommender

    model = LLMRecommender(titles=5, history=10).use_llm(real_llm)
    report = evaluate_models({"llm": model}, split(ml_core, "loo", seed=0), [10], max_users=1)
    stats = report.to_dict()["models"]["llm"]["llm"]
    assert stats["users"] == 1 and stats["calls"] >= 1 and stats["tokens"] > 0
    assert 0 <= stats["hallucinated"] <= 1 and 0 <= stats["parsed"] <= 1
