"""The web view's page: HTML, CSS and script, served as three files.

No framework and no inline script or style, so the page's Content Security
Policy can forbid both: whatever a graph's names or params hold, it is set
as text (``textContent``), never parsed as markup, and a string that slipped
through as markup still could not run.

How it works: the page opens the event stream (``events``); the first event
is a snapshot of every vertex, the next ones are single vertices as they
change. It fetches ``graph.svg`` (graphviz's layout) whenever the graph
changes, and colours each node by the state of its vertex (a class per
state, ``data-status`` on the node). Clicking a node or a row fetches
``vertex/NAME``: its params (secrets redacted), last diff and last error.
"""

from __future__ import annotations

#: the Content-Security-Policy of the page: its own script and style only
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pymgmt</title>
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header>
  <h1>pymgmt <span id="graph-name"></span> <span id="host"></span></h1>
  <div id="summary">
    <span id="overall" class="badge">connecting</span>
    <span class="count state-pending"><b id="n-pending">0</b> pending</span>
    <span class="count state-applying"><b id="n-applying">0</b> applying</span>
    <span class="count state-converged"><b id="n-converged">0</b> converged</span>
    <span class="count state-failed"><b id="n-failed">0</b> failed</span>
    <span id="connection" class="badge">offline</span>
  </div>
</header>
<main>
  <section id="left">
    <div id="graph" aria-label="the running graph"></div>
    <table id="vertices">
      <thead><tr><th>resource</th><th>state</th><th>last check</th><th>last change</th>
      <th>repairs</th><th>last error</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <aside id="details">
    <p class="hint">Click a resource to see its params, last diff and last error.</p>
    <div id="detail" hidden>
      <h2 id="d-name"></h2>
      <p><span id="d-status" class="badge"></span></p>
      <dl>
        <dt>last check</dt><dd id="d-check"></dd>
        <dt>last change</dt><dd id="d-change"></dd>
        <dt>checks / applies / drift repairs</dt><dd id="d-counts"></dd>
        <dt>pending refreshes</dt><dd id="d-refreshes"></dd>
      </dl>
      <h3>last error</h3><pre id="d-error"></pre>
      <h3>last diff</h3><pre id="d-diff"></pre>
      <h3>params</h3><pre id="d-params"></pre>
    </div>
    <h3>activity</h3>
    <ol id="activity" reversed></ol>
  </aside>
