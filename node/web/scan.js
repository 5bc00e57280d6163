// gatemesh scanner page. One input keeps focus: hardware (keyboard-wedge) scanners type the
// code and Enter into it; people type codes by hand into the same field; the camera path decodes
// QR codes with zxing-wasm and submits the text the same way. Every answer is full screen,
// green or red, with the reason in words, a sound and a vibration.
//
// A paired phone (opened once with `#pair=<pass>`) keeps scanning when its node does not answer:
// it decides on the phone (gate.js, with what offline.js keeps) and says so on the answer, keeps
// every such scan before showing it, and hands them to the node when it answers again.
import { Phone, passDevice } from "./offline.js";

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const RESULT_SHOWN_MS = 2500;
const CAMERA_REPEAT_MS = 3000; // the same code seen again by the camera within this is ignored
const REQUEST_TIMEOUT_MS = 4000;
// A paired phone waits this long for its node's answer, then decides on its own.
const ONLINE_ANSWER_MS = 1500;
// How often the node is asked whether it is there: while reachable, and while not.
const PING_MS = 3000;
const PING_OFFLINE_MS = 1000;
const PING_TIMEOUT_MS = 1200;
// How often a paired phone takes a fresh snapshot while online, and the pack.
const SNAPSHOT_REFRESH_MS = 10000;
const PACK_REFRESH_MS = 10 * 60 * 1000;

let settings = JSON.parse(store.getItem("gatemesh.settings") || "null");

function applyLanguage() {
  translatePage();
  if (settings && !$("scanner").hidden) showScanner();
}
$("lang").addEventListener("click", () => {
  switchLanguage();
  applyLanguage();
});
let hideTimer = null;
let busy = false;
let asked = 0; // when the current code was submitted (the answer's delay is shown in data-ms)

// A token in the address (#token=...) or a phone's pass (#pair=...) is kept and removed from
// the address bar.
(function takeTokenFromAddress() {
  const m = location.hash.match(/(token|pair)=([^&]+)/);
  if (m) {
    const value = decodeURIComponent(m[2]);
    store.setItem("gatemesh.token", value);
    if (m[1] === "pair") store.setItem("gatemesh.phone", passDevice(value) || "");
    else store.removeItem("gatemesh.phone");
    history.replaceState(null, "", location.pathname);
  }
})();

function token() { return store.getItem("gatemesh.token") || ""; }
// The paired phone's device id, when this page shows a phone's pass.
function phoneId() { return store.getItem("gatemesh.phone") || ""; }

let phone = null; // the phone's own side (offline.js), once opened
let offline = false; // the node did not answer: a paired phone decides on its own
let unpaired = false;
let lastSnapshot = 0, lastPack = 0, syncing = false;

// A request to the node, given up after `timeoutMs` (a link that drops packets never answers).
// `raw`: the body as text; `binary`: as bytes; `pin`: the supervisor's PIN, for this request only.
async function api(path, options = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), options.timeoutMs || REQUEST_TIMEOUT_MS);
  const headers = { "Authorization": "Bearer " + token(), "Content-Type": "application/json" };
  if (options.pin) headers["X-Supervisor-Pin"] = options.pin;
  try {
    const r = await fetch(path, {
      method: options.method || "GET",
      body: options.body,
      cache: "no-store",
      signal: ctrl.signal,
      headers,
    });
    if (options.binary) return { ok: r.ok, status: r.status, bytes: await r.arrayBuffer() };
    const text = await r.text();
    let body = {};
    if (!options.raw) try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
    return { ok: r.ok, status: r.status, body, text };
  } finally {
    clearTimeout(timer);
  }
}

function setLink(up) {
  const el = $("link");
  const checking = !up && phone && phone.ready() && !unpaired;
  el.textContent = up ? t("reachable") : checking ? t("phone_link_down") : t("unreachable_link");
  el.className = "link " + (up ? "ok" : checking ? "phone-down" : "down");
}

