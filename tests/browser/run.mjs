// Browser scenarios for tests/browser.rs, in Debian's Chromium through playwright-core.
// Usage: node run.mjs SCENARIO '{"json": "arguments"}'. Prints one JSON line with what the
// pages showed; the Rust test decides pass or fail. Screenshots go to args.shots.
import { chromium } from "playwright-core";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { run as runVectors } from "./vectors.mjs";

const [scenario, raw] = process.argv.slice(2);
const args = JSON.parse(raw);
const STEP_MS = 15000;

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

async function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [...FLAGS, ...extra],
    timeout: 60000,
  });
}

async function shot(page, name) {
  await page.screenshot({ path: `${args.shots}/${name}.png` });
}

// Set the scanner up for a gate, the way a steward does once per device.
async function setUp(page, base, gate, direction = "in") {
  await page.goto(`${base}/#token=${args.token}`);
  await page.waitForSelector("#setup:not([hidden])", { timeout: STEP_MS });
  await page.waitForSelector(`#gate option[value="${gate}"]`, { state: "attached", timeout: STEP_MS });
  await page.selectOption("#gate", gate);
  await page.selectOption("#direction", direction);
  await page.click("#save");
  await page.waitForSelector("#scanner:not([hidden])", { timeout: STEP_MS });
}

// What the full-screen answer says, once shown.
async function answer(page) {
  await page.waitForSelector("#result:not([hidden])", { timeout: STEP_MS });
  return page.evaluate(() => {
    const r = document.getElementById("result");
    return {
      // A node still catching up after its start frames the answer in amber (its own flag).
      class: [...r.classList].filter((c) => c !== "catching-up").join(" "),
      catching_up: r.classList.contains("catching-up"),
      sync_words: document.getElementById("result-sync").textContent,
      reason: r.dataset.reason,
      via: r.dataset.via,
      title: document.getElementById("result-title").textContent,
      words: document.getElementById("result-reason").textContent,
      previous: document.getElementById("result-previous").textContent,
      name: document.getElementById("result-name").textContent,
      ticket: document.getElementById("result-ticket").textContent,
      notes: document.getElementById("result-notes").textContent,
      confirm_shown: !document.getElementById("confirm").hidden,
      background: getComputedStyle(r).backgroundColor,
      answer_ms: Number(r.dataset.ms),
      focused: document.activeElement && document.activeElement.id,
      // Decided on the phone (its node did not answer), and how long the decision took there.
      here: r.dataset.here === "1",
      decided_ms: Number(r.dataset.decidedMs || -1),
    };
  });
}

async function dismiss(page) {
  await page.click("#result");
  await page.waitForSelector("#result", { state: "hidden", timeout: STEP_MS });
}

// A keyboard-wedge scanner: the code typed fast, then Enter, into whatever has focus.
async function wedge(page, code) {
  const t0 = Date.now();
  await page.keyboard.type(code, { delay: 0 });
  await page.keyboard.press("Enter");
  const a = await answer(page);
  a.shown_ms = Date.now() - t0;
  return a;
}

async function scanScenario() {
  const browser = await launch();
  const out = {};
  try {
    // Gate north on node A.
    const a = await (await browser.newContext()).newPage();
    await setUp(a, args.a, "north");
    out.focus_after_setup = await a.evaluate(() => document.activeElement.id);
    out.first = await wedge(a, args.code);
    await shot(a, "scan-admit");
    await dismiss(a);
    // Gate south on node B: the same ticket (a shared screenshot).
    const bctx = await browser.newContext();
    const b = await bctx.newPage();
    await setUp(b, args.b, "south");
    out.second = await wedge(b, args.code);
    await shot(b, "scan-duplicate");
    await dismiss(b);
    // Manual entry with the button.
    await b.fill("#code", "not-a-ticket");
    await b.click("#scan-form button[type=submit]");
    out.manual = await answer(b);
    await dismiss(b);
    // Installed and controlled by the service worker, then the node is unreachable: the page
    // still reloads and says so plainly.
    await b.waitForFunction(() => navigator.serviceWorker && navigator.serviceWorker.controller, null, { timeout: STEP_MS });
    await bctx.setOffline(true);
    await b.reload();
    await b.waitForSelector("#scanner:not([hidden])", { timeout: STEP_MS });
    await b.waitForFunction(() => document.getElementById("link").classList.contains("down"), null, { timeout: STEP_MS });
    out.offline_link = await b.textContent("#link");
    out.offline = await wedge(b, args.code2);
    await shot(b, "scan-offline");
    await bctx.setOffline(false);
  } finally {
    await browser.close();
  }
  return out;
}

