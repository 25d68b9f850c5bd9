"""The LLM layer against a scripted OpenAI-compatible server on loopback (real HTTP).

Every misbehaviour a real server shows (malformed JSON, wrong fields, invented ids and
titles, slow answers, 429/500, dropped connections, garbage bodies) must leave the
conversation answering correctly from the catalog, within the timeout, with the trace
saying what happened.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from llm_server import (
    dialect_answer,
    drop,
    error,
    garbage,
    helpful,
    json_reply,
    reply,
    request_data,
    request_kind,
    slow,
    tool_reply,
)
from whyrec.bundle import Bundle
from whyrec.conversation import Conversation, SessionStore
from whyrec.conversation.policy import PolicyConfig
from whyrec.engine import Engine
from whyrec.llm import LLMConfig, LLMConversation, LLMError, load_llm_config, open_conversation
from whyrec.llm.agent import REPLY_ITEMS
from whyrec.models import EASE

FLAGSHIP = "a funny animated film from the 90s, like Toy Story, nothing scary"
FLAGSHIP_ACTS = {
    "intents": ["recommend"],
    "titles": [{"title": "Toy Story", "liked": True}],
    "values": [
        {"field": "genres", "value": "Comedy", "include": True},
        {"field": "genres", "value": "Animation", "include": True},
        {"field": "genres", "value": "Horror", "include": False},
    ],
    "year_min": 1990,
    "year_max": 1999,
}
FAKE_TITLES = ("The Quantum Heist", "Neon Shadows")
TIMEOUT = 1.0
ROOMY = 15.0
"""The turn budget of tests about what is sent and done, not about time: a first turn on a
cold engine must not lose its last calls to a 1 s budget on a busy machine."""


@pytest.fixture(scope="module")
def engine(ml_core):
    return Engine(Bundle(EASE(reg=200.0).fit(ml_core), ml_core))


def _config(server, **overrides) -> LLMConfig:
    settings = {
        "base_url": server.base_url,
        "model": "test-model",
        "api_key": "sk-test",
        "timeout": TIMEOUT,
        "backoff": 0.05,
        "cooldown": 0.0,
    }
    return LLMConfig(**(settings | overrides))


def _conversation(engine, server, tmp_path, **overrides) -> LLMConversation:
    store = SessionStore(tmp_path / "sessions.sqlite")
    conversation = open_conversation(
        engine, store=store, llm=_config(server, **overrides), wish_scorer=None
    )
    assert isinstance(conversation, LLMConversation)
    return conversation


def _embedded_turn(engine, message: str, user: str | None = None):
    session = Conversation(engine, wish_scorer=None).start(user)
    started = time.perf_counter()
    turn = session.send(message)
    return turn, time.perf_counter() - started


def _assert_flagship_items(engine, turn) -> None:
    catalog = engine.catalog
    assert turn.items
    for item in turn.items:
        position = catalog.position(item["item_id"])
        assert catalog.titles[position] == item["title"]
        genres = set(catalog.values("genres", position))
        assert {"Comedy", "Animation"} <= genres and "Horror" not in genres
        assert 1990 <= item["year"] <= 1999


def _names_only_catalog_items(engine, text: str) -> bool:
    """No invented title, and every "Title (year)" in the text is a catalog title."""
    if any(fake in text for fake in FAKE_TITLES) or "[[" in text:
        return False
    titles = set(engine.catalog.titles)
    written = re.findall(r"([A-Z][^\n:;—]*?\(\d{4}\))", text)
    return all(any(t.endswith(w) or w.endswith(t) for t in titles) for w in written)


# ----- configuration ---------------------------------------------------------------------
def test_config_precedence_and_errors(tmp_path):
    path = tmp_path / "llm.toml"
    path.write_text('[llm]\nbase_url = "http://file:1/v1"\nmodel = "from-file"\ntimeout = 7\n')
    env = {"WHYREC_LLM_MODEL": "from-env", "WHYREC_LLM_TIMEOUT": "3"}
    config = load_llm_config(path, environ=env, timeout=2.5)
    assert (config.base_url, config.model, config.timeout) == ("http://file:1/v1", "from-env", 2.5)
    assert load_llm_config(environ={"WHYREC_LLM_CONFIG": str(path)}).model == "from-file"
    assert not load_llm_config(environ={}).configured
    with pytest.raises(LLMError, match="timeout"):
        load_llm_config(environ={"WHYREC_LLM_TIMEOUT": "soon"})
    with pytest.raises(LLMError, match="does not exist"):
        load_llm_config(tmp_path / "missing.toml", environ={})
    assert "sk-" not in repr(LLMConfig(model="m", api_key="sk-secret"))


def test_without_configuration_the_embedded_conversation_runs(engine):
    conversation = open_conversation(engine, llm=load_llm_config(environ={}), wish_scorer=None)
    assert type(conversation) is Conversation
    turn = conversation.start().send(FLAGSHIP)
    assert not turn.trace and "trace" not in turn.to_dict()
    assert turn.state["memory"] == {} and turn.state["llm_tokens"] == 0


# ----- the wire format ---------------------------------------------------------------------
def test_requests_are_what_the_openai_api_expects(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    llm_server.script(
        "plan",
        tool_reply(("search_catalog", {"include": {"genres": ["Horror"]}})),  # contradicts
        tool_reply(("search_catalog", {"include": {"genres": ["Animation", "Comedy"]}})),
    )
    session = _conversation(engine, llm_server, tmp_path, timeout=ROOMY).start()
    session.send(FLAGSHIP)
    bodies = [r["body"] for r in llm_server.requests]
    kinds = [request_kind(b) for b in bodies]
    assert kinds == ["dialogue_acts", "probe_tools", "plan", "plan", "grounded_reply"]
    for record in llm_server.requests:
        assert record["path"] == "/v1/chat/completions"
        assert record["headers"]["authorization"] == "Bearer sk-test"
        body = record["body"]
        assert body["model"] == "test-model" and isinstance(body["max_tokens"], int)
        assert body["messages"][0]["role"] == "system"
        for message in body["messages"]:
            assert message["role"] in {"system", "user", "assistant", "tool"}
            if message["role"] == "tool":
                assert isinstance(message["tool_call_id"], str)
                assert isinstance(message["content"], str)
            elif message["role"] == "assistant" and message.get("tool_calls"):
                for call in message["tool_calls"]:
                    assert call["type"] == "function"
                    assert isinstance(call["function"]["arguments"], str)
            else:
                assert isinstance(message["content"], str)
    understanding, probe, plan, reflection, answer = bodies
    assert probe["tool_choice"] == "required" and len(probe["tools"]) == 1
    for body in (understanding, answer):
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema" and "tools" not in body
        assert set(fmt["json_schema"]) == {"name", "schema", "strict"}
        assert fmt["json_schema"]["schema"]["type"] == "object"
    assert plan["tool_choice"] == "auto" and "response_format" not in plan
    for tool in plan["tools"]:
        assert tool["type"] == "function"
        assert set(tool["function"]) == {"name", "description", "parameters"}
        assert tool["function"]["parameters"]["type"] == "object"
    # the reflection shows the plan and its observations in the chat format
    roles = [m["role"] for m in reflection["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert (
        reflection["messages"][3]["tool_call_id"]
        == reflection["messages"][2]["tool_calls"][0]["id"]
    )


def test_json_object_mode_for_servers_without_schemas(engine, llm_server, tmp_path):
    session = _conversation(engine, llm_server, tmp_path, json_mode="json_object").start()
    session.send(FLAGSHIP)
    first = llm_server.requests[0]["body"]
    assert first["response_format"]["type"] == "json_object"
    assert first["response_format"]["schema"]["properties"]["intents"]
    assert request_kind(first) == "dialogue_acts"  # named in the system message


# ----- a well-behaved LLM ----------------------------------------------------------------
def test_grounded_turn_uses_llm_acts_rerank_and_profile(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    conversation = _conversation(engine, llm_server, tmp_path, timeout=ROOMY)
    session = conversation.start()
    turn = session.send(FLAGSHIP)
    _assert_flagship_items(engine, turn)
    trace = turn.trace["llm"]
    assert trace["understanding"]["source"] == "llm" and trace["fallbacks"] == []
    assert trace["reply"]["result"] == "ok" and trace["tokens"] > 0
    assert [c["purpose"] for c in trace["calls"]] == [
        "dialogue_acts",
        "probe_tools",
        "plan",
        "grounded_reply",
    ]
    sent = request_data(llm_server.requests[-1]["body"])["candidates"]
    assert 0 < len(sent) <= REPLY_ITEMS  # the head of the list, briefly
    reranked = [c["item_id"] for c in sent][::-1]
    assert [i["item_id"] for i in turn.items][: len(sent)] == reranked
    assert turn.state["shown"] == [engine.catalog.position(i["item_id"]) for i in turn.items]
    assert turn.reply.startswith("Picked for you.") and turn.items[0]["title"] in turn.reply
    assert "Toy Story" in " ".join(turn.state["memory"]["likes"])
    assert turn.state["llm_tokens"] == trace["session_tokens"] > 0
    stored = conversation.store.messages(session.id)[-1]["payload"]
    assert stored["trace"]["llm"]["reply"]["result"] == "ok"
    resumed = conversation.resume(session.id)
    assert resumed.state.memory == turn.state["memory"]


def test_why_is_phrased_from_the_explanation_evidence(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    # about what is sent: a 1 s budget keeps the measured own work of a loaded machine free
    session = _conversation(engine, llm_server, tmp_path, timeout=ROOMY).start()
    first = session.send(FLAGSHIP)
    llm_server.script("dialogue_acts", json_reply({"intents": ["why"], "reference": 0}))
    turn = session.send("why the first one?")
    asked = request_data(llm_server.requests[-1]["body"])["candidates"]
    assert [c["item_id"] for c in asked] == [first.items[0]["item_id"]]
    explanation = turn.items[0]["explanation"]
    cited = [c["title"] for c in explanation["history"]]
    assert asked[0]["because_you_liked"] == cited[: len(asked[0]["because_you_liked"])]
    assert asked[0]["because_you_liked"] or asked[0]["shares"]
    assert turn.items[0]["title"] in turn.reply and turn.trace["llm"]["reply"]["result"] == "ok"


def test_repair_attempt_fixes_invalid_acts(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", reply("{intents: [recommend"), json_reply(FLAGSHIP_ACTS))
    turn = _conversation(engine, llm_server, tmp_path).start().send(FLAGSHIP)
    record = turn.trace["llm"]["understanding"]
    assert record["result"] == "repaired" and record["source"] == "llm"
    repair = llm_server.requests[1]["body"]["messages"]
    assert repair[-2]["role"] == "assistant" and "not valid" in repair[-1]["content"]
    _assert_flagship_items(engine, turn)


def test_invented_titles_in_acts_are_grounded_in_the_catalog(engine, llm_server, tmp_path):
    acts = {"intents": ["recommend"], "titles": [{"title": "The Quantum Heist", "liked": True}]}
    llm_server.script("dialogue_acts", json_reply(acts))
    turn = _conversation(engine, llm_server, tmp_path).start().send("I loved The Quantum Heist")
    assert "don't know a title called 'The Quantum Heist'" in turn.reply
    assert turn.trace["llm"]["understanding"]["grounding"]
    assert turn.state["liked"] == []


def _llm_understander(engine, server):
    from whyrec.llm.client import LLMClient
    from whyrec.llm.understanding import LLMUnderstander

    embedded = Conversation(engine, wish_scorer=None).understander
    return LLMUnderstander(LLMClient(_config(server)), embedded)


@pytest.mark.parametrize(
    ("message", "hard"),
    [
        ("a comedy please", True),  # said plainly: filters
        ("ideally a comedy", False),  # softened in its clause: ranks only
        ("a comedy, ideally from the 90s", True),  # the softener is in another clause
        ("something to make me laugh", True),  # the embedded understander reads it too
        ("something for a rainy sunday", False),  # the LLM's inference, not the user's words
    ],
)
def test_llm_values_are_hard_by_the_embedded_rule_not_by_field_name(
    engine, llm_server, message, hard
):
    from whyrec.llm.understanding import DialogueActs

    understander = _llm_understander(engine, llm_server)
    acts = DialogueActs(
        intents=["recommend"], values=[{"field": "genres", "value": "Comedy", "include": True}]
    )
    said, _ = understander.ground(acts, [], message)
    assert [(c.field, c.value, c.hard) for c in said.constraints] == [("genres", "Comedy", hard)]


def test_the_prompt_lists_values_written_in_the_message_under_a_token_cap(engine, llm_server):
    from whyrec.llm.client import CHARS_PER_TOKEN
    from whyrec.llm.understanding import VOCABULARY_TOKENS

    understander = _llm_understander(engine, llm_server)
    rare = min(engine.catalog.fields, key=lambda f: -len(engine.catalog.value_counts(f)))
    value = engine.catalog.value_counts(rare).most_common()[-1][0]  # the least frequent
    listed = understander.vocabulary.for_message(f"something with {value} in it")
    assert value in listed[rare].split(", ")  # found by relevance, not frequency
    assert len(", ".join(listed.values())) <= VOCABULARY_TOKENS * CHARS_PER_TOKEN
    system, facts = understander.messages(f"with {value}", [], None, {})
    assert json.loads(facts["content"])["values"] == listed
    # the most frequent values are the same for every message: in the shared system message
    frequent = understander.vocabulary.common()
    assert frequent[rare].split(", ")[0] == engine.catalog.value_counts(rare).most_common(1)[0][0]
    assert f"{rare}: {frequent[rare]}" in system["content"]
    assert len(", ".join(frequent.values())) <= VOCABULARY_TOKENS * CHARS_PER_TOKEN


# ----- misbehaviour: each leaves the embedded answer, in time, traced ---------------------
def _fake_reply(body):
    kind, data = request_kind(body), request_data(body)
    if kind == "grounded_reply":
        ids = [c["item_id"] for c in data["candidates"]]
        return json_reply(
            {"order": ids, "text": f'Try "{FAKE_TITLES[0]}" or {FAKE_TITLES[1]} (2021).'}
        )
    if kind == "dialogue_acts":
        return json_reply(FLAGSHIP_ACTS)
    return helpful(body)


def _unknown_ids(body):
    if request_kind(body) == "grounded_reply":
        return json_reply({"order": ["99999999"], "text": "Watch [[99999999]] and [[1]]."})
    if request_kind(body) == "dialogue_acts":
        return json_reply(FLAGSHIP_ACTS)
    return helpful(body)


def _outside_candidates(body):
    if request_kind(body) == "grounded_reply":
        data = request_data(body)
        ids = [c["item_id"] for c in data["candidates"]]
        return json_reply({"order": ids, "text": "You will love The Godfather and [[858]]."})
    if request_kind(body) == "dialogue_acts":
        return json_reply(FLAGSHIP_ACTS)
    return helpful(body)


MISBEHAVIOURS = {
    "malformed_json": (lambda body: reply('{"intents": ["recommend"'), "bad JSON"),
    "wrong_fields": (lambda body: json_reply({"intent": "recommend", "movie": 3}), "fields"),
    "unknown_item_ids": (_unknown_ids, "ids"),
    "titles_outside_catalog": (_fake_reply, "titles"),
    "titles_outside_candidates": (_outside_candidates, "candidates"),
    "slow": (lambda body: slow(TIMEOUT * 4, helpful(body)), "timeout"),
    "rate_limited": (lambda body: error(429, retry_after=0), "rate_limited"),
    "server_error": (lambda body: error(500), "server_error"),
    "dropped_connection": (lambda body: drop(), "connection"),
    "garbage_body": (lambda body: garbage(), "bad_response"),
}


@pytest.mark.parametrize("name", list(MISBEHAVIOURS))
def test_misbehaving_llm_never_breaks_the_turn(engine, llm_server, tmp_path, name):
    responder, _ = MISBEHAVIOURS[name]
    llm_server.responder = responder
    expected, embedded_seconds = _embedded_turn(engine, FLAGSHIP)
    session = _conversation(engine, llm_server, tmp_path).start()
    started = time.perf_counter()
    turn = session.send(FLAGSHIP)
    elapsed = time.perf_counter() - started
    assert elapsed <= TIMEOUT + embedded_seconds + 0.5, elapsed
    _assert_flagship_items(engine, turn)
    assert _names_only_catalog_items(engine, turn.reply), turn.reply
    trace = turn.trace["llm"]
    assert trace["fallbacks"], trace
    assert trace["calls"], trace
    if name in ("unknown_item_ids", "titles_outside_catalog", "titles_outside_candidates"):
        record = trace["reply"]
        assert record["result"] == "fallback" and len(record["invalid"]) == 2
        problems = " ".join(record["invalid"])
        assert {"unknown_item_ids": "99999999", "titles_outside_catalog": "Quantum"}.get(
            name, "Godfather"
        ) in problems
        assert trace["fallbacks"] == ["reply"]
    else:
        # understanding and reply both fell back: the turn is exactly the embedded one
        assert turn.reply == expected.reply
        assert [i["item_id"] for i in turn.items] == [i["item_id"] for i in expected.items]
        assert "understanding" in trace["fallbacks"]
        outcomes = {c["outcome"] for c in trace["calls"]}
        if name in ("malformed_json", "wrong_fields"):
            assert trace["understanding"]["invalid"], trace
        else:
            assert outcomes & {"timeout", "rate_limited", "server_error", "connection"} or (
                name == "garbage_body" and "bad_response" in outcomes
            ), outcomes


def test_retry_after_a_429_then_success(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", error(429, retry_after=0.1), json_reply(FLAGSHIP_ACTS))
    turn = _conversation(engine, llm_server, tmp_path).start().send(FLAGSHIP)
    call = turn.trace["llm"]["calls"][0]
    assert call["outcome"] == "ok" and call["attempts"] == 2
    assert call["errors"] == ["rate_limited (429)"]
    assert turn.trace["llm"]["fallbacks"] == []


def test_llm_down_skips_the_rest_of_the_turn_and_cools_down(engine, tmp_path):
    from llm_server import ScriptedLLM

    server = ScriptedLLM()
    url = server.base_url
    server.stop()  # nothing listens there any more: connection refused
    config = LLMConfig(base_url=url, model="m", timeout=TIMEOUT, backoff=0.05, cooldown=60)
    conversation = open_conversation(engine, llm=config, wish_scorer=None)
    session = conversation.start()
    turn = session.send(FLAGSHIP)
    calls = turn.trace["llm"]["calls"]
    assert calls[0]["outcome"] == "connection"
    assert all(c["outcome"] == "skipped" for c in calls[1:])
    later = session.send("none of these")
    assert all(c["outcome"] == "skipped" for c in later.trace["llm"]["calls"])
    assert "cooling down" in later.trace["llm"]["calls"][0]["reason"]


def test_token_budget_ends_llm_use_for_the_session(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    session = _conversation(engine, llm_server, tmp_path, token_budget=1500).start()
    first = session.send(FLAGSHIP)
    assert first.trace["llm"]["llm_calls"] >= 1
    second = session.send("none of these")
    skipped = [c for c in second.trace["llm"]["calls"] if c["outcome"] == "skipped"]
    assert skipped and "budget" in skipped[0]["reason"]
    assert second.items or second.question  # the embedded engine carries on
    assert second.state["llm_tokens"] <= 1500


def test_identical_requests_come_from_the_cache(engine, llm_server, tmp_path):
    conversation = _conversation(engine, llm_server, tmp_path)
    conversation.start().send(FLAGSHIP)
    sent = len(llm_server.requests)
    turn = conversation.start().send(FLAGSHIP)
    assert len(llm_server.requests) == sent  # nothing new went over the wire
    assert {c["outcome"] for c in turn.trace["llm"]["calls"]} == {"cached"}
    assert turn.trace["llm"]["tokens"] == 0


# ----- the agent's tools ---------------------------------------------------------------------
def test_plan_reflect_and_rank_with_tools(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    llm_server.script(
        "plan",
        tool_reply(("search_catalog", {"include": {"genres": ["Horror"]}, "year_min": 2030})),
        tool_reply(
            ("search_catalog", {"include": {"genres": ["Animation"]}, "year_min": 1990}),
            ("rank_for_user", {"within": "c2", "limit": 5}),
        ),
    )
    turn = _conversation(engine, llm_server, tmp_path, timeout=ROOMY).start().send(FLAGSHIP)
    plan = turn.trace["llm"]["plan"]
    assert plan["reflection"] == "list c1 is empty"
    assert [s["tool"] for s in plan["steps"]] == [
        "search_catalog",
        "search_catalog",
        "rank_for_user",
    ]
    assert plan["result"].startswith("list c3")
    assert 1 <= len(turn.items) <= 5  # items the user ruled out (not Comedy, 2000s) dropped
    _assert_flagship_items(engine, turn)


def test_tool_errors_and_contradictions_fall_back_to_the_policy(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS), json_reply(FLAGSHIP_ACTS))
    bad_plan = tool_reply(
        ("search_catalog", {"include": {"colour": ["red"]}}),
        ("no_such_tool", {}),
        ("rank_for_user", "{not json"),
        ("search_catalog", {"include": {"genres": ["Horror"]}}),
    )
    llm_server.script("plan", bad_plan, bad_plan)
    expected, _ = _embedded_turn(engine, FLAGSHIP)
    turn = _conversation(engine, llm_server, tmp_path, timeout=ROOMY).start().send(FLAGSHIP)
    plan = turn.trace["llm"]["plan"]
    errors = [s["error"] for s in plan["steps"] if "error" in s]
    assert any("unknown field" in e for e in errors) and any("unknown tool" in e for e in errors)
    assert "ruled out" in plan["reflection"]
    _assert_flagship_items(engine, turn)
    # a plan that went wrong leaves the embedded engine's list: nothing the LLM made up
    assert {i["item_id"] for i in turn.items} <= {i["item_id"] for i in expected.items}


def test_compare_and_explain_tools_feed_the_reply(engine, llm_server, tmp_path):
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    session = _conversation(engine, llm_server, tmp_path, timeout=ROOMY).start()
    first = session.send(FLAGSHIP)
    a, b = (i["item_id"] for i in first.items[:2])
    llm_server.script("dialogue_acts", json_reply({"intents": [], "reference": 0}))
    llm_server.script(
        "plan",
        tool_reply(("compare_items", {"item_ids": [a, b]}), ("explain_item", {"item_id": a})),
    )
    llm_server.script("grounded_reply", json_reply({"order": [], "text": f"[[{a}]] vs [[{b}]]."}))
    turn = session.send("compare the first two")
    facts = request_data(llm_server.requests[-1]["body"])["facts"]
    assert facts[0]["kind"] == "comparison" and len(facts[0]["items"]) == 2
    assert facts[1]["kind"] == "explanation" and facts[1]["evidence"]
    titles = {engine.catalog.titles[engine.catalog.position(i)] for i in (a, b)}
    assert all(t in turn.reply for t in titles)


def test_semantic_search_tool_over_item_text(core_compact, core_item_vectors, tmp_path):
    from llm_server import ScriptedLLM

    engine = Engine(Bundle(EASE(reg=200.0).fit(core_compact), core_compact))
    with ScriptedLLM(helpful) as server:
        server.script("dialogue_acts", json_reply({"intents": ["recommend"]}))
        server.script(
            "plan",
            tool_reply(("semantic_search", {"query": "animated toys adventure", "limit": 5})),
        )
        # a policy that lists at once: this test is about the tool, not about when to ask
        conversation = open_conversation(
            engine,
            llm=_config(server, timeout=ROOMY),  # the encoder loads in this turn
            store=SessionStore(tmp_path / "s.sqlite"),
            policy=PolicyConfig(kind="recommend-only"),
        )
        turn = conversation.start().send("something like an animated adventure with toys")
    assert turn.trace["llm"]["plan"]["steps"][0]["count"] == 5
    genres = [
        set(engine.catalog.values("genres", engine.catalog.position(i["item_id"])))
        for i in turn.items
    ]
    assert sum("Animation" in g for g in genres) >= 3


# ----- the library entry point and the CLI -----------------------------------------------------
def test_chat_cli_with_llm(ml_core, llm_server, tmp_path):
    import subprocess
    import sys

    from whyrec.cli import main

    bundle = tmp_path / "bundle"
    Bundle(EASE(reg=200.0).fit(ml_core), ml_core).save(bundle)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "whyrec.cli",
            "chat",
            "--bundle",
            str(bundle),
            "--db",
            str(tmp_path / "s.sqlite"),
            "--json",
            "--llm",
            "--llm-base-url",
            llm_server.base_url,
            "--llm-model",
            "test-model",
            "--llm-timeout",
            "2",
        ],
        input="a funny animated film like Toy Story\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    turn = json.loads(done.stdout.splitlines()[0])
    # the policy may list at once or ask first (a cold user); either way the LLM was used
    assert turn["trace"]["llm"]["calls"] and turn["reply"]
    assert turn["items"] or turn["question"]
    assert any(r["body"]["model"] == "test-model" for r in llm_server.requests)
    with pytest.raises(SystemExit) as exited:
        main(["chat", "--bundle", str(bundle), "--llm", "--llm-config", str(tmp_path / "no.toml")])
    assert exited.value.code == 2


# ----- the LLM-driven simulated user -----------------------------------------------------------
def test_llm_user_never_states_the_title(engine, llm_server):
    import numpy as np

    from whyrec.conversation.fields import AttributeSpace
    from whyrec.evaluation.llm_user import LLMUser
    from whyrec.evaluation.simulated_users import Episode

    catalog = engine.catalog
    target = catalog.position("1")  # Toy Story (1995)
    user = LLMUser(AttributeSpace(catalog), catalog, np.random.default_rng(0), _config(llm_server))
    user.begin(Episode(None, target, ()))
    llm_server.script(
        "simulated_user",
        json_reply({"message": "I want Toy Story!"}),
        json_reply({"message": "something like toy stroy"}),
        json_reply({"message": "an animated comedy about toys from the nineties"}),
    )
    first = user.opening_text("genres", "Animation")
    assert not user.names_target(first) and "toy story" not in first.lower()
    assert user.stats["title_leaks_blocked"] == 2 and user.stats["fallbacks"] == 1
    second = user.opening_text("genres", "Animation")
    assert second == "an animated comedy about toys from the nineties"
    for record in llm_server.requests:
        facts = request_data(record["body"])
        assert "Toy Story" not in json.dumps(facts)  # whyrec never shows it the title
        assert "Toy Story" not in record["body"]["messages"][0]["content"]
        assert "Animation" in facts["attributes"]["genres"]


def test_simulate_with_llm_users(engine, llm_server):
    import numpy as np

    from whyrec.evaluation.conversational import simulate
    from whyrec.evaluation.simulated_users import Episode

    rng = np.random.default_rng(0)
    targets = rng.choice(len(engine.catalog), size=2, replace=False)
    episodes = [Episode(None, int(t), ()) for t in targets]
    report = simulate(
        engine,
        episodes,
        ["ours"],
        user_mode="llm",
        max_turns=3,
        semantic_wishes=False,
        llm=_config(llm_server),
    )
    assert report["user_mode"] == "llm" and report["episodes"] == 2
    assert report["llm_user"]["messages"] >= 2 and report["llm_user"]["from_llm"] >= 1
    with pytest.raises(Exception, match="LLM configuration"):
        simulate(engine, episodes, ["ours"], user_mode="llm", semantic_wishes=False)


def test_the_http_api_serves_llm_turns_and_survives_a_misbehaving_llm(engine, llm_server, tmp_path):
    from fastapi.testclient import TestClient

    from whyrec.serve.app import create_app
    from whyrec.serve.service import Service, ServiceConfig
    from whyrec.store import open_store

    store = open_store(str(tmp_path / "api.sqlite"))
    config = ServiceConfig(bundle=tmp_path, rate_limit=0, llm=_config(llm_server))
    service = Service(engine, store, warm_up=False, llm=config.llm)
    client = TestClient(create_app(service, config), raise_server_exceptions=False)
    created = client.post("/v1/sessions", json={}).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    llm_server.responder = MISBEHAVIOURS["unknown_item_ids"][0]
    answer = client.post(
        f"/v1/sessions/{created['session_id']}/messages", json={"text": FLAGSHIP}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["items"] and all(engine.catalog.has(i["item_id"]) for i in body["items"])
    assert _names_only_catalog_items(engine, body["reply"]), body["reply"]
    assert body["trace"]["llm"]["fallbacks"] == ["reply"]
    assert llm_server.requests, "the LLM was asked"
    store.close()


# ----- dialects: negotiated once per server and model ----------------------------------------
def _dialect_server(dialect: str, describe: bool = False):
    from llm_server import ScriptedLLM

    return ScriptedLLM(helpful, dialect=dialect, describe=describe)


@pytest.mark.parametrize(
    ("dialect", "structured", "tools"),
    [
        ("openai", "json_schema", "native"),
        ("llama.cpp", "json_object", "json"),
        ("plain", "prompt", "json"),
    ],
)
def test_a_described_server_is_never_sent_a_request_it_rejects(
    engine, tmp_path, dialect, structured, tools
):
    with _dialect_server(dialect, describe=True) as server:
        server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
        session = _conversation(engine, server, tmp_path, cooldown=60, timeout=ROOMY).start()
        first = session.send(FLAGSHIP)
        session.send("none of these")
    trace = first.trace["llm"]
    assert trace["fallbacks"] == [], json.dumps(trace["calls"])
    assert trace["dialect"]["described"].startswith("openapi.json: response_format")
    assert (trace["dialect"]["structured"], trace["dialect"]["tools"]) == (structured, tools)
    assert not [c for c in trace["calls"] if c.get("errors") or c.get("dialect")]
    assert server.gets.count("/openapi.json") == 1  # once per server and model
    rejected = [r["body"] for r in server.requests if dialect_answer(dialect, r["body"])]
    assert all(request_kind(b) == "probe_tools" for b in rejected)  # answered, not refused
    if dialect == "plain":
        assert "probe_tools" not in [request_kind(r["body"]) for r in server.requests]
    _assert_flagship_items(engine, first)


def test_a_streamed_answer_abandoned_at_the_deadline_closes_the_connection(engine, tmp_path):
    """A slow server that is answering is stopped at the deadline and not cooled down."""
    from llm_server import trickle

    with _dialect_server("llama.cpp", describe=True) as server:
        slow_acts = trickle(json.dumps(FLAGSHIP_ACTS), chunk_delay=0.2)  # ~5 s of "generating"
        server.script("dialogue_acts", slow_acts)
        session = _conversation(engine, server, tmp_path, timeout=1.0, cooldown=60).start()
        started = time.monotonic()
        turn = session.send(FLAGSHIP)
        assert time.monotonic() - started < 1.0 + 1.0
        assert turn.trace["llm"]["dialect"]["stream"] is True
        # the server was answering: the turn ran out of time, the server is not down
        assert turn.trace["llm"]["calls"][0]["outcome"] == "out_of_time"
        waited = time.monotonic()
        while not server.abandoned and time.monotonic() - waited < 3:
            time.sleep(0.05)
        assert server.abandoned == 1  # the server was told to stop, long before its end
        assert turn.items  # the embedded engine answered the turn
        server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
        again = session.send(FLAGSHIP).trace["llm"]  # no cool-down: the LLM is asked again
        assert again["understanding"]["source"] == "llm", again


def test_a_late_plan_on_a_slow_machine_still_ends_the_turn_in_time(engine, monkeypatch, tmp_path):
    """The turn bound holds by construction, whatever whyrec's own work costs: a plan that
    comes back late runs only the steps that fit the turn (each as slow as a step on a
    loaded machine here), and the next plan is asked early enough for its steps."""
    from llm_server import ScriptedLLM, helpful, slow
    from whyrec.llm.tools import Toolbox

    budget, step_seconds = 2.0, 0.5
    run = Toolbox.run

    def loaded_machine(self, name, arguments):
        time.sleep(step_seconds)
        return run(self, name, arguments)

    monkeypatch.setattr(Toolbox, "run", loaded_machine)
    steps = [("search_catalog", {"include": {"genres": ["Animation"]}})] * 6
    with ScriptedLLM(helpful) as server:
        conversation = _conversation(engine, server, tmp_path, timeout=budget)
        session = conversation.start()
        for turn_number in range(2):
            server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
            server.script("plan", slow(0.6 * budget, tool_reply(*steps)))
            started = time.monotonic()
            turn = session.send(FLAGSHIP)
            elapsed = time.monotonic() - started
            # six steps after a late plan would take 3 s past it: the old turn took 4.2 s
            assert elapsed <= budget + 1.0, (turn_number, elapsed, turn.trace["llm"]["plan"])
            assert turn.items
        plan = turn.trace["llm"]["plan"]
        assert len(plan["steps"]) < len(steps), plan  # cut, or not waited for
        assert plan["result"].startswith(("policy list kept", "no plan")), plan


def test_turns_keep_time_free_for_whyrecs_own_work_on_a_loaded_machine(
    engine, monkeypatch, llm_server, tmp_path
):
    """An answer that comes at the last moment leaves whyrec's own work (the policy, the
    lists, the store: seconds on a loaded machine) past the budget; once that work was
    measured, later turns end their calls early enough for it."""
    from llm_server import slow
    from whyrec.conversation.conversation import Session
    from whyrec.llm.session import LLMSession

    budget, own_work = 2.0, 0.8

    def loaded_machine(self, state, said, text):
        time.sleep(own_work)
        return Session._respond(self, state, said, text)

    monkeypatch.setattr(LLMSession, "_respond", loaded_machine)
    session = _conversation(engine, llm_server, tmp_path, timeout=budget, cooldown=0).start()
    seconds = []
    for _ in range(2):
        llm_server.script("dialogue_acts", slow(0.95 * budget, json_reply(FLAGSHIP_ACTS)))
        started = time.monotonic()
        turn = session.send(FLAGSHIP)
        seconds.append(time.monotonic() - started)
    assert seconds[0] > budget  # the first turn shows the work (and is still within + 1 s)
    assert seconds[1] <= budget + 0.3, (seconds, turn.trace["llm"]["own_work_kept"])
    assert turn.trace["llm"]["own_work_kept"] >= own_work


def test_a_call_that_cannot_finish_in_time_is_not_started(engine, tmp_path):
    """A server reads a whole prompt even for a client that has gone: whyrec learns the
    server's speed from its streamed answers and never sends what cannot end in time."""
    from llm_server import slow

    with _dialect_server("llama.cpp", describe=True) as server:
        budget = 6.0  # room for the description and the probe on a loaded machine
        session = _conversation(engine, server, tmp_path, timeout=budget).start()
        # the first answer shows a slow reader: 45% of the turn for the understanding prompt
        server.script("dialogue_acts", slow(0.45 * budget, json_reply(FLAGSHIP_ACTS)))
        turn = session.send(FLAGSHIP)
        trace = turn.trace["llm"]
        assert trace["understanding"]["source"] == "llm"
        assert trace["dialect"]["speed"]["prompt_ms_per_char"] > 0
        # the plan's prompt is larger than the understanding's and would not end in time
        plan_calls = [c for c in trace["calls"] if c["purpose"] == "plan"]
        assert plan_calls and plan_calls[0]["outcome"] == "out_of_time", json.dumps(trace)
        assert "would not finish" in plan_calls[0]["errors"][-1]
        assert "plan" not in server.kinds()  # never sent: the server did no work for nobody
        assert turn.items  # the policy's list stands


