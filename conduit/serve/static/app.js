// The conduit agent's dashboard: reads /api/v1 with the token kept in sessionStorage, follows
// /api/v1/events, and draws its own SVG charts. Every value reaches the page as text, never as markup.
"use strict";

const KEY = "conduit-token";
const $ = (id) => document.getElementById(id);
let samples = [];

function token() { return sessionStorage.getItem(KEY); }

async function api(path) {
  const answer = await fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
  if (answer.status === 401) { signOut("that token was refused"); throw new Error("401"); }
  if (!answer.ok) throw new Error(path + ": " + answer.status);
  return answer.json();
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fill(list, items) { list.replaceChildren(...items); }

function mib(n) { return n === null || n === undefined ? "-" : Math.round(n / 1048576) + "M"; }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function stateClass(word) {
  if (word === "announced") return "good";
  return word === "starting" || word === "throttled" ? "warn" : "bad";
}

function nodeRow(n) {
  const tr = el("tr");
  const cpu = n.cpu === null ? "-" : n.cpu.toFixed(2) + "/" + n.cpu_limit;
  const cells = [n.name, n.status, n.connected + "+" + n.connecting, n.max_clients, cpu,
    mib(n.memory) + "/" + mib(n.memory_limit), n.restarts === null ? "-" : n.restarts, duration(n.uptime), n.version || "-"];
  cells.forEach((text, i) => tr.append(el("td", text, i === 1 ? stateClass(n.status) : "")));
  tr.dataset.node = n.name;
  tr.dataset.state = n.status;
  return tr;
}

async function loadNodes() {
  const nodes = await api("/api/v1/nodes");
  fill(document.querySelector("#nodes tbody"), nodes.map(nodeRow));
}

async function loadSummary() {
  const s = await api("/api/v1/summary");
  const t = s.totals;
  $("title").textContent = "conduit · " + s.cluster;
  $("nodes-title").textContent = `Nodes: ${t.running}/${t.containers} running, ${t.connected} connected, ${t.connecting} connecting`;
  fill($("alerts"), s.alerts.length ? s.alerts.map((a) => el("li", a)) : [el("li", "none", "good")]);
  $("drift").textContent = s.drift === null || s.drift === undefined ? "not checked yet"
    : s.drift.length ? s.drift.join(", ") : (s.pending ? s.pending + " changes pending" : "none: the host matches the spec");
  $("drift").className = s.drift && s.drift.length ? "warn" : "";
}

async function loadCountries() {
  const rows = await api("/api/v1/countries");
  fill($("countries"), rows.slice(0, 8).map((c) => el("li", `${c.region}: ${c.clients} clients, ${bytes(c.bytes_up + c.bytes_down)}`)));
  if (!rows.length) fill($("countries"), [el("li", "no figures yet")]);
}

async function loadFront() {
  const f = await api("/api/v1/front");
  const items = (f.listeners || []).map((l) => el("li",
    `${l.listener} ${l.port}: ${l.listening === false ? "NOT listening" : "listening"}` +
    (l.backends ? `, backends ${l.backends_up}/${l.backends} up` : ""), l.listening === false ? "bad" : ""));
  if (f.capacity) items.push(el("li", f.capacity.running ? `${f.capacity.connections} connections` +
    (f.capacity.ceiling ? ` of ${f.capacity.ceiling}` : "") : "front nginx NOT running", f.capacity.running ? "" : "bad"));
  fill($("front"), items.length ? items : [el("li", "no front in this spec")]);
}

async function loadGenerations() {
  const gens = await api("/api/v1/generations");
  fill($("generations"), gens.slice(-10).reverse().map((g) => {
    const when = new Date(g.started * 1000).toLocaleString();
    const commit = g.git_commit ? " @" + g.git_commit.slice(0, 10) + (g.git_dirty ? "+dirty" : "") : "";
    const cls = g.outcome === "succeeded" ? "good" : g.outcome === "applying" ? "warn" : "bad";
    const li = el("li", `#${g.id} ${when} `);
    li.append(el("span", g.outcome, cls), el("span", commit + (g.reason ? ": " + g.reason : "")));
    return li;
  }));
}

function polyline(points, cls) {
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((p) => p.join(",")).join(" "));
  if (cls) line.setAttribute("class", cls);
  return line;
}