function showWaiting() {
  const n = phone ? phone.waiting() : 0;
  $("waiting").hidden = n === 0;
  $("waiting").textContent = `${n} ${t("waiting")}`;
  $("waiting").dataset.n = n;
  document.body.dataset.snapshotMs = phone ? phone.snapshotMs() : 0;
  document.body.dataset.offline = offline ? "1" : "0";
  // An undo needs the node: offered again when it answers, within the undo window.
  $("undo").hidden = !lastAdmit || offline;
}

// Every few seconds: is the node there, and has the organizer paused this gate, its zone or
// the whole event? A pause covers the scanner until it is lifted. A paired phone that finds its
// node again hands it the scans it decided on its own, then takes a fresh snapshot.
async function ping() {
  try {
    if (!(settings && token())) {
      const r = await api("/health/live", { timeoutMs: PING_TIMEOUT_MS });
      setLink(r.ok);
      return;
    }
    const r = await api("/api/pauses", { timeoutMs: PING_TIMEOUT_MS });
    if (r.status === 401 && phoneId()) return showUnpaired(r.body);
    setLink(r.ok);
    if (r.ok) {
      const paused = r.body.paused || [];
      showPause(paused.find(stopsThisGate));
      supervisorPause = paused.find(pausedBySupervisor) || null;
      showGatePause();
      if (!deviceRole) learnRole();
      if (phone) await phoneOnline();
    }
  } catch (_) {
    if (phone && phone.ready()) offline = true;
    setLink(false);
    showWaiting();
  }
}

function pingLoop() {
  ping().finally(() => setTimeout(pingLoop, offline ? PING_OFFLINE_MS : PING_MS));
}

// The node answers: queued scans first, then a fresh snapshot when due (or the pack). A
// reconcile that fails leaves its scans queued; the snapshot is taken all the same.
async function phoneOnline() {
  if (syncing || unpaired) return;
  syncing = true;
  offline = false;
  try {
    const had = phone.waiting();
    if (had) await phone.reconcile(api).catch((e) => {
      if (e.status === 401) throw e;
      console.warn("reconcile", e);
    });
    const now = Date.now();
    const pack = !phone.ready() || now - lastPack > PACK_REFRESH_MS;
    if (had || pack || now - lastSnapshot > SNAPSHOT_REFRESH_MS) {
      await phone.refresh(api, pack);
      lastSnapshot = now;
      if (pack) lastPack = now;
    }
  } catch (e) {
    if (e.status === 401 && phoneId()) showUnpaired({ message: e.message });
    else console.warn("phone sync", e);
  } finally {
    syncing = false;
    showWaiting();
  }
}

function showUnpaired(body) {
  unpaired = true;
  if (phone) phone.forget().catch(() => {});
  setLink(false);
  showProblem(t("unpaired"), (body && body.error) || "unpaired");
}

function stopsThisGate(p) {
  return p.scope === "event" || (p.scope === "gate" && p.name === settings.gate) ||
    (p.scope === "zone" && p.name === settings.zone);
}

// A supervisor's pause of this gate (the organizer's carry no `by`).
function pausedBySupervisor(p) {
  return p.scope === "gate" && p.name === settings.gate && !!p.by;
}

// The organizer's pause says since when; a supervisor's says who and until when.
function showPause(p) {
  const el = $("paused");
  el.hidden = !p;
  if (!p) return;
  const what = p.scope === "event" ? t("the_event") : `${t(p.scope)} ${p.name}`;
  $("paused-what").textContent = p.by && p.until_ms
    ? `${what} · ${t("paused_by")} ${p.by_name || p.by} ${t("until")} ${localHourMinute(p.until_ms)}`
    : `${what} · ${t("since")} ${time(p.since_ms)}`;
}

// ---- setup: gate and direction, once per device ----

async function showSetup() {
  $("scanner").hidden = true;
  $("setup").hidden = false;
  $("token").value = token();
  await loadGates();
}