async function cameraScenario() {
  const browser = await launch([
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${args.video}`,
  ]);
  const out = {};
  try {
    const ctx = await browser.newContext({ permissions: ["camera"] });
    const page = await ctx.newPage();
    await setUp(page, args.a, "north");
    await page.click("#camera");
    out.camera = await answer(page);
    await shot(page, "camera-admit");
  } finally {
    await browser.close();
  }
  return out;
}

async function dashboardScenario() {
  const browser = await launch();
  const out = {};
  try {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 1100 } })).newPage();
    await page.goto(`${args.a}/dashboard#token=${args.token}`);
    await page.waitForFunction(() => document.getElementById("live").textContent === "live", null, { timeout: STEP_MS });
    await page.waitForFunction(() => document.getElementById("admitted").textContent !== "–", null, { timeout: STEP_MS });
    out.before = await page.textContent("#admitted");
    // Another node scans (a different gate, through its own API).
    for (const code of args.codes) {
      const r = await fetch(`${args.b}/api/scan`, {
        method: "POST",
        headers: { "Authorization": `Bearer ${args.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ code, gate: "south" }),
      });
      out.b_status = r.status;
    }
    await page.waitForFunction((n) => document.getElementById("admitted").textContent === String(n),
      Number(out.before) + args.codes.length, { timeout: STEP_MS });
    out.after = await page.textContent("#admitted");
    out.peers = await page.textContent("#peers-online");
    out.gates = await page.textContent("#gates");
    out.inside = await page.textContent("#inside");
    await page.waitForTimeout(300);
    await shot(page, "dashboard");
    // Nothing cut at a laptop's width nor at a tablet's: no card scrolls sideways.
    const cut = () => page.$$eval(".card", (cards) => cards
      .filter((c) => c.scrollWidth > c.clientWidth + 1)
      .map((c) => c.querySelector(".l") && c.querySelector(".l").textContent));
    out.cut_laptop = await cut();
    await page.setViewportSize({ width: 820, height: 1180 });
    await page.waitForTimeout(300);
    out.cut_tablet = await cut();
    await shot(page, "dashboard-tablet");
  } finally {
    await browser.close();
  }
  return out;
}

// A steward at a phone-sized screen: an attention ticket (amber, confirm), an admit with the
// holder's name, a search by name typed without accents and a check-in by hand, then French.
async function stewardScenario() {
  const browser = await launch();
  const out = {};
  try {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: "en-US", hasTouch: true, isMobile: true });
    const page = await ctx.newPage();
    await setUp(page, args.a, "north");
    out.attention = await wedge(page, args.attention_code);
    await shot(page, "steward-attention");
    // A stray tap does not dismiss it; the confirm button does.
    await page.click("#result-title");
    out.attention_after_tap = await page.isVisible("#result");
    await page.click("#confirm");
    await page.waitForSelector("#result", { state: "hidden", timeout: STEP_MS });
    out.named = await wedge(page, args.named_code);
    await shot(page, "steward-admit-name");
    await dismiss(page);
    await page.click("#search");
    await page.keyboard.type(args.query);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#search-results li", { timeout: STEP_MS });
    out.search_focus = await page.evaluate(() => document.activeElement.id);
    out.results = await page.$$eval("#search-results li", (lis) => lis.map((li) => li.textContent));
    await shot(page, "steward-search");
    await page.click("#search-results li button");
    out.manual = await answer(page);
    await shot(page, "steward-manual");
    await dismiss(page);
    await page.click("#lang");
    // Past the double-scan grace, so the second read is a refusal, not "the same scan again".
    await page.waitForTimeout(3200);
    out.french = await wedge(page, args.named_code);
    out.french_lang = await page.evaluate(() => document.documentElement.lang);
    await shot(page, "steward-french");
  } finally {
    await browser.close();
  }
  return out;
}

// The organizer paused this gate: the scanner covers itself and says so; undo and the
// direction switch work once it is lifted (the Rust side lifts it after `pause_seen`).
async function pausedScenario() {
  const browser = await launch();
  const out = {};
  try {
    const page = await (await browser.newContext({ viewport: { width: 390, height: 844 }, locale: "fr-FR" })).newPage();
    await setUp(page, args.a, "north");
    await page.waitForSelector("#paused:not([hidden])", { timeout: STEP_MS });
    out.paused_text = await page.textContent("#paused");
    out.lang = await page.evaluate(() => document.documentElement.lang);
    await shot(page, "steward-paused");
    // Tell the Rust side the pause was seen: it lifts it now.
    if (args.seen) writeFileSync(args.seen, "seen");
    await page.waitForSelector("#paused", { state: "hidden", timeout: 30000 });
    out.admit = await wedge(page, args.code);
    await shot(page, "steward-catching-up");
    await dismiss(page);
    out.undo_shown = await page.isVisible("#undo");
    await page.click("#undo");
    out.undone = await answer(page);
    await dismiss(page);
    out.again = await wedge(page, args.code);
    await dismiss(page);
    await page.click("#direction-switch");
    out.where = await page.textContent("#where");
    out.exit = await wedge(page, args.code);
  } finally {
    await browser.close();
  }
  return out;
}

// A steward's phone on the venue network: the node's page over HTTPS at its LAN address,
// the event CA trusted by the browser. A secure context: the service worker takes the page,
// a code is admitted, and the page reloads from its cache with the node unreachable.
async function httpsScenario() {
  const browser = await launch([
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${args.video}`,
  ]);
  const out = {};
  try {
    const ctx = await browser.newContext({
      viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, permissions: ["camera"],
    });
    const page = await ctx.newPage();
    await setUp(page, args.a, "north");
    out.secure = await page.evaluate(() => window.isSecureContext);
    out.protocol = await page.evaluate(() => location.protocol);
    out.camera_api = await page.evaluate(() => !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia));
    await page.waitForFunction(() => navigator.serviceWorker && navigator.serviceWorker.controller, null, { timeout: STEP_MS });
    out.controlled = true;
    out.admit = await wedge(page, args.code);
    await shot(page, "https-admit");
    await dismiss(page);
    // The phone's camera (Chromium's fake device playing the ticket's QR image).
    await page.click("#camera");
    out.camera = await answer(page);
    await shot(page, "https-camera");
    await page.click("#camera").catch(() => {});
    await ctx.setOffline(true);
    await page.reload();
    await page.waitForSelector("#scanner:not([hidden])", { timeout: STEP_MS });
    await page.waitForFunction(() => document.getElementById("link").classList.contains("down"), null, { timeout: STEP_MS });
    out.offline_reload = true;
    await shot(page, "https-offline");
  } finally {
    await browser.close();
  }
  return out;
}

// The offline decision vectors, in the page's own origin (gate.js as the node serves it, the
// browser's WebCrypto), then with the vendored Ed25519 fallback.
async function vectorsScenario() {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${args.a}/health/live`);
    const v = JSON.parse(readFileSync(args.file, "utf8"));
    const go = (fallback) => page.evaluate(async ({ src, v, fallback }) => {
      const gate = await import("/gate.js");
      gate.crypto.forceFallback = fallback;
      const run = new Function(`return (${src})`)();
      return run(gate, v);
    }, { src: runVectors.toString(), v, fallback });
    const webcrypto = await go(false);
    const fallback = await go(true);
    const sorted = [...webcrypto.ms].sort((a, b) => a - b);
    const p95 = sorted[Math.floor(sorted.length * 0.95)];
    delete webcrypto.ms;
    delete fallback.ms;
    return { webcrypto, fallback, decision_p95_ms: p95, ed25519: await page.evaluate(async () => {
      try { await crypto.subtle.importKey("raw", new Uint8Array(32), { name: "Ed25519" }, false, ["verify"]); return "webcrypto"; } catch (e) { return e.name; }
    }) };
  } finally {
    await browser.close();
  }
}

// Wait for a file the Rust test writes (it cuts and heals the phone's link meanwhile); its text.
async function signal(name, limitMs = 120000) {
  const path = `${args.files}/${name}`;
  const until = Date.now() + limitMs;
  while (!existsSync(path)) {
    if (Date.now() > until) throw new Error(`no ${name} from the test`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return readFileSync(path, "utf8");
}

const tell = (name) => writeFileSync(`${args.files}/${name}`, String(Date.now()));

// A paired phone: paired by its link, one scan online, then its link to the node is cut; it
// scans on its own (args.offline: codes, or {wait_ms}), is closed and reopened while cut, and
// hands its scans to the node when the link is back.
async function phoneScenario() {
  const browser = await launch();
  const out = { offline: [] };
  try {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    let page = await ctx.newPage();
    await page.goto(args.link);
    await page.waitForSelector("#setup:not([hidden])", { timeout: STEP_MS });
    await page.waitForSelector(`#gate option[value="north"]`, { state: "attached", timeout: STEP_MS });
    await page.selectOption("#gate", "north");
    await page.click("#save");
    await page.waitForSelector("#scanner:not([hidden])", { timeout: STEP_MS });
    out.paired_as = await page.textContent("#phone");
    await page.waitForFunction(() => navigator.serviceWorker && navigator.serviceWorker.controller, null, { timeout: STEP_MS });
    // The snapshot must hold what the mesh admitted before (the test's `after_ms`).
    await page.waitForFunction((after) => Number(document.body.dataset.snapshotMs) > after, args.after_ms, { timeout: 30000 });
    out.online = await wedge(page, args.online);
    await dismiss(page);
    tell("online-done");
    await signal("cut");
    for (const step of args.offline) {
      if (step.wait_ms) { await page.waitForTimeout(step.wait_ms); continue; }
      const a = await wedge(page, step.code);
      a.label = step.label;
      out.offline.push(a);
      if (step.label === "fresh-1") await shot(page, "phone-offline-admit");
      if (step.label === "mesh-before-cut") await shot(page, "phone-offline-already-used");
      await dismiss(page);
    }
    out.waiting = await page.textContent("#waiting");
    await shot(page, "phone-offline-waiting");
    // Closed and opened again while the node is still out of reach: the queue is kept.
    await page.close();
    page = await ctx.newPage();
    await page.goto(`${args.a}/`);
    await page.waitForSelector("#scanner:not([hidden])", { timeout: STEP_MS });
    await page.waitForFunction(() => Number(document.getElementById("waiting").dataset.n) > 0, null, { timeout: STEP_MS });
    out.reopened_waiting = await page.textContent("#waiting");
    out.reopened_link = await page.textContent("#link");
    await shot(page, "phone-reopened-offline");
    tell("reopened");
    const healed = Number(await signal("healed"));
    await page.waitForFunction(() => document.getElementById("waiting").dataset.n === "0", null, { timeout: 30000 });
    out.reconciled_after_heal_ms = Date.now() - healed;
    out.link_after = await page.textContent("#link");
    await shot(page, "phone-reconciled");
  } finally {
    await browser.close();
  }
  return out;
}

// gatemesh-bench phone: a paired page takes its pack and snapshot, then its node is stopped;
// every code of args.codes is decided on the phone. Times: the page's decision with its durable
// IndexedDB write, and from Enter to the answer on the screen.
async function phoneBenchScenario() {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    const t0 = Date.now();
    await page.goto(args.link);
    await page.waitForSelector("#setup:not([hidden])", { timeout: STEP_MS });
    await page.waitForSelector(`#gate option[value="north"]`, { state: "attached", timeout: STEP_MS });
    await page.click("#save");
    await page.waitForFunction(() => Number(document.body.dataset.snapshotMs) > 0, null, { timeout: 240000 });
    const pack_load_ms = Date.now() - t0;
    tell("ready");
    await signal("stopped");
    await page.waitForFunction(() => document.body.dataset.offline === "1", null, { timeout: STEP_MS });
    const decide = [], shown = [];
    for (const code of args.codes) {
      const a = await wedge(page, code);
      if (!a.here) throw new Error(`not decided on the phone: ${JSON.stringify(a)}`);
      decide.push(a.decided_ms);
      shown.push(a.answer_ms);
      await dismiss(page);
    }
    const p = (xs, q) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]; };
    return {
      pack_load_ms, decide_ms_p50: p(decide, 0.5), decide_ms_p95: p(decide, 0.95),
      answer_ms_p50: p(shown, 0.5), answer_ms_p95: p(shown, 0.95),
    };
  } finally {
    await browser.close();
  }
}