def test_a_server_description_is_read_through_refs_unions_and_consts():
    from whyrec.llm.client import description_url, read_description

    spec = {
        "paths": {
            "/v1/chat/completions/": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Req"}}
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "Req": {
                    "allOf": [
                        {
                            "properties": {
                                "response_format": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Text"},
                                        {"properties": {"type": {"const": "json_schema"}}},
                                    ]
                                }
                            }
                        }
                    ]
                },
                "Text": {"properties": {"type": {"enum": ["text"]}}},
            }
        },
    }
    assert read_description(spec) == {
        "response_formats": ["json_schema", "text"],
        "tools": False,
        "stream": False,
    }
    assert read_description({"paths": {"/health": {}}}) is None
    assert description_url("http://h:8000/v1/") == "http://h:8000/openapi.json"
    assert description_url("http://h/api") == "http://h/api/openapi.json"


def test_llama_cpp_dialect_is_negotiated_once_and_never_cools_down(engine, tmp_path):
    with _dialect_server("llama.cpp") as server:
        server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
        conversation = _conversation(engine, server, tmp_path, cooldown=60)
        session = conversation.start()
        first = session.send(FLAGSHIP)
        trace = first.trace["llm"]
        assert trace["fallbacks"] == [], json.dumps(trace["calls"])
        understanding = trace["calls"][0]
        assert trace["dialect"]["described"] == "none"  # no description: probed instead
        assert "no server description (absent (404)" in trace["dialect"]["notes"][0]
        assert understanding["form"] == "json_object" and understanding["outcome"] == "ok"
        assert understanding["dialect"] == ["json_schema rejected (500): json_object"]
        assert trace["dialect"]["structured"] == "json_object"
        assert trace["dialect"]["tools"] == "json"  # no tool calls came back to the probe
        assert trace["plan"]["tools"] == "json" and trace["reply"]["result"] == "ok"
        _assert_flagship_items(engine, first)
        sent = len(server.requests)
        second = session.send("none of these")
        assert second.trace["llm"]["fallbacks"] == []
        later = [r["body"] for r in server.requests[sent:]]
        assert later and all(
            b.get("response_format", {}).get("type") != "json_schema" for b in later
        )
        assert "probe_tools" not in [request_kind(b) for b in later]  # asked once
        fmt = later[0]["response_format"]
        assert fmt["type"] == "json_object" and fmt["schema"]["type"] == "object"