async function loadGates() {
  const select = $("gate");
  $("setup-error").textContent = "";
  if (!token()) { $("setup-error").textContent = "Enter the staff token shown when the node started."; return; }
  try {
    const r = await api("/api/status");
    if (!r.ok) { $("setup-error").textContent = r.body.message || ("status " + r.status); return; }
    deviceRole = r.body.device_role || deviceRole;
    select.innerHTML = "";
    for (const g of r.body.gates || []) {
      const o = document.createElement("option");
      o.value = g.name;
      o.textContent = `${g.name} (${g.zone}, ${g.direction})`;
      o.dataset.direction = g.direction;
      o.dataset.zone = g.zone;
      select.appendChild(o);
    }
    if (settings) { select.value = settings.gate; $("direction").value = settings.direction; }
  } catch (_) {
    $("setup-error").textContent = "The node cannot be reached.";
  }
}

// A token typed in is a staff token or a phone's pass (what the pairing link carries).
function keepToken(value) {
  store.setItem("gatemesh.token", value);
  const device = value.startsWith("GMP1.") ? passDevice(value) : null;
  if (device) store.setItem("gatemesh.phone", device); else store.removeItem("gatemesh.phone");
}
$("token").addEventListener("change", () => { keepToken($("token").value.trim()); loadGates(); });
$("gate").addEventListener("change", () => {
  const o = $("gate").selectedOptions[0];
  if (o) $("direction").value = o.dataset.direction;
});
$("save").addEventListener("click", () => {
  if ($("token").value.trim() !== token()) keepToken($("token").value.trim());
  if (!$("gate").value) { $("setup-error").textContent = "Choose a gate."; return; }
  const chosen = $("gate").selectedOptions[0];
  settings = { gate: $("gate").value, zone: chosen ? chosen.dataset.zone : "", direction: $("direction").value };
  store.setItem("gatemesh.settings", JSON.stringify(settings));
  showScanner();
});
$("change").addEventListener("click", showSetup);

function showScanner() {
  if (settings.zone === undefined) learnZone();
  $("setup").hidden = true;
  $("scanner").hidden = false;
  const out = settings.direction === "out";
  $("where").textContent = `${t("gate")} ${settings.gate} · ${out ? t("exit").toUpperCase() : t("entry")}`;
  $("where").className = out ? "out" : "in";
  $("direction-switch").textContent = out ? t("switch_in") : t("switch_out");
  showRole();
  $("code").focus();
}

// Settings kept by an earlier version lack the gate's zone (a zone pause must cover the page).
async function learnZone() {
  try {
    const r = await api("/api/status");
    const g = r.ok && (r.body.gates || []).find((x) => x.name === settings.gate);
    if (g) { settings.zone = g.zone; store.setItem("gatemesh.settings", JSON.stringify(settings)); }
  } catch (_) { /* the next start tries again */ }
}

// The steward turns the gate around (people leaving) with one tap; the header says which way.
$("direction-switch").addEventListener("click", () => {
  settings.direction = settings.direction === "out" ? "in" : "out";
  store.setItem("gatemesh.settings", JSON.stringify(settings));
  showScanner();
});

// ---- undo: the last admit of this page, within the node's window (two minutes) ----

const UNDO_WINDOW_MS = 110000;
let lastAdmit = null;
let undoTimer = null;

function offerUndo(d) {
  if (!maySupervise()) return;
  if (d.verdict !== "admit" || d.repeat || d.direction !== "in" || !d.ticket) return;
  lastAdmit = { ticket_id: d.ticket.id, scan_id: d.scan_id };
  $("undo").hidden = false;
  clearTimeout(undoTimer);
  undoTimer = setTimeout(() => { $("undo").hidden = true; lastAdmit = null; }, UNDO_WINDOW_MS);
}

$("undo").addEventListener("click", async () => {
  if (!lastAdmit || busy) return;
  busy = true;
  try {
    const r = await supervisorCall("/api/annul", lastAdmit);
    if (!r) return;
    setLink(true);
    if (r.ok) {
      $("undo").hidden = true;
      lastAdmit = null;
      showProblem(t("undone"), "annulled");
      $("result").className = "undone";
      $("result-title").textContent = t("undone_title");
    } else showProblem(refusal(r), r.body.error);
  } catch (_) {
    setLink(false);
    showProblem(t("unreachable"), "unreachable");
  } finally {
    busy = false;
  }
});

// ---- roles at the gate: a steward scans and searches; a supervisor also undoes an admit,
// checks in by hand and pauses its gate for five minutes ----

