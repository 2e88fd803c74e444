// The conduit agent's dashboard: reads /api/v1 with the token kept in sessionStorage, follows
// /api/v1/events, and draws its own SVG charts (axes, scale and time: no library needed for lines).
// Every value reaches the page as text, never as markup. Actions exist only for an operator token.
"use strict";

const KEY = "conduit-token";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let role = "viewer";
let range = "1h";
let timeline = null;
let nodesCache = [];
let budget = null;  // the summary's: the month's traffic budget, or null without one

function token() { return sessionStorage.getItem(KEY); }

async function api(path, method) {
  const answer = await fetch(path, { method: method || "GET", headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
  if (answer.status === 401) { signOut("that token was refused"); throw new Error("401"); }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(body.detail ? String(body.detail) : path + ": " + answer.status);
  return body;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fill(list, items) { list.replaceChildren(...items); }

// A size as the plan and `conduit status` print it: at most three significant digits, rounded down (1 GiB, 384 MiB, 1.5 GiB).
function size(n) {
  if (n === null || n === undefined) return "-";
  const [unit, f] = [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 1024]].find(([, f]) => n >= f) || ["B", 1];
  const digits = n < 10 * f ? 2 : n < 100 * f ? 1 : 0;
  return Math.floor(n / f * 10 ** digits + 1e-9) / 10 ** digits + " " + unit;
}

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

// ------------------------------------------------------------------ actions (operator only)

function ask(text) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    dialog.returnValue = "cancel";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function act(question, path, say) {
  if (!(await ask(question))) return;
  logEvent(say + " …");
  try {
    const answer = await api(path, "POST");
    logEvent(say + ": " + (answer.status || answer.message || answer.text || "done"));
  } catch (e) { logEvent(say + " refused: " + e.message); }
  loadAll();
}

function button(text, onClick, label) {
  const b = el("button", text);
  b.type = "button";
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

async function showClaim(name) {
  if (!(await ask(`Show the claim code of ${name}? Whoever sees it can claim the node.`))) return;
  if (!(await ask(`The code carries ${name}'s private key. Show it now, on this screen?`))) return;
  let claim;
  try { claim = await api(`/api/v1/nodes/${encodeURIComponent(name)}/claim`, "POST"); } catch (e) { logEvent("claim code refused: " + e.message); return; }
  const size = claim.modules.length;
  const code = $("claim-code");
  code.setAttribute("viewBox", `-2 -2 ${size + 4} ${size + 4}`);
  const dark = [];
  claim.modules.forEach((row, y) => [...row].forEach((m, x) => { if (m === "1") dark.push(`M${x},${y}h1v1h-1z`); }));
  code.replaceChildren(svgEl("rect", { x: -2, y: -2, width: size + 4, height: size + 4, fill: "#fff" }), svgEl("path", { d: dark.join(""), fill: "#000" }));
  $("claim-title").textContent = "Claim code of " + name;
  $("claim-url").textContent = claim.url;
  $("claim").addEventListener("close", () => { code.replaceChildren(); $("claim-url").textContent = ""; }, { once: true });
  $("claim").showModal();
}

// ------------------------------------------------------------------ nodes

function uptimeOf(name) {
  const n = timeline && timeline.nodes.find((x) => x.name === name);
  return n ? (n.uptime * 100).toFixed(n.uptime < 1 ? 1 : 0) + "%" : "-";
}

// What the node runs beside what the spec says (`250/200`), highlighted as drift, as `conduit status` prints it.
function runSpecCell(seen, spec, show, same) {
  const differs = seen !== null && seen !== undefined && !same(seen, spec);
  const td = el("td", differs ? `${show(seen)}/${show(spec)}` : show(spec));
  if (differs) {
    td.className = "warn drift";
    td.title = `runs ${show(seen)}, the spec says ${show(spec)}: apply to change it`;
  }
  return td;
}

const cpus = (n) => (n ? String(+n.toFixed(3)) : "none");
const limitSize = (n) => (n ? size(n) : "none");
const sameLimit = (a, b) => Math.abs((a || 0) - (b || 0)) <= 0.0005;

function limitCells(n) {
  return [runSpecCell(n.max_clients_seen, n.max_clients, String, (a, b) => a === b),
    el("td", n.cpu === null ? "-" : n.cpu.toFixed(2)), runSpecCell(n.cpu_limit_seen, n.cpu_limit, cpus, sameLimit),
    el("td", size(n.memory)), runSpecCell(n.memory_limit_seen, n.memory_limit, limitSize, sameLimit)];
}

function stateCell(n) {
  const notes = [n.upgrade_required && "upgrade required", n.suspicious && "SUSPICIOUS"].filter(Boolean);
  return el("td", n.status + (notes.length ? " · " + notes.join(" · ") : ""), notes.length ? "bad" : stateClass(n.status));
}

function nodeRow(n) {
  const tr = el("tr");
  const image = (n.digest || n.image_id || "").replace("sha256:", "").slice(0, 12) || "-";
  tr.append(el("td", n.name), stateCell(n), el("td", n.connected + "+" + n.connecting), ...limitCells(n), el("td", n.restarts === null ? "-" : n.restarts),
    el("td", duration(n.uptime)), el("td", uptimeOf(n.name), "uptime"), el("td", n.version || "-"), el("td", image, "mono"));
  if (role === "operator") {
    const cell = el("td", null, "act");
    cell.append(button("restart", () => act(`Restart ${n.name}? Its clients reconnect elsewhere.`, `/api/v1/nodes/${encodeURIComponent(n.name)}/restart`, "restart of " + n.name), "restart " + n.name),
      " ", button("claim", () => showClaim(n.name), "claim code of " + n.name));
    tr.append(cell);
  }
  // Each cell named by its column, for the phone, where a node is a card of labelled values.
  const heads = [...document.querySelectorAll("#nodes thead th")].map((th) => th.textContent);
  [...tr.children].forEach((td, i) => { td.dataset.label = heads[i] || ""; });
  tr.dataset.node = n.name;
  tr.dataset.state = n.status;
  return tr;
}

// The page asks again at each event: answers to asks that overlap may arrive out of order, and the
// answer to an older ask must not cover a newer one (a node shown stopped after it ran again).
function newestShown(path, show) {
  let asked = 0, shown = 0;
  return async () => {
    const ticket = ++asked;
    const answer = await api(path);
    if (ticket < shown) return;
    shown = ticket;
    show(answer);
  };
}

const loadNodes = newestShown("/api/v1/nodes", (nodes) => {
  nodesCache = nodes;
  fill(document.querySelector("#nodes tbody"), nodesCache.map(nodeRow));
});

const loadSummary = newestShown("/api/v1/summary", (s) => {
  const t = s.totals;
  $("title").textContent = "conduit · " + s.cluster;
  $("nodes-title").textContent = `Nodes: ${t.running}/${t.containers} running, ${t.connected} connected, ${t.connecting} connecting`;
  fill($("alerts"), s.alerts.length ? s.alerts.map((a) => el("li", a)) : [el("li", "none", "good")]);
  budget = s.budget || null;
  if (timeline) drawTotals();
});

function budgetLine(b) {
  const done = b.action === "throttle" ? "throttled" : "stopped";
  const what = b.stopped.length ? `${b.stopped.length} node(s) ${done} until the reset` : `at 100 % the nodes are ${done}`;
  return `${b.used_gb} of ${b.monthly_gb} GB (${b.percent} %), resets ${b.resets}; ${what}` + (b.counting ? "" : " (not counted yet)");
}

const loadCountries = newestShown("/api/v1/countries", (rows) => {
  fill($("countries"), rows.slice(0, 8).map((c) => el("li", `${c.region}: ${c.clients} clients, ${bytes(c.bytes_up + c.bytes_down)}`)));
  if (!rows.length) fill($("countries"), [el("li", "no figures yet")]);
});

const loadFront = newestShown("/api/v1/front", (f) => {
  const items = (f.listeners || []).map((l) => el("li",
    `${l.listener} ${l.port}: ${l.listening === false ? "NOT listening" : "listening"}` +
    (l.backends ? `, backends ${l.backends_up}/${l.backends} up` : ""), l.listening === false ? "bad" : ""));
  if (f.capacity) items.push(el("li", f.capacity.running ? `${f.capacity.connections} connections` +
    (f.capacity.ceiling ? ` of ${f.capacity.ceiling}` : "") : "front nginx NOT running", f.capacity.running ? "" : "bad"));
  fill($("front"), items.length ? items : [el("li", "no front in this spec")]);
});

// ------------------------------------------------------------------ plan and generations

const loadPlan = newestShown("/api/v1/plan", (p) => {
  $("drift").textContent = p.drift.length ? "drift: " + p.drift.join(", ")
    : p.pending ? `${p.pending} change${p.pending === 1 ? "" : "s"} pending:` : "none pending: the host matches the spec";
  $("drift").className = p.drift.length ? "warn" : "";
  fill($("changes"), p.changes.map((c) => el("li", c)));
  $("image-update").textContent = p.update_text;  // the plan text's own lines
  $("image-update").className = p.update ? "warn" : "";
  $("plan-text").textContent = p.text;
  $("apply").disabled = !p.pending;
});

function generationItem(g, current) {
  const when = new Date(g.started * 1000).toLocaleString();
  const commit = g.git_commit ? " @" + g.git_commit.slice(0, 10) + (g.git_dirty ? "+dirty" : "") : "";
  const cls = g.outcome === "succeeded" ? "good" : g.outcome === "applying" ? "warn" : "bad";
  const li = el("li", null, g.id === current ? "current" : "");
  li.dataset.generation = g.id;
  li.append(el("strong", "#" + g.id), " ", el("span", when + commit + " "), el("span", g.outcome, cls));
  if (g.id === current) li.append(" ", el("span", "current", "tag"));
  if (g.reason) {  // its first line, cut to the panel; opened, the whole of it (a phone has no hover for a title)
    const reason = el("details", null, "reason");
    const line = el("summary", g.reason.split("\n")[0]);
    line.title = g.reason;
    reason.append(line, el("p", g.reason));
    li.append(reason);
  }
  if (role === "operator" && g.outcome === "succeeded" && g.id !== current) {
    li.append(" ", button("roll back", () => act(`Roll back to generation ${g.id}? Its spec is applied again, with the image its nodes ran.`, `/api/v1/rollback/${g.id}`, "roll back to #" + g.id), "roll back to generation " + g.id));
  }
  return li;
}

const loadGenerations = newestShown("/api/v1/generations", (gens) => {
  const runs = gens.find((g) => g.running);  // the agent says which one the host runs
  const current = runs ? runs.id : null;
  fill($("generations"), gens.slice(-10).reverse().map((g) => generationItem(g, current)));
  if (!gens.length) fill($("generations"), [el("li", "none yet")]);
});

// ------------------------------------------------------------------ charts

function nice(top) {
  const p = Math.pow(10, Math.floor(Math.log10(top)));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((v) => v >= top);
}

function timeLabel(t) {
  const d = new Date(t * 1000);
  if (range === "1h" || range === "24h") return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString([], { month: "short", day: "numeric" });
}

// Lines over a time axis (the range, now at the right) and a value axis from 0 to a round maximum.
function draw(svg, series, format) {
  const w = Math.max(200, svg.clientWidth || 300), h = 150, left = 66, bottom = 22, top = 8, right = 10;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const now = Date.now() / 1000, t0 = timeline.since, t1 = Math.max(now, t0 + 1);
  const peak = nice(Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1]))) || 1);
  // Never past now (the right edge) nor before the range: a bucket's point may lie in neither.
  const x = (t) => left + (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0) * (w - left - right);
  const y = (v) => top + (1 - v / peak) * (h - top - bottom);
  const parts = [];
  [0, 0.5, 1].forEach((f) => {
    parts.push(svgEl("line", { x1: left, x2: w - right, y1: y(peak * f), y2: y(peak * f), class: "grid" }));
    parts.push(svgEl("text", { x: left - 4, y: y(peak * f) + 4, "text-anchor": "end", class: "axis" }, format(peak * f)));
  });
  const ticks = w < 400 ? 3 : 5;
  for (let i = 0; i < ticks; i++) {
    const t = t0 + (t1 - t0) * (i + 0.5) / ticks;
    parts.push(svgEl("text", { x: x(t), y: h - 6, "text-anchor": "middle", class: "axis" }, timeLabel(t)));
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const points = s.points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    parts.push(svgEl("polyline", { points, class: "series s" + i }));
    const [lt, lv] = s.points[s.points.length - 1];  // the newest point, seen even when it is the only one
    parts.push(svgEl("circle", { cx: x(lt).toFixed(1), cy: y(lv).toFixed(1), r: 3, class: "dot s" + i }));
  });
  if (!series.some((s) => s.points.length)) parts.push(svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "axis" }, "no figures in this range yet"));
  svg.replaceChildren(...parts);
}

