// gatemesh dashboard: figures from GET /api/stats, then live from the node's event stream
// (GET /api/stream): stats, scans, conflicts and peers as they happen. A new double entry
// sounds an alert and shows a banner; a pause or a zone over capacity shows a banner too.
// Supervisors' gate pauses and actions (GET /api/pauses, GET /api/audit) are asked again
// whenever the figures change.
"use strict";

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const ALERTS_MAX = 30;
const BUCKET_MINUTES = 5;
const AUDIT_ROWS = 50;
// A supervisor's pause runs out with no record to say so: asked again at least this often.
const SUPERVISION_REFRESH_MS = 15000;
const m = location.hash.match(/token=([^&]+)/);
if (m) { store.setItem("gatemesh.token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
const token = () => store.getItem("gatemesh.token") || "";
let source = null;
let peersBy = new Map();
let lastStats = null;
let lastConflicts = [];
let lastPauses = []; // every pause in force, the supervisors' with who and until when
let lastActions = [];
let supervising = false, supervisionTimer = null;
const alerts = [];

async function get(path) {
  const r = await fetch(path, { headers: { "Authorization": "Bearer " + token() } });
  if (r.status === 401) throw new Error("unauthorized");
  return r.json();
}

function esc(s) { return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c])); }
function rows(id, head, list) {
  $(id).innerHTML = "<tr>" + head.map((h) => `<th>${esc(t(h))}</th>`).join("") + "</tr>" +
    list.map((r) => "<tr>" + r.map((c) => `<td>${esc(c)}</td>`).join("") + "</tr>").join("");
}
function time(ms) { return ms ? localTime(ms) : "–"; }
function reasonName(code) { return (REASONS[lang] || REASONS.en)[code] || code; }

function stats(s) {
  lastStats = s;
  $("event").textContent = s.eventId;
  $("admitted").textContent = s.admitted;
  $("denied").textContent = s.denied;
  $("rate").textContent = s.admitsLastMinute;
  $("checked").textContent = s.checkedInGuests;
  $("checkrate").textContent = s.totalGuests ? `${t("of")} ${s.totalGuests} (${(100 * s.checkInRate).toFixed(1)} %)` : "";
  $("doubles").textContent = s.conflicts.doubleEntries;
  rows("inside", ["col_zone", "col_inside", "col_capacity"], s.insideNow.map((z) =>
    [z.zone, z.count, z.capacity ? `${z.capacity}${z.overCapacity ? " ⚠ +" + z.overCapacity : ""}` : "–"]));
  rows("gates", ["col_gate", "col_zone", "col_in", "col_denied"], s.byLocation.map((g) => [g.gate, g.zone, g.admitted, g.denied]));
  rows("reasons", ["col_reason", "col_count"], s.byReason.map((r) => [reasonName(r.reason), r.count]));
  // One person counts once in their tier and once in the total: the total is "checked in".
  const tiers = s.byTicketType.map((x) => [x.tier, x.admitted, x.checkedIn]);
  const sum = (i) => tiers.reduce((a, r) => a + r[i], 0);
  tiers.push([t("total"), sum(1), sum(2)]);
  rows("tiers", ["col_tier", "col_admitted", "col_checked"], tiers);
  chart(s.byMinute);
  banner(s);
}

// The per-minute figures of the last hour, drawn in 5-minute bars.
function chart(minutes) {
  const buckets = [];
  for (let i = 0; i < minutes.length; i += BUCKET_MINUTES) {
    const slice = minutes.slice(i, i + BUCKET_MINUTES);
    buckets.push({
      at: Date.parse(slice[0].minute),
      admitted: slice.reduce((a, x) => a + x.admitted, 0),
      denied: slice.reduce((a, x) => a + x.denied, 0),
    });
  }
  const c = $("chart");
  c.width = c.clientWidth || 600;
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...buckets.map((x) => x.admitted + x.denied));
  const w = c.width / Math.max(1, buckets.length);
  const h = c.height - 34;
  ctx.font = "12px sans-serif";
  buckets.forEach((x, i) => {
    const ha = (x.admitted / max) * h, hd = (x.denied / max) * h;
    ctx.fillStyle = "#2ecc71"; ctx.fillRect(i * w + 2, 18 + h - ha, w - 4, ha);
    ctx.fillStyle = "#e74c3c"; ctx.fillRect(i * w + 2, 18 + h - ha - hd, w - 4, hd);
    ctx.fillStyle = "#aaa";
    if (i % 2 === 0) ctx.fillText(localTime(x.at).slice(0, 5), i * w + 2, c.height - 2);
  });
  ctx.fillStyle = "#aaa"; ctx.fillText("max " + max, 4, 12);
}