let deviceRole = null; // {role, pin} as the node says (GET /api/status), once known
let roleAsking = false;
let supervisorPause = null; // a supervisor's pause of this gate in force

// A paired phone is a steward's unless the device has a supervisor's PIN to lift it. Not known
// yet: the page offers the actions and the node decides.
function maySupervise() {
  if (!deviceRole) return true;
  return deviceRole.role === "supervisor" && (deviceRole.pin || !phoneId());
}

// The PIN is asked when the device has one, and always from a phone.
function needsPin() {
  return !!(phoneId() || (deviceRole && deviceRole.pin));
}

async function learnRole() {
  if (roleAsking) return;
  roleAsking = true;
  try {
    const r = await api("/api/status");
    if (r.ok && r.body.device_role) deviceRole = r.body.device_role;
    showRole();
  } catch (_) { /* the next ping asks again */ } finally {
    roleAsking = false;
  }
}

function showRole() {
  const badge = $("role-badge");
  badge.hidden = !deviceRole;
  if (deviceRole) {
    const supervisor = maySupervise();
    badge.textContent = supervisor ? t("role_supervisor") : t("role_steward");
    badge.className = "badge " + (supervisor ? "supervisor" : "steward");
    badge.dataset.role = supervisor ? "supervisor" : "steward";
    badge.title = supervisor && needsPin() ? t("role_pin_hint") : "";
  }
  if (!maySupervise()) { $("undo").hidden = true; lastAdmit = null; }
  showGatePause();
}

// On a supervisor's device: pause this gate, or resume it. While the gate is paused the cover
// hides the page, so the button sits on the cover.
function showGatePause() {
  const b = $("gate-pause");
  b.hidden = !(deviceRole && maySupervise());
  b.textContent = supervisorPause ? t("gate_resume") : t("gate_pause");
  b.dataset.paused = supervisorPause ? "1" : "0";
  const home = supervisorPause ? $("paused") : $("controls");
  if (b.parentElement !== home) home.appendChild(b);
}

$("gate-pause").addEventListener("click", async () => {
  if (busy || !settings) return;
  busy = true;
  try {
    const r = await supervisorCall("/api/gate-pause", { gate: settings.gate, paused: !supervisorPause });
    if (!r) return;
    setLink(true);
    if (r.ok) await ping();
    else showProblem(refusal(r), r.body.error);
  } catch (_) {
    setLink(false);
    showProblem(t("unreachable_action"), "unreachable");
  } finally {
    busy = false;
  }
});

// A supervisor's action, with the PIN when one is needed: null when the PIN was not given.
async function supervisorCall(path, body) {
  const typed = needsPin() && !keptPin;
  const pin = needsPin() ? (keptPin || await askPin()) : "";
  if (pin === null) return null;
  const r = await api(path, { method: "POST", body: JSON.stringify(body), pin });
  if (r.ok && typed) keepPin(pin);
  if (PIN_ERRORS.includes(r.body.error)) forgetPin();
  return r;
}

// A refusal in words the steward understands, when the page knows its code.
function refusal(r) {
  const key = "error_" + r.body.error;
  return WORDS.en[key] ? t(key) : r.body.message || `error ${r.status}`;
}

// ---- the supervisor's PIN: asked in the page, kept in memory a minute after it worked so a
// supervisor can do several actions in a row, never stored ----

const PIN_KEPT_MS = 60000;
const PIN_ERRORS = ["pin_required", "pin_wrong", "pin_locked", "supervisor_only"];
let keptPin = null, pinTimer = null, pinAnswer = null;

function keepPin(pin) {
  // Kept a minute from when it was typed (only a PIN just typed is kept): a steward handed the
  // scanner afterwards gets no supervisor's action by keeping busy.
  keptPin = pin;
  clearTimeout(pinTimer);
  pinTimer = setTimeout(forgetPin, PIN_KEPT_MS);
}

function forgetPin() {
  keptPin = null;
  clearTimeout(pinTimer);
}

// The PIN typed, or null on Cancel.
function askPin() {
  return new Promise((resolve) => {
    pinAnswer = resolve;
    $("pin-input").value = "";
    $("pin-error").textContent = "";
    $("pin-dialog").hidden = false;
    $("pin-input").focus();
  });
}