const axisRate = (v) => { const t = bytes(v); return (parseFloat(t) >= 10 ? t.replace(/\.\d /, " ") : t) + "/s"; };
const count = (v) => (v >= 100 ? Math.round(v) : +v.toFixed(1)).toString();

// The part of a bucket that has passed: all of it, but for the newest one, which is still filling.
function elapsed(at, step) { return Math.max(1, Math.min(step, Date.now() / 1000 - at)); }
// A bucket's point: the middle of its passed part, so the newest one is never drawn after now.
function mid(at, step) { return at + elapsed(at, step) / 2; }

function drawCharts() {
  if (!timeline) return;
  const pts = timeline.points, step = timeline.step;
  const rate = (p, key) => p[key] / elapsed(p.at, step);
  draw($("chart-clients"), [{ points: pts.map((p) => [mid(p.at, step), p.clients]) }, { points: pts.map((p) => [mid(p.at, step), p.connecting]) }], count);
  draw($("chart-bytes"), [{ points: pts.map((p) => [mid(p.at, step), rate(p, "bytes_up")]) }, { points: pts.map((p) => [mid(p.at, step), rate(p, "bytes_down")]) }], axisRate);
  const cs = timeline.countries;
  draw($("chart-countries"), cs.series.map((s) => ({ points: s.points.map((p) => [mid(p[0], cs.step), p[1]]) })), count);
  const last = pts[pts.length - 1];
  const key = (i, text) => el("span", "— " + text, "k" + i);
  fill($("clients-now"), last ? [key(0, "connected"), " ", key(1, "connecting"), `; last step: ${count(last.clients)} and ${count(last.connecting)}`] : []);
  fill($("bytes-now"), last ? [key(0, "up"), " ", key(1, "down"), `; last step: ${bytes(rate(last, "bytes_up"))}/s and ${bytes(rate(last, "bytes_down"))}/s`] : []);
  fill($("countries-legend"), cs.series.length ? cs.series.map((s, i) => key(i, s.region + " ")) : [el("span", "no country figures in this range yet")]);
}