</main>
</body>
</html>
"""

CSS = """
:root { --pending: #d9d9d9; --applying: #ffd54f; --converged: #a5d6a7; --failed: #ef9a9a; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { padding: 8px 16px; background: #263238; color: #fff; }
header h1 { font-size: 18px; margin: 0 0 4px; }
#host { font-weight: normal; color: #b0bec5; }
#summary { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.badge { padding: 1px 8px; border-radius: 8px; background: #546e7a; color: #fff; }
#overall.ok { background: #2e7d32; } #overall.busy { background: #f9a825; color: #222; }
#overall.bad { background: #c62828; } #connection.on { background: #2e7d32; }
.count { padding: 1px 6px; border-radius: 4px; color: #222; }
.count.state-pending, .badge.state-pending { background: var(--pending); color: #222; }
.count.state-applying, .badge.state-applying { background: var(--applying); color: #222; }
.count.state-converged, .badge.state-converged { background: var(--converged); color: #222; }
.count.state-failed, .badge.state-failed { background: var(--failed); color: #222; }
main { display: flex; gap: 16px; padding: 12px 16px; align-items: flex-start; }
#left { flex: 3; min-width: 0; }
#details { flex: 2; min-width: 280px; background: #fff; border: 1px solid #ddd; padding: 8px 12px; }
#graph { background: #fff; border: 1px solid #ddd; overflow: auto; max-height: 70vh; }
#graph svg { display: block; margin: auto; max-width: 100%; height: auto; }
#graph.nograph { padding: 12px; color: #777; }
#graph g.node { cursor: pointer; }
#graph g.node > polygon, #graph g.node > ellipse, #graph g.node > path { transition: fill 0.2s; }
#graph g.node.state-pending > polygon, #graph g.node.state-pending > path { fill: var(--pending); }
#graph g.node.state-applying > polygon, #graph g.node.state-applying > path {
  fill: var(--applying); }
#graph g.node.state-converged > polygon, #graph g.node.state-converged > path {
  fill: var(--converged); }
#graph g.node.state-failed > polygon, #graph g.node.state-failed > path { fill: var(--failed); }
#graph g.node.selected > polygon { stroke: #1565c0; stroke-width: 3; }
table { border-collapse: collapse; width: 100%; margin-top: 12px; background: #fff; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
tbody tr { cursor: pointer; } tbody tr:hover, tbody tr.selected { background: #e3f2fd; }
td.err { color: #b71c1c; max-width: 24em; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
pre { background: #f5f5f5; padding: 6px; white-space: pre-wrap; word-break: break-all;
  max-height: 20em; overflow: auto; margin: 0; }
dt { color: #666; } dd { margin: 0 0 4px; }
#activity { font-size: 12px; padding-left: 24px; max-height: 30vh; overflow: auto; }
.hint { color: #777; }
"""

JS = r"""
"use strict";
const STATES = ["pending", "applying", "converged", "failed"];
const ACTIVITY = 100;
const page = {
  vertices: new Map(), nodes: new Map(), rows: new Map(), drawn: new Map(),
  selected: null, generation: -1, agent: {},
};

function $(id) { return document.getElementById(id); }

function when(t) {
  if (t === null || t === undefined) return "never";
  const ago = Math.max(0, Date.now() / 1000 - t);
  const s = ago < 60 ? `${ago.toFixed(1)} s ago` : `${Math.round(ago / 60)} min ago`;
  return `${new Date(t * 1000).toLocaleTimeString()} (${s})`;
}

function setState(el, status) {
  for (const s of STATES) el.classList.remove(`state-${s}`);
  el.classList.add(`state-${status}`);
  el.dataset.status = status;
}

function paint(name) {
  const v = page.vertices.get(name);
  if (!v) return;
  const g = page.drawn.get(name);
  if (g) setState(g, v.status);
  row(v);
}

function paintAll() {
  for (const name of page.vertices.keys()) paint(name);
  summary();
}

function row(v) {
  let tr = page.rows.get(v.name);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.vertex = v.name;
    for (let i = 0; i < 6; i++) tr.appendChild(document.createElement("td"));
    tr.addEventListener("click", () => select(v.name));
    document.querySelector("#vertices tbody").appendChild(tr);
    page.rows.set(v.name, tr);
  }
  const cells = tr.children;
  cells[0].textContent = v.name;
  cells[1].textContent = v.status;
  setState(cells[1], v.status);
  cells[2].textContent = when(v.last_check);
  cells[3].textContent = when(v.last_change);
  cells[4].textContent = String(v.drift_repairs);
  cells[5].textContent = v.status === "failed" ? (v.last_error || "") : "";
  cells[5].className = "err";
  tr.classList.toggle("selected", page.selected === v.name);
}

function summary() {
  const n = { pending: 0, applying: 0, converged: 0, failed: 0 };
  for (const v of page.vertices.values()) n[v.status] += 1;
  for (const s of STATES) $(`n-${s}`).textContent = String(n[s]);
  const overall = $("overall");
  overall.className = "badge";
  const [word, cls] = n.failed ? ["failures", "bad"]
    : n.applying || n.pending ? ["working", "busy"]
    : page.vertices.size ? ["converged", "ok"] : ["no resources", null];
  overall.textContent = word;
  if (cls) overall.classList.add(cls);
}

function activity(v, before) {
  if (before === v.status) return;
  const li = document.createElement("li");
  const at = new Date().toLocaleTimeString();
  li.textContent = `${at} ${v.name}: ${before || "new"} -> ${v.status}`;
  li.dataset.vertex = v.name;
  li.dataset.status = v.status;
  const list = $("activity");
  list.prepend(li);
  while (list.children.length > ACTIVITY) list.lastElementChild.remove();
}

async function drawGraph() {
  const holder = $("graph");
  let text;
  try {
    const r = await fetch("graph.svg", { cache: "no-store" });
    text = await r.text();
    if (!r.ok) throw new Error(text);
  } catch (e) {
    holder.classList.add("nograph");
    holder.textContent = `No picture of the graph: ${e.message}`;
    return;
  }
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = document.importNode(doc.documentElement, true);
  holder.classList.remove("nograph");
  holder.replaceChildren(svg);
  page.drawn = new Map();
  for (const g of svg.querySelectorAll("g.node")) {
    const title = g.querySelector("title");
    const name = page.nodes.get(title ? title.textContent : "");
    if (!name) continue;
    g.dataset.vertex = name;
    g.classList.toggle("selected", name === page.selected);
    g.addEventListener("click", () => select(name));
    page.drawn.set(name, g);
  }
  holder.dataset.generation = String(page.generation);
  paintAll();
}

function snapshot(s) {
  page.agent = s.agent;
  $("graph-name").textContent = s.agent.graph ? `- ${s.agent.graph}` : "";
  const where = s.agent.hostname ? `on ${s.agent.hostname}, ` : "";
  $("host").textContent = `${where}pid ${s.agent.pid}, pymgmt ${s.agent.version}`;
  const seen = new Set();
  for (const v of s.vertices) {
    const before = page.vertices.get(v.name);
    page.vertices.set(v.name, v);
    activity(v, before ? before.status : null);
    seen.add(v.name);
  }
  for (const name of [...page.vertices.keys()]) {
    if (!seen.has(name)) {
      page.vertices.delete(name);
      const tr = page.rows.get(name);
      if (tr) tr.remove();
      page.rows.delete(name);
    }
  }
  page.nodes = new Map(Object.entries(s.nodes));
  if (s.generation !== page.generation) {
    page.generation = s.generation;
    drawGraph();
  }
  paintAll();
  if (page.selected) details(page.selected);
}

function vertex(v) {
  const before = page.vertices.get(v.name);
  page.vertices.set(v.name, v);
  activity(v, before ? before.status : null);
  paint(v.name);
  summary();
  if (page.selected === v.name) details(v.name);
}

async function details(name) {
  const r = await fetch(`vertex/${encodeURIComponent(name)}`, { cache: "no-store" });
  if (page.selected !== name) return;
  if (!r.ok) { $("detail").hidden = true; return; }
  const v = await r.json();
  $("detail").hidden = false;
  document.querySelector("#details .hint").hidden = true;
  $("d-name").textContent = v.name;
  $("d-status").textContent = v.status;
  setState($("d-status"), v.status);
  $("d-check").textContent = when(v.last_check);
  $("d-change").textContent = when(v.last_change);
  $("d-counts").textContent = `${v.checks} / ${v.applies} / ${v.drift_repairs}`;
  $("d-refreshes").textContent = String(v.pending_refreshes);
  $("d-error").textContent = v.last_error || "none";
  $("d-diff").textContent = v.last_diff || "none";
  $("d-params").textContent = JSON.stringify(v.params, null, 2);
}

function select(name) {
  page.selected = name;
  for (const g of document.querySelectorAll("#graph g.node")) {
    g.classList.toggle("selected", g.dataset.vertex === name);
  }
  for (const tr of document.querySelectorAll("#vertices tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.vertex === name);
  }
  details(name);
}

function connect() {
  const es = new EventSource("events");
  es.addEventListener("open", () => {
    $("connection").textContent = "live";
    $("connection").classList.add("on");
  });
  es.addEventListener("error", () => {
    $("connection").textContent = "offline (retrying)";
    $("connection").classList.remove("on");
  });
  es.addEventListener("snapshot", (e) => snapshot(JSON.parse(e.data)));
  es.addEventListener("vertex", (e) => vertex(JSON.parse(e.data)));
  es.addEventListener("settled", () => summary());
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  // "3.2 s ago" ages: refresh the table's times now and then
  setInterval(() => { for (const v of page.vertices.values()) row(v); }, 5000);
});
"""