function closePin(pin) {
  $("pin-dialog").hidden = true;
  $("pin-input").value = "";
  const answer = pinAnswer;
  pinAnswer = null;
  if (answer) answer(pin);
  $("code").focus();
}

$("pin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const pin = $("pin-input").value.trim();
  if (!/^[0-9]{4,12}$/.test(pin)) { $("pin-error").textContent = t("pin_format"); return; }
  closePin(pin);
});
$("pin-cancel").addEventListener("click", () => closePin(null));
$("pin-dialog").addEventListener("keydown", (e) => { if (e.key === "Escape") closePin(null); });

// ---- scanning ----

// The field keeps focus so a wedge scanner's keystrokes always land in it, except while the
// steward types a search or confirms an attention ticket.
function elsewhere() {
  const a = document.activeElement;
  return a && (a.id === "search" || a.closest("#search-results") || a.id === "confirm" || a.closest("#pin-dialog"));
}
document.addEventListener("click", (e) => {
  if (!$("pin-dialog").hidden) return;
  if (!$("scanner").hidden && !e.target.closest("#search-form, #search-results, #confirm")) $("code").focus();
});
$("code").addEventListener("blur", () => setTimeout(() => {
  if (!$("scanner").hidden && $("setup").hidden && !elsewhere()) $("code").focus();
}, 0));

$("scan-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = $("code").value.trim();
  $("code").value = "";
  if (code) check(code, "keyboard");
});

function time(ms) { return localTime(ms); }

async function check(code, via) {
  if (busy) return;
  busy = true;
  asked = performance.now();
  // The phone's clock when it read the code: its scan's identity if the node's answer is lost.
  const scan = { code, gate: settings.gate, direction: settings.direction, now_ms: Date.now() };
  const onPhone = phone && phone.ready() && !unpaired;
  try {
    if (onPhone && offline) return await decideHere(scan, via);
    const body = { code, gate: settings.gate, direction: settings.direction };
    if (phoneId()) body.scanned_at_ms = scan.now_ms;
    const r = await api("/api/scan", {
      method: "POST", body: JSON.stringify(body), timeoutMs: onPhone ? ONLINE_ANSWER_MS : REQUEST_TIMEOUT_MS,
    });
    setLink(true);
    if (r.ok) {
      show(r.body, via);
      if (phone) phone.online(r.body, scan).then(showWaiting, (e) => console.warn(e));
    } else if (r.status === 401 && phoneId()) showUnpaired(r.body);
    else showProblem(r.body.message || `error ${r.status}`, r.body.error);
  } catch (_) {
    if (onPhone) {
      offline = true;
      setLink(false);
      await decideHere(scan, via);
    } else {
      setLink(false);
      showProblem(phoneId() ? t("not_ready_offline") : t("unreachable"), "unreachable");
    }
  } finally {
    busy = false;
  }
}

// Decide on the phone: kept before it shows, marked as checked here.
async function decideHere(scan, via) {
  try {
    const d = await phone.decide(scan);
    show(d, via, true);
    $("result").dataset.decidedMs = Math.round(d.decided_ms);
  } catch (e) {
    showProblem(`${t("not_checked")}: ${e.message}`, "offline_error");
  }
  showWaiting();
}

// ---- search, when a code will not scan, and check-in by hand ----

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = $("search").value.trim();
  const list = $("search-results");
  list.innerHTML = "";
  if (!q) return;
  try {
    const r = await api("/api/search?q=" + encodeURIComponent(q));
    setLink(true);
    if (!r.ok) { showProblem(r.body.message || `error ${r.status}`, r.body.error); return; }
    const found = r.body.tickets || [];
    if (!found.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = t("no_match");
      list.appendChild(li);
    }
    for (const hit of found) list.appendChild(searchRow(hit));
  } catch (_) {
    setLink(false);
    showProblem(t("unreachable"), "unreachable");
  }
});

