// whyrec chat page: plain JavaScript over the HTTP API, no framework, no build step.
"use strict";

const SESSION_KEY = "whyrec.session";
const API_KEY = "whyrec.apiKey";
const $ = (id) => document.getElementById(id);
const store = {
  get session() { try { return JSON.parse(localStorage.getItem(SESSION_KEY)); } catch { return null; } },
  set session(v) { v ? localStorage.setItem(SESSION_KEY, JSON.stringify(v)) : localStorage.removeItem(SESSION_KEY); },
  get apiKey() { return localStorage.getItem(API_KEY); },
  set apiKey(v) { v ? localStorage.setItem(API_KEY, v) : localStorage.removeItem(API_KEY); },
};

class ApiError extends Error {
  constructor(status, message, retryAfter) { super(message); this.status = status; this.retryAfter = retryAfter; }
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (store.apiKey) headers["X-API-Key"] = store.apiKey;
  const session = store.session;
  if (session && path.startsWith("/v1/sessions/")) headers["Authorization"] = `Bearer ${session.token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "Cannot reach the server. Check your connection and try again.");
  }
  let data = null;
  try { data = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const message = (data && data.error && data.error.message) || response.statusText || "request failed";
    throw new ApiError(response.status, message, response.headers.get("Retry-After"));
  }
  return data;
}

// ----- error states -----------------------------------------------------------------------
function showError(error) {
  let text = error.message;
  if (error.status === 429) text = `Too many requests: wait ${error.retryAfter || "a few"} s and try again.`;
  else if (error.status >= 500) text = `The server failed (${error.message}). Try again in a moment.`;
  else if (error.status === 413) text = "That message is too long.";
  $("error-text").textContent = text;
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; }
function setBusy(busy) {
  $("send").disabled = busy;
  $("message").disabled = busy;
  document.querySelectorAll(".card button.like, .card button.dislike").forEach((b) => { b.disabled = busy; });
}
function setStatus(text) { $("status").textContent = text; }

// ----- rendering ------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
}

function bubble(role, text, question) {
  const node = el("div", { class: `msg ${role}` }, text);
  if (question && !text.includes(question)) node.append(el("div", { class: "question" }, question));
  $("conversation").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function firstSentence(text) {
  const end = text.search(/\.(\s|$)/);
  return end > 0 ? text.slice(0, end + 1) : text;
}

function cleanTitle(item) {
  return item.year ? item.title.replace(/\s*\(\d{4}[^)]*\)\s*$/, "") : item.title;
}

function chips(attributes) {
  const shown = [];
  for (const [field, values] of Object.entries(attributes || {})) {
    const limit = field === "tags" ? 3 : 4;
    for (const value of values.slice(0, limit)) {
      if (field === "decade" || value === "(no genres listed)") continue;
      shown.push(el("span", { class: `chip ${field === "tags" ? "tag" : ""}`, title: field }, value));
    }
  }
  return el("div", { class: "chips" }, shown);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}
const short = (s, n = 24) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

// liked items → shared attribute values → the recommended item, edge width by weight
function pathGraph(item, explanation) {
  const paths = (explanation.paths || []).slice(0, 8);
  const liked = [...new Set([...paths.map((p) => p.from_title), ...(explanation.history || []).map((h) => h.title)])].slice(0, 4);
  const values = [...new Set(paths.map((p) => `${p.field}: ${p.value}`))].slice(0, 5);
  if (!liked.length) return null;
  const rows = Math.max(liked.length, values.length, 1);
  const height = rows * 34 + 10;
  const graph = svg("svg", { class: "graph", viewBox: `0 0 520 ${height}`, role: "img",
    "aria-label": `why ${item.title}: liked items, shared attributes and the recommendation` });
  const y = (i, n) => 10 + (i + 0.5) * ((height - 20) / n);
  const node = (x, cy, w, label, kind) => {
    const g = svg("g", { class: `node-${kind}` });
    g.append(svg("rect", { x, y: cy - 11, width: w, height: 22, rx: 5 }));
    g.append(svg("text", { x: x + 6, y: cy + 4 }, short(label, kind === "value" ? 20 : 25)));
    g.append(svg("title", {}, label));
    graph.append(g);
  };
  const edge = (x1, y1, x2, y2, weight, dashed) => {
    const mid = (x1 + x2) / 2;
    graph.append(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
      "stroke-width": Math.max(1, Math.min(6, 1 + weight * 8)), "stroke-dasharray": dashed ? "4 3" : "" }));
  };
  const itemY = height / 2;
  const shareOf = Object.fromEntries((explanation.history || []).map((h) => [h.title, Math.abs(h.share)]));
  liked.forEach((title, i) => {
    const ly = y(i, liked.length);
    const own = paths.filter((p) => p.from_title === title);
    if (!own.length) edge(160, ly, 360, itemY, shareOf[title] || 0.1, true);
    for (const p of own) {
      const vi = values.indexOf(`${p.field}: ${p.value}`);
      if (vi >= 0) edge(160, ly, 200, y(vi, values.length), shareOf[title] || p.weight, false);
    }
  });
  values.forEach((v, i) => edge(330, y(i, values.length), 360, itemY, 0.15, false));
  liked.forEach((title, i) => node(0, y(i, liked.length), 160, title, "liked"));
  values.forEach((v, i) => node(200, y(i, values.length), 130, v, "value"));
  node(360, itemY, 160, item.title, "item");
  return graph;
}

function details(item) {
  const e = item.explanation || {};
  const box = el("div", { class: "details", hidden: "" });
  box.append(el("p", {}, e.text || "No explanation available."));
  if ((e.history || []).length) {
    box.append(el("strong", {}, e.history_method === "exact" ? "Share of the score from items you liked:" : "Score lost without each liked item:"));
    box.append(el("ul", {}, e.history.map((h) => el("li", {}, `${h.title} — ${Math.round(h.share * 100)}%`,
      el("span", { class: "bar", style: `width:${Math.round(Math.abs(h.share) * 80)}px` })))));
  }
  if (e.collaborative && e.collaborative.users_with_cited) {
    box.append(el("p", {}, `${e.collaborative.users_with_both} of ${e.collaborative.users_with_cited} people who liked those also liked this.`));
  }
  if (e.confidence) box.append(el("p", {}, `Confidence: ${e.confidence.label}.`));
  const graph = pathGraph(item, e);
  if (graph) box.append(graph);
  return box;
}

function card(item) {
  const e = item.explanation || {};
  const more = details(item);
  const why = el("button", { class: "why", type: "button", "aria-expanded": "false",
    onclick: () => { more.hidden = !more.hidden; why.closest(".card").classList.toggle("open", !more.hidden); why.setAttribute("aria-expanded", String(!more.hidden)); why.textContent = more.hidden ? "why?" : "hide why"; } }, "why?");
  const react = (liked) => async (event) => {
    const button = event.currentTarget;
    const ok = await send({ reaction: { item_id: item.item_id, liked } }, `${liked ? "I like" : "Not for me:"} ${item.title}`);
    if (ok) button.setAttribute("aria-pressed", "true");
  };
  return el("article", { class: "card", "data-item-id": item.item_id },
    el("h3", {}, cleanTitle(item), item.year ? el("span", { class: "year" }, ` (${item.year})`) : null),
    chips(item.attributes),
    el("p", { class: "reason" }, firstSentence(e.text || "")),
    el("div", { class: "actions" }, why,
      el("button", { class: "like", type: "button", title: "I like this", "aria-pressed": "false", onclick: react(true) }, "♥ like"),
      el("button", { class: "dislike", type: "button", title: "Not for me", "aria-pressed": "false", onclick: react(false) }, "not for me")),
    more);
}

function renderTurn(turn) {
  // with cards, the reply's numbered list would repeat them: keep its first line
  const hasCards = turn.items && turn.items.length;
  const reply = turn.reply ?? turn.text ?? "";  // a fresh turn, or a stored message
  bubble("assistant", hasCards ? reply.split("\n")[0] : reply, turn.question);
  if (turn.items && turn.items.length) {
    const list = el("section", { class: "cards" }, turn.items.map(card));
    $("conversation").append(list);
    list.scrollIntoView({ block: "start" });
  }
}

// ----- actions ---------------------------------------------------------------------------
async function send(body, shownText) {
  const session = store.session;
  if (!session) { await startSession(); return false; }
  clearError();
  setBusy(true);
  const mine = bubble("user", shownText);
  const waiting = bubble("assistant pending", "thinking…");
  try {
    const turn = await api("POST", `/v1/sessions/${session.session_id}/messages`, body);
    waiting.remove();
    renderTurn(turn);
    return true;
  } catch (error) {
    waiting.remove();
    mine.remove();
    showError(error);
    if (error.status === 401 || error.status === 404) { store.session = null; await startSession(); }
    return false;
  } finally {
    setBusy(false);
    $("message").focus();
  }
}

async function startSession() {
  try {
    const created = await api("POST", "/v1/sessions", {});
    store.session = created;
    $("conversation").replaceChildren();
    bubble("assistant", created.greeting || "Hi! Tell me a title you like or what it should be like.");
    setStatus(`session ${created.session_id}`);
  } catch (error) {
    if (error.status === 401) { $("key-form").hidden = false; $("api-key").focus(); }
    showError(error);
  }
}

async function resume(session) {
  try {
    const view = await api("GET", `/v1/sessions/${session.session_id}`);
    $("conversation").replaceChildren();
    for (const m of view.messages) {
      if (m.role === "user") bubble("user", m.text);
      else renderTurn(m);
    }
    setStatus(`session ${view.session_id} · resumed, turn ${view.turn}`);
    return true;
  } catch (error) {
    if (error.status === 401 || error.status === 404) { store.session = null; return false; }
    showError(error);
    return true;
  }
}

async function boot() {
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    const ok = await send({ text }, text);
    if (ok) $("message").value = "";
  });
  $("new-session").addEventListener("click", async () => { store.session = null; clearError(); await startSession(); });
  $("error-close").addEventListener("click", clearError);
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    store.apiKey = $("api-key").value.trim();
    $("key-form").hidden = true;
    clearError();
    await startSession();
  });
  const saved = store.session;
  if (!(saved && (await resume(saved)))) await startSession();
  $("message").focus();
}

boot();