function drawTotals() {
  const t = timeline.totals;
  const row = (name, b) => [el("dt", name), el("dd", `↑ ${bytes(b.bytes_up)}  ↓ ${bytes(b.bytes_down)}`)];
  const budgetRow = budget ? [el("dt", "budget"), el("dd", budgetLine(budget), budget.stopped.length || budget.percent >= 80 ? "budget warn" : "budget")] : [];
  fill($("totals"), [...row("today", t.today), ...row("this month", t.month), ...budgetRow, ...row("lifetime", t.lifetime)]);
}

async function loadTimeline() {
  const answer = await api("/api/v1/timeline?range=" + range);
  if (answer.range !== range) return;  // another range was chosen meanwhile
  timeline = answer;
  $("uptime-head").textContent = "uptime " + range;
  drawCharts();
  drawTotals();
  document.querySelectorAll("#nodes td.uptime").forEach((td) => { td.textContent = uptimeOf(td.parentElement.dataset.node); });
}

// ------------------------------------------------------------------ events

function logEvent(text, at) {
  const list = $("events");
  list.prepend(el("li", (at ? new Date(at) : new Date()).toLocaleTimeString() + " " + text));
  while (list.children.length > 100) list.lastChild.remove();
}

function describe(kind, data) {
  if (kind === "nodes") return data.changed.map((n) => `${n.name}: ${n.state}, ${n.connected} connected`).join("; ");
  if (kind === "apply") return data.line;
  if (kind === "apply.start") return `apply by ${data.by} started`;
  if (kind === "apply.done") return `apply by ${data.by}: ${data.status}` + (data.failure ? ": " + data.failure : "")
    + (data.warnings || []).map((w) => "; warning: " + w).join("");
  if (kind === "restart") return `restart of ${data.name} by ${data.by}`;
  if (kind === "error") return "observation failed: " + data.error;
  return null;
}