// A holder's wallet page (a file, as mailed): opened 40 s ago (its screenshot then) and now
// (its live code); the live code scanned at gate north, then the screenshot.
async function walletScenario() {
  const browser = await launch();
  const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
  const out = {};
  try {
    const open = async (atMs, name) => {
      const ctx = await browser.newContext(phone);
      const page = await ctx.newPage();
      await page.clock.install({ time: atMs });
      await page.goto(`file://${args.wallet}`);
      await page.waitForSelector("#qr svg", { timeout: STEP_MS });
      const qr = await page.$("#qr");
      await qr.screenshot({ path: `${args.shots}/${name}-qr.png` });
      await shot(page, name);
      const code = await page.getAttribute("#qr", "data-code");
      const modules = Number(await page.getAttribute("#qr", "data-version"));
      await ctx.close();
      return { code, modules };
    };
    out.screenshot = await open(Date.now() - args.age_ms, "wallet-40s-ago");
    out.live = await open(Date.now(), "wallet-live");
    const page = await browser.newPage(phone);
    await setUp(page, args.a, "north");
    out.live_scan = await wedge(page, out.live.code);
    await dismiss(page);
    out.screenshot_scan = await wedge(page, out.screenshot.code);
    await shot(page, "wallet-screenshot-refused");
  } finally {
    await browser.close();
  }
  return out;
}