function searchRow(hit) {
  const li = document.createElement("li");
  li.dataset.ticket = hit.ticket_id;
  const who = document.createElement("div");
  who.className = "who";
  const b = document.createElement("b");
  b.textContent = hit.name || hit.ticket_id;
  const small = document.createElement("span");
  const bits = [hit.tier, hit.order ? `${t("order")} ${hit.order}` : "", hit.ticket_id, hit.notes || "",
    hit.cancelled ? t("cancelled") : "", hit.inside ? t("inside") : `${hit.entries_left} ${t("entries_left")}`];
  small.textContent = bits.filter(Boolean).join(" · ");
  who.append(b, small);
  const go = document.createElement("button");
  go.type = "button";
  go.textContent = t("check_in");
  go.addEventListener("click", () => checkIn(hit.ticket_id));
  // A steward's device finds the ticket; checking it in by hand is a supervisor's.
  if (maySupervise()) li.append(who, go); else li.append(who);
  return li;
}

async function checkIn(ticketId) {
  if (busy) return;
  busy = true;
  asked = performance.now();
  try {
    const r = await supervisorCall("/api/checkin",
      { ticket_id: ticketId, gate: settings.gate, direction: settings.direction });
    if (!r) return;
    setLink(true);
    if (r.ok) {
      $("search-results").innerHTML = "";
      $("search").value = "";
      show(r.body, "manual");
    } else showProblem(refusal(r), r.body.error);
  } catch (_) {
    setLink(false);
    showProblem(t("unreachable"), "unreachable");
  } finally {
    busy = false;
  }
}

function show(d, via, here = false) {
  const admit = d.verdict === "admit";
  // An attention ticket stops the steward even on an admit, until they tap to confirm.
  const attention = admit && d.attention !== undefined && d.attention !== null;
  const el = $("result");
  el.className = attention ? "attention" : admit ? "admit" : "deny";
  el.dataset.reason = d.reason;
  el.dataset.via = via;
  $("result-title").textContent = attention ? t("attention") : admit ? (d.direction === "out" ? t("goodbye") : t("welcome")) : t("stop");
  $("result-reason").textContent = attention && d.attention ? d.attention : reasonWords(d);
  const tk = d.ticket;
  $("result-name").textContent = tk && tk.name ? tk.name : "";
  $("result-ticket").textContent = tk
    ? [tk.tier, tk.order ? `${t("order")} ${tk.order}` : "", `${t("ticket")} ${tk.id}`, d.manual ? t("manual") : ""].filter(Boolean).join(" · ")
    : d.message;
  $("result-notes").textContent = tk && tk.notes && !(attention && d.attention === tk.notes) ? tk.notes : "";
  const prev = (d.previous || [])[0];
  const when = prev && prev.wall_ms ? `, ${time(prev.wall_ms)}` : "";
  $("result-previous").textContent = prev ? `${t("first_used")} ${prev.gate}${when}` : "";
  $("confirm").hidden = !attention;
  // A node that just started and has not caught up with its peers: amber frame, and it says so.
  const catchingUp = d.synced === false;
  el.classList.toggle("catching-up", catchingUp);
  el.classList.toggle("offline-check", here);
  el.dataset.here = here ? "1" : "0";
  $("result-sync").textContent = here ? t("offline_checked") : catchingUp ? t("catching_up") : "";
  el.hidden = false;
  el.dataset.ms = Math.round(performance.now() - asked);
  if (attention) alertSound(); else feedback(admit);
  remember(d);
  if (!here) offerUndo(d);
  clearTimeout(hideTimer);
  if (attention) $("confirm").focus();
  else hideTimer = setTimeout(hideResult, RESULT_SHOWN_MS);
}

$("confirm").addEventListener("click", (e) => { e.stopPropagation(); hideResult(); });

function showProblem(message, code) {
  const el = $("result");
  el.className = "unreachable";
  $("result-sync").textContent = "";
  el.dataset.reason = code || "error";
  $("result-title").textContent = t("not_checked");
  $("result-reason").textContent = message;
  for (const id of ["result-name", "result-ticket", "result-notes", "result-previous"]) $(id).textContent = "";
  $("confirm").hidden = true;
  el.hidden = false;
  feedback(false);
  clearTimeout(hideTimer);
  hideTimer = setTimeout(hideResult, RESULT_SHOWN_MS);
}

