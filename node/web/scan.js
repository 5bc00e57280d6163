// gatemesh scanner page. One input keeps focus: hardware (keyboard-wedge) scanners type the
// code and Enter into it; people type codes by hand into the same field; the camera path decodes
// QR codes with zxing-wasm and submits the text the same way. Every answer is full screen,
// green or red, with the reason in words, a sound and a vibration.
"use strict";

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const RESULT_SHOWN_MS = 2500;
const CAMERA_REPEAT_MS = 3000; // the same code seen again by the camera within this is ignored
const REQUEST_TIMEOUT_MS = 4000;

let settings = JSON.parse(store.getItem("gatemesh.settings") || "null");
let hideTimer = null;
let busy = false;
let asked = 0; // when the current code was submitted (the answer's delay is shown in data-ms)

// A token in the address (#token=...) is kept and removed from the address bar.
(function takeTokenFromAddress() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    store.setItem("gatemesh.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
})();

function token() { return store.getItem("gatemesh.token") || ""; }

async function api(path, options = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), REQUEST_TIMEOUT_MS);
  try {
    const r = await fetch(path, {
      ...options,
      signal: ctrl.signal,
      headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
    });
    const body = await r.json().catch(() => ({}));
    return { ok: r.ok, status: r.status, body };
  } finally {
    clearTimeout(timer);
  }
}

function setLink(up) {
  const el = $("link");
  el.textContent = up ? "node reachable" : "node unreachable — scans are NOT checked";
  el.className = "link " + (up ? "ok" : "down");
}

async function ping() {
  try {
    const r = await fetch("/health/live", { cache: "no-store" });
    setLink(r.ok);
  } catch (_) {
    setLink(false);
  }
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
    select.innerHTML = "";
    for (const g of r.body.gates || []) {
      const o = document.createElement("option");
      o.value = g.name;
      o.textContent = `${g.name} (${g.zone}, ${g.direction})`;
      o.dataset.direction = g.direction;
      select.appendChild(o);
    }
    if (settings) { select.value = settings.gate; $("direction").value = settings.direction; }
  } catch (_) {
    $("setup-error").textContent = "The node cannot be reached.";
  }
}

$("token").addEventListener("change", () => { store.setItem("gatemesh.token", $("token").value.trim()); loadGates(); });
$("gate").addEventListener("change", () => {
  const o = $("gate").selectedOptions[0];
  if (o) $("direction").value = o.dataset.direction;
});
$("save").addEventListener("click", () => {
  store.setItem("gatemesh.token", $("token").value.trim());
  if (!$("gate").value) { $("setup-error").textContent = "Choose a gate."; return; }
  settings = { gate: $("gate").value, direction: $("direction").value };
  store.setItem("gatemesh.settings", JSON.stringify(settings));
  showScanner();
});
$("change").addEventListener("click", showSetup);

function showScanner() {
  $("setup").hidden = true;
  $("scanner").hidden = false;
  $("where").textContent = `Gate ${settings.gate} · ${settings.direction === "in" ? "entry" : "exit"}`;
  $("code").focus();
}

// ---- scanning ----

// The field keeps focus so a wedge scanner's keystrokes always land in it.
document.addEventListener("click", () => { if (!$("scanner").hidden) $("code").focus(); });
$("code").addEventListener("blur", () => setTimeout(() => { if (!$("scanner").hidden && $("setup").hidden) $("code").focus(); }, 0));

$("scan-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = $("code").value.trim();
  $("code").value = "";
  if (code) check(code, "keyboard");
});

function time(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

async function check(code, via) {
  if (busy) return;
  busy = true;
  asked = performance.now();
  try {
    const r = await api("/api/scan", {
      method: "POST",
      body: JSON.stringify({ code, gate: settings.gate, direction: settings.direction }),
    });
    setLink(true);
    if (r.ok) show(r.body, via);
    else showProblem(r.body.message || `error ${r.status}`, r.body.error);
  } catch (_) {
    setLink(false);
    showProblem("The node cannot be reached: this ticket was NOT checked. Check the Wi-Fi, then scan again.", "unreachable");
  } finally {
    busy = false;
  }
}

function show(d, via) {
  const admit = d.verdict === "admit";
  const el = $("result");
  el.className = admit ? "admit" : "deny";
  el.dataset.reason = d.reason;
  el.dataset.via = via;
  $("result-title").textContent = admit ? (d.direction === "out" ? "GOODBYE" : "WELCOME") : "STOP";
  $("result-reason").textContent = d.words || d.message;
  $("result-ticket").textContent = (d.ticket ? `Ticket ${d.ticket.id} · ${d.ticket.tier}` : d.message);
  const prev = (d.previous || [])[0];
  $("result-previous").textContent = prev ? `First used at gate ${prev.gate}, ${time(prev.wall_ms)}` : "";
  el.hidden = false;
  el.dataset.ms = Math.round(performance.now() - asked);
  feedback(admit);
  remember(d);
  clearTimeout(hideTimer);
  hideTimer = setTimeout(hideResult, RESULT_SHOWN_MS);
}

function showProblem(message, code) {
  const el = $("result");
  el.className = "unreachable";
  el.dataset.reason = code || "error";
  $("result-title").textContent = "NOT CHECKED";
  $("result-reason").textContent = message;
  $("result-ticket").textContent = "";
  $("result-previous").textContent = "";
  el.hidden = false;
  feedback(false);
  clearTimeout(hideTimer);
  hideTimer = setTimeout(hideResult, RESULT_SHOWN_MS);
}

function hideResult() { $("result").hidden = true; $("code").focus(); }
$("result").addEventListener("click", hideResult);

function remember(d) {
  const li = document.createElement("li");
  li.className = d.verdict;
  li.textContent = `${time(Date.now())} ${d.verdict.toUpperCase()} ${d.ticket ? d.ticket.id : ""} — ${d.message}`;
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
  $("camera").textContent = "Stop camera";
  readFrames();
});

function stopCamera() {
  for (const t of stream.getTracks()) t.stop();
  stream = null;
  $("video").hidden = true;
  $("camera").textContent = "Use camera";
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
setInterval(ping, 3000);
window.addEventListener("offline", () => setLink(false));
window.addEventListener("online", ping);
ping();
if (settings && token()) showScanner(); else showSetup();