// Roles at the gate: a steward's page offers no undo and no gate pause; a supervisor's scanner
// shared with stewards asks the PIN (a wrong one is refused), pauses its gate, and the
// steward's page on another node is covered with who paused it; the dashboard lists the
// action with its device; the supervisor resumes from the cover without a second ask.
async function rolesScenario() {
  const browser = await launch();
  const out = {};
  try {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: "en-US" });
    const stew = await ctx.newPage();
    await setUp(stew, args.b, "north");
    await stew.waitForFunction(() => document.getElementById("role-badge").textContent.trim() !== "", null, { timeout: STEP_MS });
    out.stew_badge = (await stew.textContent("#role-badge")).trim();
    out.stew_admit = await wedge(stew, args.code);
    await dismiss(stew);
    out.stew_undo_shown = await stew.isVisible("#undo");
    out.stew_pause_shown = await stew.isVisible("#gate-pause");
    const sup = await ctx.newPage();
    await setUp(sup, args.a, "north");
    await sup.waitForSelector("#gate-pause:not([hidden])", { timeout: STEP_MS });
    out.sup_badge = (await sup.textContent("#role-badge")).trim();
    await sup.click("#gate-pause");
    await sup.waitForSelector("#pin-dialog:not([hidden])", { timeout: STEP_MS });
    await sup.fill("#pin-input", "0000");
    await sup.click("#pin-ok");
    out.wrong = await answer(sup);
    await dismiss(sup);
    await sup.click("#gate-pause");
    await sup.waitForSelector("#pin-dialog:not([hidden])", { timeout: STEP_MS });
    await sup.fill("#pin-input", args.pin);
    await shot(sup, "supervisor-pin");
    await sup.click("#pin-ok");
    await sup.waitForSelector("#paused:not([hidden])", { timeout: STEP_MS });
    await shot(sup, "supervisor-paused");
    await stew.waitForSelector("#paused:not([hidden])", { timeout: 30000 });
    out.stew_paused_text = await stew.textContent("#paused");
    await shot(stew, "steward-paused-by-supervisor");
    const dash = await (await browser.newContext({ viewport: { width: 1280, height: 1100 }, locale: "en-US" })).newPage();
    await dash.goto(`${args.b}/dashboard#token=${args.token}`);
    await dash.waitForFunction(() => document.getElementById("audit").textContent.includes("shared"), null, { timeout: 30000 });
    out.audit_text = await dash.textContent("#audit");
    await shot(dash, "dashboard-supervisor-actions");
    await sup.click("#gate-pause");
    await sup.waitForSelector("#paused", { state: "hidden", timeout: STEP_MS });
    out.resume_asked_pin = await sup.isVisible("#pin-dialog");
    await stew.waitForSelector("#paused", { state: "hidden", timeout: 30000 });
    out.stew_after = await wedge(stew, args.code2);
  } finally {
    await browser.close();
  }
  return out;
}

const scenarios = { roles: rolesScenario, wallet: walletScenario, phonebench: phoneBenchScenario, phone: phoneScenario, vectors: vectorsScenario, https: httpsScenario, scan: scanScenario, camera: cameraScenario, dashboard: dashboardScenario, steward: stewardScenario, paused: pausedScenario };
try {
  const out = await scenarios[scenario]();
  console.log(JSON.stringify({ ok: true, ...out }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exitCode = 1;
}