function onEvent(kind, data, backlog) {
  const text = describe(kind, data);
  if (text) logEvent(text);
  if (backlog) return;  // already part of what the page loaded
  if (kind === "nodes") { loadNodes(); loadSummary(); }
  else if (kind === "apply.done") { loadGenerations(); loadSummary(); loadPlan(); loadNodes(); }
}

// Server-sent events read with fetch, so the token goes in a header and never in a URL. The first
// connection asks for the agent's backlog (Last-Event-ID 0); a reconnection, for what it missed.
async function follow() {
  let last = "0", backlogUntil = 0, dropped = false;
  for (;;) {
    try {
      const answer = await fetch("/api/v1/events", { headers: { Authorization: "Bearer " + token(), "Last-Event-ID": last }, cache: "no-store" });
      if (answer.status === 401) { signOut("that token was refused"); return; }
      if (!answer.ok) throw new Error(String(answer.status));
      $("live").textContent = "live"; $("live").className = "pill on";
      const reloaded = dropped;  // everything asked again: the stream's hello need not ask for the nodes too
      if (dropped) { logEvent("reconnected to the agent"); loadAll(); dropped = false; }
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
          if (!fields.event || !fields.data) continue;
          const data = JSON.parse(fields.data);
          // The stream may open after the page loaded: what changed in between is in the backlog, which
          // is listed, not acted on; the nodes and summary are asked again as they are now instead.
          if (fields.event === "hello") { backlogUntil = data.backlog; if (!reloaded) { loadNodes(); loadSummary(); } continue; }
          if (fields.id) last = fields.id;
          onEvent(fields.event, data, Number(fields.id) <= backlogUntil);
        }
      }
    } catch (e) { /* the agent restarted or the network dropped: try again */ }
    if (!token()) return;
    dropped = true;
    $("live").textContent = "reconnecting"; $("live").className = "pill";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ------------------------------------------------------------------ start