def test_a_server_without_json_mode_or_tools_gets_json_in_the_prompt(engine, tmp_path):
    with _dialect_server("plain") as server:
        server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
        turn = _conversation(engine, server, tmp_path, cooldown=60).start().send(FLAGSHIP)
        trace = turn.trace["llm"]
        assert trace["fallbacks"] == [] and trace["dialect"]["structured"] == "prompt"
        assert trace["dialect"]["tools"] == "json"
        rejected = [c for c in trace["calls"] if c.get("errors")]
        assert all("rejected (400)" in c["errors"][0] for c in rejected)
        prompt_only = [r["body"] for r in server.requests if "response_format" not in r["body"]]
        assert '"intents"' in prompt_only[0]["messages"][0]["content"]  # the schema, in words
        _assert_flagship_items(engine, turn)


def test_fixed_forms_from_the_config_are_used_as_given(engine, llm_server, tmp_path):
    conversation = _conversation(
        engine, llm_server, tmp_path, json_mode="json_object", tools="json"
    )
    conversation.start().send(FLAGSHIP)
    bodies = [r["body"] for r in llm_server.requests]
    assert all("tools" not in b for b in bodies)
    assert {b["response_format"]["type"] for b in bodies} == {"json_object"}
    assert "probe_tools" not in [request_kind(b) for b in bodies]