// Each series scaled into the 300 x 100 box, time along x; the top of the box is the series' maximum.
function draw(svg, series) {
  const all = series.flat();
  if (all.length < 2) { svg.replaceChildren(); return; }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const top = Math.max(1, ...all.map((p) => p[1]));
  const scale = (p) => [((p[0] - t0) / Math.max(1, t1 - t0) * 300).toFixed(1), (98 - p[1] / top * 96).toFixed(1)];
  svg.replaceChildren(...series.map((s, i) => polyline(s.map(scale), i ? "second" : "")));
}

function drawCharts() {
  const clients = samples.map((h) => [h.at, h.connected]);
  const connecting = samples.map((h) => [h.at, h.connecting]);
  draw($("chart-clients"), [clients, connecting]);
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i], dt = b.at - a.at;
    const moved = (b.bytes_up + b.bytes_down) - (a.bytes_up + a.bytes_down);
    if (dt > 0) rates.push([b.at, Math.max(0, moved / dt)]); // a restart zeroes the counters: no negative rate
  }
  draw($("chart-bytes"), [rates]);
  const last = samples[samples.length - 1];
  $("clients-now").textContent = last ? `now ${last.connected} connected, ${last.connecting} connecting` : "";
  $("bytes-now").textContent = rates.length ? `now ${bytes(rates[rates.length - 1][1])}/s` : "";
}

async function loadHistory() {
  samples = await api("/api/v1/history");
  drawCharts();
}

function logEvent(text) {
  const list = $("events");
  list.prepend(el("li", new Date().toLocaleTimeString() + " " + text));
  while (list.children.length > 100) list.lastChild.remove();
}

function onEvent(kind, data) {
  if (kind === "nodes") {
    data.changed.forEach((n) => logEvent(`${n.name}: ${n.state}, ${n.connected} connected`));
    loadNodes(); loadSummary(); loadHistory();
  } else if (kind === "apply") {
    logEvent(data.line);
  } else if (kind === "apply.done") {
    logEvent(`apply by ${data.by}: ${data.status}` + (data.failure ? ": " + data.failure : ""));
    loadGenerations(); loadSummary();
  } else if (kind === "restart") {
    logEvent(`restart of ${data.name} by ${data.by}`);
  } else if (kind === "error") {
    logEvent("observation failed: " + data.error);
  }
}

// Server-sent events read with fetch, so the token goes in a header and never in a URL.
async function follow() {
  let last = null;
  for (;;) {
    try {
      const headers = { Authorization: "Bearer " + token() };
      if (last) headers["Last-Event-ID"] = last;
      const answer = await fetch("/api/v1/events", { headers, cache: "no-store" });
      if (answer.status === 401) { signOut("that token was refused"); return; }
      $("live").textContent = "live"; $("live").className = "pill on";
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          const fields = {};
          block.split("\n").forEach((line) => { const i = line.indexOf(": "); if (i > 0) fields[line.slice(0, i)] = line.slice(i + 2); });
          if (fields.id) last = fields.id;
          if (fields.event && fields.data) onEvent(fields.event, JSON.parse(fields.data));
        }
      }
    } catch (e) { /* the agent restarted or the network dropped: try again */ }
    if (!token()) return;
    $("live").textContent = "reconnecting"; $("live").className = "pill";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function loadAll() {
  return Promise.allSettled([loadSummary(), loadNodes(), loadCountries(), loadFront(), loadGenerations(), loadHistory()]);
}

function signOut(why) {
  sessionStorage.removeItem(KEY);
  $("board").hidden = true; $("forget").hidden = true; $("login").hidden = false;
  $("login-error").textContent = why || "";
}

function start() {
  $("login").hidden = true; $("board").hidden = false; $("forget").hidden = false;
  loadAll();
  follow();
  setInterval(() => { loadSummary(); loadCountries(); loadFront(); loadHistory(); }, 10000);
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $("token").value.trim());
  $("token").value = "";
  start();
});
$("forget").addEventListener("click", () => signOut(""));

// A token may also arrive in the address's fragment (#token=...), which browsers never send to a server;
// it is moved to sessionStorage and wiped from the address at once.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem(KEY, decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", location.pathname);
}
if (token()) start(); else signOut("");
