// gatemesh dashboard: figures from GET /api/stats, then live from the node's event stream
// (GET /api/stream): stats, scans, conflicts and peers as they happen.
"use strict";

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const ALERTS_MAX = 30;
const m = location.hash.match(/token=([^&]+)/);
if (m) { store.setItem("gatemesh.token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
const token = () => store.getItem("gatemesh.token") || "";
let source = null;
let peersBy = new Map();
const alerts = [];

async function get(path) {
  const r = await fetch(path, { headers: { "Authorization": "Bearer " + token() } });
  if (r.status === 401) throw new Error("unauthorized");
  return r.json();
}

function esc(s) { return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c])); }
function rows(id, head, list) {
  $(id).innerHTML = "<tr>" + head.map((h) => `<th>${esc(h)}</th>`).join("") + "</tr>" +
    list.map((r) => "<tr>" + r.map((c) => `<td>${esc(c)}</td>`).join("") + "</tr>").join("");
}
function time(ms) { return ms ? new Date(ms).toLocaleTimeString() : "–"; }

function stats(s) {
  $("event").textContent = "event " + s.eventId;
  $("admitted").textContent = s.admitted;
  $("denied").textContent = s.denied;
  $("rate").textContent = s.admitsLastMinute;
  $("checked").textContent = s.checkedInGuests;
  $("checkrate").textContent = s.totalGuests ? `of ${s.totalGuests} (${(100 * s.checkInRate).toFixed(1)} %)` : "";
  $("doubles").textContent = s.conflicts.doubleEntries;
  rows("inside", ["zone", "inside"], s.insideNow.map((z) => [z.zone, z.count]));
  rows("gates", ["gate", "zone", "in", "denied"], s.byLocation.map((g) => [g.gate, g.zone, g.admitted, g.denied]));
  rows("reasons", ["reason", "count"], s.byReason.map((r) => [r.reason, r.count]));
  rows("tiers", ["tier", "admitted", "checked in"], s.byTicketType.map((t) => [t.tier, t.admitted, t.checkedIn]));
  chart(s.byMinute);
}

function chart(minutes) {
  const c = $("chart");
  c.width = c.clientWidth || 600;
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...minutes.map((x) => x.admitted + x.denied));
  const w = c.width / minutes.length;
  minutes.forEach((x, i) => {
    const ha = (x.admitted / max) * (c.height - 20), hd = (x.denied / max) * (c.height - 20);
    ctx.fillStyle = "#2ecc71"; ctx.fillRect(i * w + 1, c.height - ha, w - 2, ha);
    ctx.fillStyle = "#e74c3c"; ctx.fillRect(i * w + 1, c.height - ha - hd, w - 2, hd);
  });
  ctx.fillStyle = "#aaa"; ctx.font = "12px sans-serif"; ctx.fillText("max " + max + "/min", 4, 12);
}

function peers(list) {
  peersBy = new Map(list.map((p) => [p.name, p]));
  drawPeers();
}
function drawPeers() {
  const list = [...peersBy.values()].sort((a, b) => a.name.localeCompare(b.name));
  $("peers-online").textContent = list.filter((p) => p.online).length + " / " + list.length;
  $("peers").innerHTML = "<tr><th>peer</th><th>state</th><th>last seen</th></tr>" + list.map((p) =>
    `<tr><td>${esc(p.name)}</td><td class="${p.online ? "on" : "off"}">${p.online ? "online" : "offline"}</td><td>${time(p.last_seen_ms)}</td></tr>`).join("");
}

function conflicts(list) {
  $("conflicts").innerHTML = "<tr><th>ticket</th><th>first entry</th><th>double entries</th></tr>" + list.map((c) => {
    const first = c.entries[0];
    const doubles = c.double_entries.map((d) => `${d.gate} ${time(d.wall_ms)} (${d.device})`).join("; ");
    return `<tr><td>${esc(c.ticket_id)}</td><td>${first ? esc(first.gate + " " + time(first.wall_ms)) : "–"}</td><td>${esc(doubles)}</td></tr>`;
  }).join("");
}

function alert(text) {
  alerts.unshift(`${new Date().toLocaleTimeString()} — ${text}`);
  alerts.length = Math.min(alerts.length, ALERTS_MAX);
  $("alerts").innerHTML = alerts.map((a) => `<div class="alert">${esc(a)}</div>`).join("");
}

let lastDoubles = null;
function connect() {
  if (source) source.close();
  source = new EventSource("/api/stream?token=" + encodeURIComponent(token()));
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "link ok"; };
  source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "link down"; };
  source.addEventListener("stats", (e) => {
    const s = JSON.parse(e.data);
    if (lastDoubles !== null && s.conflicts.doubleEntries > lastDoubles) {
      alert(`${s.conflicts.doubleEntries - lastDoubles} new double entr${s.conflicts.doubleEntries - lastDoubles > 1 ? "ies" : "y"}`);
    }
    lastDoubles = s.conflicts.doubleEntries;
    stats(s);
  });
  source.addEventListener("conflicts", (e) => conflicts(JSON.parse(e.data).conflicts));
  source.addEventListener("peer_connected", (e) => { const d = JSON.parse(e.data); upsertPeer(d.peer, true); });
  source.addEventListener("peer_disconnected", (e) => { const d = JSON.parse(e.data); upsertPeer(d.peer, false); alert(`lost contact with ${d.peer}`); });
  source.addEventListener("scan", (e) => {
    const d = JSON.parse(e.data);
    if (d.reason === "invalid_signature" || d.reason === "unknown_ticket") alert(`forged or unknown code at gate ${d.gate}`);
  });
}
function upsertPeer(name, online) {
  const p = peersBy.get(name) || { name, peer_id: "" };
  p.online = online; p.last_seen_ms = Date.now();
  peersBy.set(name, p);
  drawPeers();
}

async function start() {
  try {
    stats(await get("/api/stats"));
    peers((await get("/api/peers")).peers);
    conflicts((await get("/api/conflicts")).conflicts);
    $("login").hidden = true;
    connect();
  } catch (e) {
    $("login").hidden = false;
    $("login-error").textContent = e.message === "unauthorized" ? "Enter the staff token." : "The node cannot be reached.";
  }
}
$("go").addEventListener("click", () => { store.setItem("gatemesh.token", $("token").value.trim()); start(); });
start();
