"""The chat page in real headless Chromium (Debian's), against a real `whyrec serve`.

Send a message, see cards, unfold "why?", like an item, reload and find the session
resumed. Screenshots go to the test's tmp folder; the conversation one is also copied to
docs/screenshots/ for review.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from live_server import LiveServer
from system_deps import require

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    require(CHROMIUM.exists(), "Debian's chromium", "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(served_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    with LiveServer(served_bundle, str(folder / "store.sqlite"), folder / "server.log") as live:
        yield live


def test_chat_page_end_to_end(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.wait_for_selector(".msg.assistant")  # the greeting of a fresh session
    page.fill("#message", "a funny animated film from the 90s, like Toy Story")
    page.click("#send")
    cards = page.locator(".cards").first.locator(".card")
    cards.first.wait_for()
    assert cards.count() >= 3
    first = cards.first
    title = first.locator("h3").inner_text()
    assert first.locator(".chip").count() >= 1
    assert first.locator(".reason").inner_text().startswith("Because you liked")

    first.locator("button.why").click()
    details = first.locator(".details")
    assert details.is_visible()
    assert "Toy Story" in details.inner_text()
    graph = details.locator("svg.graph")
    assert graph.is_visible() and graph.locator("g.node-liked").count() >= 1
    assert graph.locator("g.node-item").count() == 1
    page.screenshot(path=str(tmp_path / "why.png"), full_page=True)

    replies_before = page.locator(".msg.assistant").count()
    first.locator("button.like").click()
    page.wait_for_function(
        f"document.querySelectorAll('.msg.assistant:not(.pending)').length > {replies_before}"
    )
    expect(first.locator("button.like")).to_have_attribute("aria-pressed", "true")
    last_reply = page.locator(".msg.assistant").last.inner_text()
    assert last_reply.startswith("Noted: you like")
    page.screenshot(path=str(tmp_path / "liked.png"), full_page=True)

    page.reload()
    page.wait_for_selector(".card")
    assert "resumed" in page.locator("#status").inner_text()
    assert page.locator(".msg.user").count() == 2
    assert page.locator(".msg.user").first.inner_text().startswith("a funny animated film")
    assert page.locator(".msg.user").last.inner_text().startswith("I like")
    assert page.locator(".card h3").first.inner_text() == title
    page.screenshot(path=str(tmp_path / "resumed.png"), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "why.png", SHOTS / "chat-why.png")
    assert not errors, errors


def test_chat_page_error_states(browser, server, tmp_path):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector(".msg.assistant")
    # a stale session (as after a server move) is dropped and a fresh one started
    page.evaluate(
        "localStorage.setItem('whyrec.session', JSON.stringify({session_id: 'gone', token: 'x'}))"
    )
    page.reload()
    page.wait_for_function(
        "((JSON.parse(localStorage.getItem('whyrec.session')) || {}).session_id || 'gone')"
        " !== 'gone'"
    )
    # a message the server refuses shows its reason, and the typed text is kept for a retry
    page.fill("#message", "x")
    page.evaluate("document.getElementById('message').value = 'y'.repeat(2500)")
    page.click("#send")
    page.wait_for_selector("#error:not([hidden])")
    assert "2000" in page.locator("#error-text").inner_text()
    assert len(page.input_value("#message")) == 2500
    # an unreachable server is an error message, not a silent failure
    page.route("**/v1/sessions/*/messages", lambda route: route.abort())
    page.fill("#message", "comedies")
    page.click("#send")
    page.wait_for_function("document.getElementById('error-text').textContent.includes('reach')")
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)


def test_chat_page_asks_for_a_key_when_the_server_needs_one(browser, served_bundle, tmp_path):
    with LiveServer(
        served_bundle, str(tmp_path / "k.sqlite"), tmp_path / "k.log", "--api-key", "sesame"
    ) as keyed:
        assert httpx.post(keyed.url + "/v1/sessions", json={}).status_code == 401
        page = browser.new_page()
        page.goto(keyed.url + "/")
        page.wait_for_selector("#key-form:not([hidden])")  # refused without a key: it asks
        expect(page.locator(".card")).to_have_count(0)
        page.fill("#api-key", "sesame")
        page.click("#key-form button")
        page.wait_for_function("document.getElementById('status').textContent.includes('session')")
        expect(page.locator("#key-form")).to_be_hidden()
        page.fill("#message", "I love The Matrix")
        page.click("#send")
        page.wait_for_selector(".card")
        assert page.locator(".card").count() >= 1
        assert page.evaluate("localStorage.getItem('whyrec.apiKey')") == "sesame"