def _check_cli(server_url: str, *extra: str):
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "whyrec.cli",
            "llm",
            "check",
            "--llm-base-url",
            server_url,
            "--llm-model",
            "test-model",
            "--llm-timeout",
            "2",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("dialect", "structured", "tools"),
    [
        ("openai", "json_schema", "native"),
        ("llama.cpp", "json_object", "json"),
        ("plain", "prompt", "json"),
    ],
)
def test_llm_check_names_the_dialect(dialect, structured, tools):
    from whyrec.llm.check import check_server

    def sums(body):
        return json_reply({"sum": 5}) if request_kind(body) == "probe_json" else helpful(body)

    for describe in (False, True):
        with _dialect_server(dialect, describe) as server:
            server.responder = sums
            report = check_server(_config(server))
        assert report.ok, report
        assert (report.structured, report.tools) == (structured, tools)
        assert report.forms[structured] == "works" and report.latency is not None
        refused = [r for r in server.requests if dialect_answer(dialect, r["body"])]
        if describe:  # the forms the description rules out are not sent
            assert report.described.startswith("openapi.json")
            assert all(request_kind(r["body"]) == "probe_tools" for r in refused)
            assert all(
                v == "not offered by the server's description"
                for form, v in report.forms.items()
                if form != structured
            )
        else:
            assert report.described == "none"