// What must not be missed: double entries, a pause in force, a zone over capacity. The
// organizer's pauses come with the figures, the supervisors' from GET /api/pauses.
function banner(s) {
  const lines = [];
  if (s.conflicts.doubleEntries) lines.push(`${t("double_entries")}: ${s.conflicts.doubleEntries}`);
  for (const p of [...(s.paused || []), ...lastPauses.filter((x) => x.by)]) lines.push(pauseLine(p));
  for (const z of s.insideNow) {
    if (z.overCapacity) lines.push(`${t("zone")} ${z.zone}: ${z.count} — ${t("over_capacity")} ${z.overCapacity}`);
  }
  $("banner").hidden = !lines.length;
  $("banner").innerHTML = lines.map((l) => `<div>${esc(l)}</div>`).join("");
}

function pauseLine(p) {
  const what = p.scope === "event" ? t("the_event") : `${t(p.scope)} ${p.name}`;
  if (!p.by) return `${t("paused_banner")} ${what} (${t("since")} ${time(p.since_ms)})`;
  const until = p.until_ms ? `, ${t("until")} ${localHourMinute(p.until_ms)}` : "";
  return `${t("paused_banner_by")} ${device(p.by_name, p.by)}: ${what} (${t("since")} ${time(p.since_ms)}${until})`;
}

function device(name, id) { return name ? `${name} (${id})` : id; }

// Undos, hand check-ins and gate pauses, newest first; a steward's device's are listed and
// marked: they counted for nothing.
function audit(list) {
  lastActions = list;
  const head = ["col_time", "col_action", "col_ticket", "col_gate", "col_device"];
  const none = `<tr><td colspan="${head.length}" class="muted">${esc(t("none"))}</td></tr>`;
  $("audit-rows").innerHTML = "<tr>" + head.map((h) => `<th>${esc(t(h))}</th>`).join("") + "</tr>" +
    (list.length ? list.map(auditRow).join("") : none);
}

function auditRow(a) {
  const steward = a.role === "steward";
  const words = WORDS.en["action_" + a.action] ? t("action_" + a.action) : a.action;
  const what = steward ? `${words} — ${t("audit_steward")}` : words;
  const cells = [time(a.at_ms), what, a.ticket_id || "–", a.gate, device(a.device_name, a.device)];
  return `<tr class="${steward ? "steward" : ""}">` + cells.map((c) => `<td>${esc(c)}</td>`).join("") + "</tr>";
}

// The pauses in force and the supervisors' latest actions (staff token, like the figures).
async function supervision() {
  if (supervising) return;
  supervising = true;
  try {
    const p = await get("/api/pauses");
    if (p.paused) lastPauses = p.paused;
    const a = await get(`/api/audit?limit=${AUDIT_ROWS}`);
    if (a.actions) audit(a.actions);
    if (lastStats) banner(lastStats);
  } catch (_) { /* asked again on the next change */ } finally {
    supervising = false;
  }
}

function peers(list) {
  peersBy = new Map(list.map((p) => [p.name, p]));
  drawPeers();
}
function drawPeers() {
  const list = [...peersBy.values()].sort((a, b) => a.name.localeCompare(b.name));
  $("peers-online").textContent = list.filter((p) => p.online).length + " / " + list.length;
  $("peers").innerHTML = `<tr><th>${esc(t("col_peer"))}</th><th>${esc(t("col_state"))}</th><th>${esc(t("col_last_seen"))}</th></tr>` +
    list.map((p) => `<tr><td>${esc(p.name)}</td><td class="${p.online ? "on" : "off"}">${esc(p.online ? t("online") : t("offline"))}</td><td>${esc(time(p.last_seen_ms))}</td></tr>`).join("");
}

function conflicts(list) {
  lastConflicts = list;
  rows("conflicts", ["col_ticket", "col_first", "col_doubles"], list.map((c) => {
    const first = c.entries[0];
    const doubles = c.double_entries.map((d) => `${d.gate} ${time(d.wall_ms)} (${d.device})`).join("; ");
    return [c.ticket_id, first ? `${first.gate} ${time(first.wall_ms)}` : "–", doubles];
  }));
}