function loadAll() {
  return Promise.allSettled([loadSummary(), loadNodes(), loadCountries(), loadFront(), loadPlan(), loadGenerations(), loadTimeline()]);
}

function signOut(why) {
  sessionStorage.removeItem(KEY);
  $("board").hidden = true; $("forget").hidden = true; $("login").hidden = false;
  $("login-error").textContent = why || "";
}

async function start() {
  $("login").hidden = true; $("board").hidden = false; $("forget").hidden = false;
  try {
    const me = await api("/api/v1/me");
    role = me.role;
    $("who").textContent = `${me.name} (${me.role})`;
  } catch (e) { if (!token()) return; }
  document.body.classList.toggle("operator", role === "operator");
  if (role !== "operator") document.querySelectorAll(".act").forEach((n) => n.remove());
  await loadAll();
  follow();
  setInterval(() => { loadSummary(); loadCountries(); loadFront(); }, 10000);
  setInterval(() => { loadTimeline(); loadPlan(); }, 60000);
}

document.querySelectorAll("#ranges button").forEach((b) => b.addEventListener("click", () => {
  range = b.dataset.range;
  document.querySelectorAll("#ranges button").forEach((o) => o.setAttribute("aria-pressed", String(o === b)));
  loadTimeline();
}));
if ($("apply")) $("apply").addEventListener("click", () => act("Apply the spec now? The pending changes above are made.", "/api/v1/apply", "apply"));
if ($("check-updates")) $("check-updates").addEventListener("click", () => act("Ask the registry now what the image tag means? Nothing is changed.", "/api/v1/updates/check", "check for updates"));
window.addEventListener("resize", () => drawCharts());

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