def test_llm_check_cli_reports_and_fails_in_one_line(llm_server):
    from llm_server import ScriptedLLM

    llm_server.responder = lambda body: json_reply({"sum": 5})
    done = _check_cli(llm_server.base_url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dialect"] == {"structured": "json_schema", "tools": "native"}
    closed = ScriptedLLM()
    url = closed.base_url
    closed.stop()
    done = _check_cli(url)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "--llm-base-url" in lines[0]
    import os
    import subprocess
    import sys

    bare = {k: v for k, v in os.environ.items() if not k.startswith("WHYREC_LLM_")}
    done = subprocess.run(
        [sys.executable, "-m", "whyrec.cli", "llm", "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=bare | {"HOME": "/nonexistent"},
    )
    assert done.returncode == 2 and "not configured" in done.stderr
    with _dialect_server("openai") as server:  # answers every form with a 500
        server.responder = lambda body: error(500)
        done = _check_cli(server.base_url)
    assert done.returncode == 2 and "rejected every way" in done.stderr


# ----- the LLM as a recommender, under the shared protocol -------------------------------------
def _recommender_llm(dataset):
    """Names eight catalog films nobody has seen, one film the user saw and one invented
    film; reranks by reversing the candidates and adding a number that is no candidate."""
    import numpy as np

    unseen = np.flatnonzero(dataset.item_popularity() == 0)[:8]
    fresh = [dataset.catalog.titles[p] for p in unseen]

    def respond(body):
        data = request_data(body)
        if request_kind(body) == "recommend_titles":
            watched = data["watched"]
            titles = [fresh[0], FAKE_TITLES[0], watched[0], *fresh[1:]]
            return json_reply({"titles": titles})
        if request_kind(body) == "rerank":
            numbers = [int(c.split(".")[0]) for c in data["candidates"]][::-1]
            return json_reply({"order": [999, *numbers[:10]]})
        return error(500)

    return respond


def test_evaluate_llm_and_llm_rerank_under_the_protocol(ml_core, llm_server, tmp_path):
    from whyrec.cli import main

    llm_server.responder = _recommender_llm(ml_core)
    out = tmp_path / "llm.json"
    argv = [
        "evaluate",
        "--kcore",
        "20",
        "--models",
        "pop,llm,llm-rerank",
        "--max-users",
        "6",
        "--json",
        str(out),
        "--k",
        "10",
        "--llm-base-url",
        llm_server.base_url,
        "--llm-model",
        "test-model",
        "--param",
        "llm-rerank.candidates=20",
    ]
    try:
        main(argv)
    except SystemExit as exited:
        assert exited.code in (0, None)
    report = json.loads(out.read_text())
    assert report["split"]["test_users"] == 6 and report["split"]["sampled_users"]["of"] > 6
    llm = report["models"]["llm"]["llm"]
    assert llm["parsed"] == 1.0 and llm["calls"] == 6 and llm["tokens"] > 0
    assert llm["hallucinated"] == pytest.approx(0.1) and llm["repeated"] == pytest.approx(0.1)
    rerank = report["models"]["llm-rerank"]["llm"]
    assert rerank["parsed"] == 1.0 and rerank["hallucinated"] == pytest.approx(1 / 10)
    assert 0 <= report["models"]["llm"]["metrics"]["ndcg@10"]["mean"] <= 1
    pairs = {(r["model_a"], r["model_b"]) for r in report["significance"]}
    assert ("popularity", "llm") in pairs and all(r["n_users"] == 6 for r in report["significance"])


def test_json_object_schemas_carry_no_repetition_bounds_for_grammar_compilers():
    """llama.cpp turns a maxLength of 1,000 into a thousand nested grammar rules and gives up;
    the grammar form drops such bounds (pydantic still checks them), the json_schema form
    keeps the schema whole."""
    from whyrec.llm.client import LLMClient

    schema = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": 1000, "minLength": 1},
            "order": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
            "titles": {"type": "array", "items": {"type": "string"}, "minItems": 10},
            "picks": {"type": "array", "items": {"type": "integer"}, "maxItems": 10},
            "many": {"type": "array", "items": {"type": "string"}, "minItems": 1000},
        },
        "required": ["text"],
    }
    client = LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", model="m"))
    messages = [{"role": "user", "content": "hi"}]
    grammar = client.body(messages, ("reply", schema), form="json_object")["response_format"]
    sent = json.dumps(grammar["schema"])
    assert "maxLength" not in sent and "minLength" not in sent and '"maxItems": 50' not in sent
    assert "1000" not in sent
    assert grammar["schema"]["required"] == ["text"]
    # a few required entries stay (an empty list is no answer to "name ten films")
    assert grammar["schema"]["properties"]["titles"]["minItems"] == 10
    assert "minItems" not in grammar["schema"]["properties"]["many"]
    # and a few allowed ones (ten numbers asked for must not run on past the token cap)
    assert grammar["schema"]["properties"]["picks"]["maxItems"] == 10
    full = client.body(messages, ("reply", schema), form="json_schema")["response_format"]
    assert full["json_schema"]["schema"]["properties"]["text"]["maxLength"] == 1000


