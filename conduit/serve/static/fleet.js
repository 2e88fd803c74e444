// The fleet page: every host of the fleet as `conduit fleet status` shows it, read from
// /api/v1/fleet with the dashboard's token, each host linked to its own agent's page.
// Every value reaches the page as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);

function cell(text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  return td;
}

function hostCell(host) {
  const td = document.createElement("td");
  const safe = typeof host.agent === "string" && /^https?:\/\//.test(host.agent);
  if (!safe) { td.textContent = host.host; return td; }
  const a = document.createElement("a");
  a.href = host.agent + "/";
  a.textContent = host.host;
  td.append(a);
  return td;
}

async function load() {
  const token = sessionStorage.getItem("conduit-token");
  if (!token) { $("fleet-error").textContent = "open this host's page first and give a token"; return; }
  try {
    const answer = await fetch("/api/v1/fleet", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.detail || answer.status);
    $("fleet-head").replaceChildren(...body.headers.map((h) => { const th = document.createElement("th"); th.textContent = h; return th; }));
    $("fleet-rows").replaceChildren(...body.hosts.map((host) => {
      const tr = document.createElement("tr");
      tr.className = host.ready ? "good" : "bad";
      tr.append(hostCell(host), ...host.cells.slice(1).map(cell));
      return tr;
    }));
    const ready = body.hosts.filter((h) => h.ready).length;
    $("fleet-state").textContent = ready + " of " + body.hosts.length + " ready";
    $("fleet-error").textContent = "";
  } catch (error) {
    $("fleet-error").textContent = "the fleet could not be read: " + error.message;
  }
}

load();
setInterval(load, 15000);