function alert(text, loud) {
  alerts.unshift(`${localTime(Date.now())} — ${text}`);
  alerts.length = Math.min(alerts.length, ALERTS_MAX);
  $("alerts").innerHTML = alerts.map((a) => `<div class="alert">${esc(a)}</div>`).join("");
  if (loud) alarm();
}

// Three low-high tones: someone came in twice.
let audio = null;
function alarm() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    for (let i = 0; i < 6; i++) {
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = i % 2 ? 880 : 440; o.type = "square"; g.gain.value = 0.15;
      o.connect(g); g.connect(audio.destination);
      const at = audio.currentTime + i * 0.2;
      o.start(at); o.stop(at + 0.18);
    }
  } catch (_) { /* no audio: the banner still says it */ }
}

let lastDoubles = null;
function connect() {
  if (source) source.close();
  source = new EventSource("/api/stream?token=" + encodeURIComponent(token()));
  source.onopen = () => { $("live").textContent = t("live"); $("live").className = "link ok"; };
  source.onerror = () => { $("live").textContent = t("reconnecting"); $("live").className = "link down"; };
  source.addEventListener("stats", (e) => {
    const s = JSON.parse(e.data);
    if (lastDoubles !== null && s.conflicts.doubleEntries > lastDoubles) {
      alert(`${s.conflicts.doubleEntries - lastDoubles} ${t("new_doubles")}`, true);
    }
    lastDoubles = s.conflicts.doubleEntries;
    stats(s);
    supervision();
  });
  source.addEventListener("conflicts", (e) => conflicts(JSON.parse(e.data).conflicts));
  source.addEventListener("peer_connected", (e) => { const d = JSON.parse(e.data); upsertPeer(d.peer, true); });
  source.addEventListener("event_mismatch", (e) => { const d = JSON.parse(e.data); alert(`${t("event_mismatch")} ${d.peer}`, true); });
  source.addEventListener("peer_disconnected", (e) => { const d = JSON.parse(e.data); upsertPeer(d.peer, false); alert(`${t("lost_peer")} ${d.peer}`); });
  source.addEventListener("scan", (e) => {
    const d = JSON.parse(e.data);
    if (d.reason === "invalid_signature" || d.reason === "unknown_ticket") alert(`${t("forged_at")} ${d.gate}`);
    // Every check-in by hand is worth a look: it needs no code, only the staff token.
    if (d.manual && d.verdict === "admit") alert(`${t("manual_at")} ${d.gate}: ${d.ticket ? (d.ticket.name || d.ticket.id) : ""}`);
  });
}
function upsertPeer(name, online) {
  const p = peersBy.get(name) || { name, peer_id: "" };
  p.online = online; p.last_seen_ms = Date.now();
  peersBy.set(name, p);
  drawPeers();
}

function redraw() {
  translatePage();
  if (lastStats) stats(lastStats);
  conflicts(lastConflicts);
  audit(lastActions);
  drawPeers();
}
$("lang").addEventListener("click", () => { switchLanguage(); redraw(); });

async function start() {
  translatePage();
  try {
    const s = await get("/api/stats");
    lastDoubles = s.conflicts.doubleEntries;
    stats(s);
    peers((await get("/api/peers")).peers);
    conflicts((await get("/api/conflicts")).conflicts);
    await supervision();
    if (!supervisionTimer) supervisionTimer = setInterval(supervision, SUPERVISION_REFRESH_MS);
    $("login").hidden = true;
    connect();
  } catch (e) {
    $("login").hidden = false;
    $("login-error").textContent = e.message === "unauthorized" ? t("enter_token") : t("cannot_reach");
  }
}
$("go").addEventListener("click", () => { store.setItem("gatemesh.token", $("token").value.trim()); start(); });
start();

// ---- pairing a phone (a supervisor, with the admin token; never kept by the page) ----

$("pair-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("pair-error").textContent = "";
  $("pair-result").hidden = true;
  try {
    const r = await fetch("/api/phones", {
      method: "POST",
      headers: { "Authorization": "Bearer " + $("pair-admin").value.trim(), "Content-Type": "application/json" },
      body: JSON.stringify({ name: $("pair-name").value.trim(), link_base: location.origin }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { $("pair-error").textContent = body.message || `error ${r.status}`; return; }
    // The QR code is the node's own SVG of the link (no script, only a path).
    $("pair-qr").innerHTML = body.qr_svg;
    $("pair-device").textContent = body.device_id;
    $("pair-link").textContent = body.link;
    $("pair-result").hidden = false;
  } catch (_) {
    $("pair-error").textContent = t("cannot_reach");
  }
});