def test_server_speed_is_learned_only_from_calls_nothing_of_ours_was_ahead_of():
    """A call sent while a given-up call is still being read waits for it: its first
    chunk says nothing about reading speed (a short probe behind a long prompt would teach
    a rate a hundred times too slow, and no call would start again)."""
    from whyrec.llm.client import ServerSpeed, StreamedCall

    speed = ServerSpeed()
    alone = StreamedCall("dialogue_acts", 1000, started=0.0, busy_until=0.0, first=2.0, end=3.0)
    alone.chunks, alone.complete = 11, True
    speed.learn(alone)
    assert speed.prompt_seconds_per_char == pytest.approx(0.002)
    assert speed.seconds_per_token == pytest.approx(0.1)
    behind = StreamedCall("probe_tools", 100, started=3.0, busy_until=0.0, first=20.0, end=20.1)
    behind.queued, behind.chunks = True, 2
    speed.learn(behind)
    assert speed.prompt_seconds_per_char == pytest.approx(0.002)  # unchanged
    estimate = speed.estimate("dialogue_acts", 1000, max_tokens=100)
    assert estimate == pytest.approx((2.0 + 11 * speed.seconds_per_token) * 1.2)


def test_server_speed_counts_only_the_prompt_the_server_has_not_read_yet():
    """llama.cpp keeps its last prompt's state and reads a new prompt from where it
    differs: a call is estimated (and teaches reading speed) by its unread characters."""
    from whyrec.llm.client import ServerSpeed, StreamedCall

    speed = ServerSpeed()
    shared = "s" * 3000
    assert speed.unread(shared + "facts") == 3005  # nothing sent yet
    speed.sent(shared + "one turn's facts")
    assert speed.unread(shared + "the next facts") == len("the next facts")
    first = StreamedCall("grounded_reply", 1000, started=0.0, busy_until=0.0, first=2.0, end=2.5)
    first.chunks, first.complete = 6, True
    speed.learn(first)
    cached = speed.estimate("grounded_reply", speed.unread(shared + "x" * 500), max_tokens=50)
    cold = speed.estimate("grounded_reply", 3500, max_tokens=50)
    assert cached == pytest.approx((1.0 + 6 * 0.1) * 1.2) and cold > 4 * cached
    # a call with little to read teaches no reading speed: its wait is the request's cost
    tiny = StreamedCall("grounded_reply", 20, started=3.0, busy_until=0.0, first=3.5, end=3.6)
    speed.learn(tiny)
    assert speed.prompt_seconds_per_char == pytest.approx(0.002)