function hideResult() {
  $("result").hidden = true;
  $("confirm").hidden = true;
  // The PIN goes into its own field, never into the code field.
  if ($("pin-dialog").hidden) $("code").focus();
}
// An attention screen goes only by its confirm button (a stray tap must not dismiss it).
$("result").addEventListener("click", () => { if ($("confirm").hidden) hideResult(); });

function remember(d) {
  const li = document.createElement("li");
  li.className = d.verdict;
  const who = d.ticket ? (d.ticket.name ? `${d.ticket.name} (${d.ticket.id})` : d.ticket.id) : "";
  li.textContent = `${time(Date.now())} ${d.verdict.toUpperCase()} ${who} — ${reasonWords(d)}`;
  const list = $("history");
  list.prepend(li);
  while (list.children.length > 20) list.lastChild.remove();
}

let audio = null;
function feedback(good) {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    const o = audio.createOscillator();
    const g = audio.createGain();
    o.frequency.value = good ? 880 : 220;
    o.type = good ? "sine" : "square";
    g.gain.value = 0.2;
    o.connect(g); g.connect(audio.destination);
    o.start(); o.stop(audio.currentTime + (good ? 0.15 : 0.5));
  } catch (_) { /* no audio: the colour still says it */ }
  if (navigator.vibrate) navigator.vibrate(good ? 80 : [200, 100, 200]);
}

// Two rising tones, three times: not the admit beep, not the deny buzz.
function alertSound() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    for (let i = 0; i < 6; i++) {
      const o = audio.createOscillator();
      const g = audio.createGain();
      o.frequency.value = i % 2 ? 988 : 659;
      o.type = "triangle";
      g.gain.value = 0.25;
      o.connect(g); g.connect(audio.destination);
      const at = audio.currentTime + i * 0.18;
      o.start(at); o.stop(at + 0.16);
    }
  } catch (_) { /* no audio: the amber screen still says it */ }
  if (navigator.vibrate) navigator.vibrate([100, 60, 100, 60, 100]);
}

// ---- camera ----

let stream = null;
let lastCode = "", lastAt = 0;

$("camera").addEventListener("click", async () => {
  if (stream) { stopCamera(); return; }
  try {
    ZXingWASM.prepareZXingModule({
      overrides: { locateFile: (path, prefix) => path.endsWith(".wasm") ? "/vendor/" + path : prefix + path },
    });
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch (e) {
    showProblem("The camera cannot be used here: " + e.message, "camera");
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  $("camera").textContent = t("stop_camera");
  readFrames();
});

function stopCamera() {
  for (const t of stream.getTracks()) t.stop();
  stream = null;
  $("video").hidden = true;
  $("camera").textContent = t("use_camera");
}

async function readFrames() {
  const video = $("video"), canvas = $("frame");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  while (stream) {
    if (video.videoWidth > 0 && !busy && $("result").hidden) {
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      ctx.drawImage(video, 0, 0);
      try {
        const found = await ZXingWASM.readBarcodes(ctx.getImageData(0, 0, canvas.width, canvas.height), {
          formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1,
        });
        const text = found.length && found[0].isValid ? found[0].text : "";
        const now = Date.now();
        if (text && !(text === lastCode && now - lastAt < CAMERA_REPEAT_MS)) {
          lastCode = text; lastAt = now;
          await check(text, "camera");
        }
      } catch (e) {
        console.warn("decoder", e);
      }
    }
    await new Promise((r) => setTimeout(r, 120));
  }
}

// ---- start ----

if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
window.addEventListener("offline", () => { if (phone && phone.ready()) offline = true; setLink(false); });
window.addEventListener("online", ping);
applyLanguage();
if (settings && token()) showScanner(); else showSetup();
(async function start() {
  if (phoneId()) {
    $("phone").hidden = false;
    $("phone").textContent = `${t("paired_as")} ${phoneId()}`;
    try { phone = await Phone.open(phoneId()); } catch (e) { console.warn("phone storage", e); }
    // A page opened with no network decides on the phone from the start.
    if (phone && phone.ready() && navigator.onLine === false) offline = true;
    showWaiting();
  }
  pingLoop();
})();
