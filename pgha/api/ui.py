"""``GET /ui``: one self-contained, read-only status page (no external assets, no build step).
It polls this agent's JSON API (``/cluster`` every half second, ``/history?events=1`` every two,
``/availability`` every five) and draws the members, who streams from whom, the last role changes
with their phases, and the write availability. It
changes nothing, so it answers like the other GET endpoints (no credentials)."""

from __future__ import annotations

from aiohttp import web

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgha</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2430;background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px} .muted{color:#6b7280} .card{background:#fff;border-radius:8px;
padding:16px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)} table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eceff3} th{font-weight:600;color:#4b5563}
.role{font-weight:600;padding:2px 8px;border-radius:10px;font-size:12px} .leader{background:#d1fae5;color:#065f46}
.sync_standby{background:#dbeafe;color:#1e40af} .replica{background:#eef2f7;color:#374151}
.standby_leader{background:#fef3c7;color:#92400e} .down{background:#fee2e2;color:#991b1b}
.bar{display:flex;height:14px;border-radius:4px;overflow:hidden;min-width:60px;background:#eef2f7}
.bar span{display:block;height:100%} #error{color:#991b1b}
.p-detection{background:#f59e0b}.p-election{background:#6366f1}.p-promotion{background:#10b981}
.p-first_write{background:#0ea5e9}.p-demote,.p-checkpoint{background:#ef4444}.p-stop{background:#f97316}
.p-release{background:#a855f7} .legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
</style></head><body>
<h1>pgha cluster <span id="scope"></span></h1>
<div class="muted">leader: <b id="leader">-</b> &middot; <span id="pause"></span> updated <span id="updated">never</span>
<span id="error"></span></div>
<div class="card"><table><thead><tr><th>Member</th><th>Role</th><th>State</th><th>TL</th><th>Lag</th>
<th>Streams from</th><th>Host</th></tr></thead><tbody id="members"></tbody></table></div>
<div class="card"><b>Topology</b><pre id="tree" class="muted"></pre></div>
<div class="card"><b>Last role changes</b><span class="legend muted" id="legend"></span>
<table><thead><tr><th>Start</th><th>Kind</th><th>Node</th><th>Total</th><th style="width:45%">Phases</th>
</tr></thead><tbody id="events"></tbody></table></div>
<div class="card"><b>Write availability</b> <span class="muted">(the leader's heartbeat)</span>:
<span id="availability">not recorded yet</span></div>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const PHASES = ["detection", "election", "promotion", "first_write", "checkpoint", "stop", "release", "demote"];
$("legend").innerHTML = PHASES.map((p) => `<span class="p-${p}"></span>${p}`).join("");
function tree(members) {
  const kids = {}; let roots = [];
  for (const m of members) {
    const up = m.following || "";
    if (!up || !members.some((x) => x.name === up)) roots.push(m.name); else (kids[up] = kids[up] || []).push(m.name);
  }
  const lines = []; const walk = (n, d) => { lines.push("  ".repeat(d) + (d ? "└─ " : "") + n); (kids[n] || []).forEach((k) => walk(k, d + 1)); };
  roots.sort((a, b) => (a === leaderName ? -1 : b === leaderName ? 1 : a.localeCompare(b))).forEach((r) => walk(r, 0));
  return lines.join("\\n");
}
let leaderName = "";
async function cluster() {
  const c = await (await fetch("cluster", {cache: "no-store"})).json();
  const lead = c.members.find((m) => m.role === "leader" || m.role === "standby_leader");
  leaderName = lead ? lead.name : "";
  $("scope").textContent = c.scope; $("leader").textContent = leaderName || "none";
  $("pause").textContent = c.pause ? "maintenance mode ·" : "";
  $("members").innerHTML = c.members.map((m) => `<tr data-member="${esc(m.name)}"><td>${esc(m.name)}</td>
    <td><span class="role ${m.state === "running" || m.state === "streaming" ? esc(m.role) : "down"}">${esc(m.role)}</span></td>
    <td>${esc(m.state)}</td><td>${esc(m.timeline)}</td><td>${m.lag === undefined ? "" : esc(m.lag)}</td>
    <td>${esc(m.following || "")}</td><td>${esc(m.host)}:${esc(m.port)}</td></tr>`).join("");
  $("tree").textContent = tree(c.members);
}
async function timeline() {
  const evs = (await (await fetch("history?events=1", {cache: "no-store"})).json()).slice(-10).reverse();
  $("events").innerHTML = evs.map((e) => `<tr><td>${esc(e.start.replace("T", " ").slice(0, 23))}</td><td>${esc(e.kind)}</td>
    <td>${esc(e.node)}</td><td>${e.total.toFixed(2)} s</td><td><div class="bar">${e.phases.map((p) =>
      `<span class="p-${esc(p.name)}" title="${esc(p.name)} ${p.seconds.toFixed(2)} s"
        style="flex:${Math.max(p.seconds, 0.001)}"></span>`).join("")}</div></td></tr>`).join("");
}
async function uptime() {
  const a = await (await fetch("availability", {cache: "no-store"})).json();
  const part = (label, x) => x ? `${label}: ${x.uptime_percent.toFixed(4)} % up, ${x.down_seconds.toFixed(1)} s down,
    ${x.incidents} incident(s)` : "";
  if (a.day) $("availability").textContent = [part("last 24 h", a.day), part("last 30 days", a.month)].join(" · ");
}
async function tick(fn) { try { await fn(); $("error").textContent = ""; $("updated").textContent = new Date().toLocaleTimeString(); }
  catch (err) { $("error").textContent = " · this agent does not answer: " + err; } }
tick(cluster); tick(timeline); tick(uptime);
setInterval(() => tick(cluster), 500); setInterval(() => tick(timeline), 2000); setInterval(() => tick(uptime), 5000);
</script></body></html>
"""


async def ui(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                                            "script-src 'unsafe-inline'; img-src 'none'"})


ROUTES = [web.get("/ui", ui)]