def test_a_turns_calls_share_one_system_message_and_send_tight_schemas(
    engine, llm_server, tmp_path
):
    """The understanding, plan and reply open with the same rules (a server's prompt cache
    then reads only each call's task line and facts), and their schemas leave a grammar
    little to write: a value's field is a catalog field, the reply's order only this call's
    candidate ids, and no profile object (the profile is read off the grounded acts)."""
    llm_server.script("dialogue_acts", json_reply(FLAGSHIP_ACTS))
    turn = _conversation(engine, llm_server, tmp_path, timeout=ROOMY).start().send(FLAGSHIP)
    assert turn.trace["llm"]["reply"]["result"] == "ok"
    bodies = {request_kind(r["body"]): r["body"] for r in llm_server.requests}
    systems = {
        kind: body["messages"][0]["content"].split("\ntask: ")[0] for kind, body in bodies.items()
    }
    assert systems["dialogue_acts"] == systems["plan"] == systems["grounded_reply"]
    acts = bodies["dialogue_acts"]["response_format"]["json_schema"]["schema"]
    assert "profile" not in acts["properties"]
    assert acts["$defs"]["ValueAct"]["properties"]["field"]["enum"] == list(engine.catalog.fields)
    order = bodies["grounded_reply"]["response_format"]["json_schema"]["schema"]["properties"]
    sent = [c["item_id"] for c in request_data(bodies["grounded_reply"])["candidates"]]
    assert order["order"]["items"]["enum"] == sent and order["order"]["maxItems"] == len(sent)
    assert "Toy Story" in " ".join(turn.state["memory"]["likes"])


def test_the_guard_refuses_a_year_in_parentheses_without_a_given_title_before_it(engine):
    """SmolLM2 wrote "The (2014) is a film about ..." and "the (1985) and (1976)": no
    marker, no capitalised name, yet a reference to a film that is not given. A year in
    parentheses names a film only after a given item's title."""
    from whyrec.llm.guard import ReplyGuard

    guard = ReplyGuard(engine.catalog)
    given = engine.catalog.position(engine.catalog.item_ids[0])
    title = engine.catalog.titles[given]
    for invented in ("The (2014) is a film about a hero.", "It is about the (1985) and (1976)."):
        assert not guard.check(invented, [given]).ok
    assert guard.check(f"You may like {title}, a fine pick.", [given]).ok
    marker = f"You may like [[{engine.catalog.item_ids[0]}]], a fine pick."
    assert guard.check(marker, [given]).text == f"You may like {title}, a fine pick."
    assert guard.check(marker, [given]).ok
