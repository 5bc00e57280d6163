// The gate decision a steward's phone makes when its node does not answer: a second
// implementation of part of the Rust gate (crdt/src/credential, crdt/src/gate/policy.rs,
// GateLogic::scan), kept small and held to the Rust one by decision vectors that the Rust tests
// write from GateLogic and run here, in Node.js and in Chromium (tests/offline.rs). Nothing in
// this module touches the page, the network or storage: the pack, the snapshot, the phone's own
// scans and the time come in; a decision comes out.
//
// What it reads: the pack (`GET /offline/pack`: the event's rules as Rust worked them out, the
// signed manifest), the snapshot (`GET /offline/snapshot`, crdt/src/gate/snapshot.rs) and the
// phone's own scans since that snapshot. What it cannot know offline it says so: a legacy HMAC
// code needs the event's secret, which a phone never holds (`invalid_signature`), and an entry
// made at another gate after the snapshot is found when the scan is reconciled (a double entry,
// reported on every node, naming the phone).

const DAY_MS = 86400000;
const GM1_PREFIX = "GM1:";
const GM2_PREFIX = "GM2:";
const STATIC_DOMAIN = utf8Bytes("gatemesh rotating ticket 1\n");
const LIVE_DOMAIN = "gatemesh live code 1\n";
const SIG_BYTES = 64;
const HASH_BYTES = 6;
const ENTRY_BYTES = HASH_BYTES + 3;
const FLAG_INSIDE = 0x80;
const FLAG_REVOKED = 0x40;
const GATE_MASK = 0x3f;
const GATE_NONE = 0x3f;
const LEGACY_FIELDS = ["ticketId", "eventId", "guestId", "ticketCode", "timestamp", "signature", "checksum"];
function utf8Bytes(s) { return new TextEncoder().encode(s); }
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---- bytes ----

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// RFC 4648 base32 without padding, as Rust's data_encoding BASE32_NOPAD reads it: only the
// alphabet, a length a whole number of bytes can have, and the unused bits zero. Null if not.
export function base32Decode(s) {
  if (![0, 2, 4, 5, 7].includes(s.length % 8)) return null;
  const out = new Uint8Array(Math.floor((s.length * 5) / 8));
  let bits = 0, value = 0, at = 0;
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) return null;
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
    value &= (1 << bits) - 1;
  }
  return value === 0 ? out : null;
}

export function base64urlDecode(s) {
  const std = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(std + "===".slice((std.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export function hexBytes(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
  return out;
}

// postcard, as serde writes it: varints (LEB128, at most 10 bytes for 64 bits), strings as a
// varint length and UTF-8, a bool as one byte 0/1. Throws on anything else.
export class Postcard {
  constructor(bytes) { this.b = bytes; this.i = 0; }
  byte() {
    if (this.i >= this.b.length) throw new Error("cut short");
    return this.b[this.i++];
  }
  varint() {
    let out = 0n;
    for (let i = 0; i < 10; i++) {
      const v = this.byte();
      out |= BigInt(v & 0x7f) << BigInt(7 * i);
      if ((v & 0x80) === 0) {
        if (i === 9 && v > 1) throw new Error("bad varint");
        return out;
      }
    }
    throw new Error("bad varint");
  }
  u64() { const v = this.varint(); return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v); }
  u32() { const v = this.varint(); if (v > 0xffffffffn) throw new Error("u32 too large"); return Number(v); }
  u8() { return this.byte(); }
  bool() { const v = this.byte(); if (v > 1) throw new Error("bad bool"); return v === 1; }
  str() {
    const n = this.varint();
    if (n > BigInt(this.b.length - this.i)) throw new Error("cut short");
    const s = strictUtf8.decode(this.b.subarray(this.i, this.i + Number(n)));
    this.i += Number(n);
    return s;
  }
  seq(read) { const n = this.u32(); const out = []; for (let k = 0; k < n; k++) out.push(read(this)); return out; }
  rest() { return this.b.length - this.i; }
}

// ---- signatures ----

let noble = null; // the vendored fallback, loaded when WebCrypto lacks Ed25519
const keyCache = new Map();
export const crypto = { forceFallback: false };

async function nobleEd25519() {
  if (!noble) {
    noble = await import("./vendor/noble-ed25519.js");
    noble.etc.sha512Async = async (...m) =>
      new Uint8Array(await globalThis.crypto.subtle.digest("SHA-512", noble.etc.concatBytes(...m)));
  }
  return noble;
}

// Ed25519 with WebCrypto where the browser has it, else @noble/ed25519.
export async function verifyEd25519(publicKey, message, signature) {
  if (!crypto.forceFallback) {
    try {
      let key = keyCache.get(publicKey);
      if (!key) {
        key = await globalThis.crypto.subtle.importKey("raw", hexBytes(publicKey), { name: "Ed25519" }, false, ["verify"]);
        keyCache.set(publicKey, key);
      }
      return await globalThis.crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
    } catch (e) {
      if (!(e && (e.name === "NotSupportedError" || e.name === "NotImplementedError"))) return false;
    }
  }
  const ed = await nobleEd25519();
  try { return await ed.verifyAsync(signature, message, hexBytes(publicKey)); } catch (_) { return false; }
}

export async function ticketHash(id) {
  const d = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", utf8.encode(id)));
  return d.subarray(0, HASH_BYTES);
}

// ---- the pack and the manifest ----

// Verify the organizer-signed phone manifest {key_id, body, signature} (crdt's
// `phone_manifest`: codes as hashes, never as codes) and index it by code hash and by ticket
// id. Throws when it does not verify or the pack is of another format.
export async function openManifest(pack, envelope) {
  if (pack.format !== 1) throw new Error(`pack format ${pack.format} is not one this page reads`);
  if (!envelope) return { eventId: pack.event_id, byCode: new Map(), byTicket: new Map() };
  const key = pack.organizer_keys.find((k) => k.key_id === envelope.key_id);
  if (!key) throw new Error(`manifest signed with unknown key ${envelope.key_id}`);
  const ok = /^[0-9a-fA-F]{128}$/.test(envelope.signature) &&
    await verifyEd25519(key.public_key, utf8.encode(envelope.body), hexBytes(envelope.signature));
  if (!ok) throw new Error("the manifest's signature does not verify");
  const body = JSON.parse(envelope.body);
  const byCode = new Map(), byTicket = new Map();
  for (const t of body.tickets) {
    byTicket.set(t.ticketId, t);
    if (t.codeHash) byCode.set(t.codeHash, t);
    if (t.nfcHash) byCode.set(t.nfcHash, t);
  }
  return { eventId: body.eventId, byCode, byTicket };
}

// Rust's `str::trim`: the Unicode White_Space characters (not U+FEFF, which JavaScript's
// trim() also takes away).
const WS = "\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
const LEADING = new RegExp(`^[${WS}]+`), TRAILING = new RegExp(`[${WS}]+$`);
export const rustTrim = (s) => s.replace(LEADING, "").replace(TRAILING, "");

function normalize(code) { return rustTrim(code).replace(/:/g, "").toUpperCase(); }

// A barcode as the phone manifest knows it (crdt's `code_hash`).
async function codeHash(eventId, code) {
  const text = `gatemesh code 1\n${eventId}\n${normalize(code)}`;
  const d = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", utf8.encode(text)));
  return Array.from(d.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- the snapshot ----

export function readSnapshot(bytes) {
  if (bytes.length < 4 || String.fromCharCode(...bytes.subarray(0, 4)) !== "GMS1") throw new Error("not a snapshot");
  const p = new Postcard(bytes.subarray(4));
  const header = {
    generated_ms: p.u64(),
    day: p.u64(),
    rules: p.seq((q) => ({ tier: q.str(), max_entries: q.u32(), reentry: q.bool(), per_day: q.u32() })),
    inside: p.seq((q) => [q.str(), q.u64()]),
    pauses: p.seq((q) => ({ scope: ["event", "zone", "gate"][q.u8()], name: q.str(), since_ms: q.u64() })),
    gates: p.seq((q) => q.str()),
    entries: p.u32(),
  };
  const entries = bytes.subarray(4 + p.i);
  if (entries.length !== header.entries * ENTRY_BYTES) throw new Error("snapshot cut short");
  return {
    header,
    entries,
    rules: new Map(header.rules.map((r) => [r.tier, r])),
    inside: new Map(header.inside),
  };
}

export function lookupEntry(snap, hash) {
  const e = snap.entries;
  let lo = 0, hi = e.length / ENTRY_BYTES;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const at = mid * ENTRY_BYTES;
    let c = 0;
    for (let k = 0; k < HASH_BYTES && c === 0; k++) c = e[at + k] - hash[k];
    if (c < 0) lo = mid + 1;
    else if (c > 0) hi = mid;
    else {
      const flags = e[at + HASH_BYTES + 2];
      const gate = flags & GATE_MASK;
      return {
        credits: e[at + HASH_BYTES], today: e[at + HASH_BYTES + 1],
        inside: (flags & FLAG_INSIDE) !== 0, revoked: (flags & FLAG_REVOKED) !== 0,
        gate: gate === GATE_NONE ? null : gate,
      };
    }
  }
  return null;
}

// ---- reading a code (crdt/src/credential/read.rs) ----

const asciiUpper = (s) => s.replace(/[a-z]+/g, (c) => c.toUpperCase());
const deny = (reason, message, claimed) => ({ denial: { reason, message }, claimed: claimed || null });
const fieldOk = (s, max) => utf8.encode(s).length <= max && !/[\u0000-\u001f\u007f-\u009f]/.test(s);

async function readCode(ctx, code) {
  const lim = ctx.pack.limits;
  const bytes = utf8.encode(code);
  if (bytes.length === 0) return deny("malformed", "code is empty");
  if (bytes.length > lim.code_bytes) return deny("malformed", `code is ${bytes.length} bytes, over ${lim.code_bytes}`);
  const text = code.replace(/[\r\n]+$/, "");
  let cred;
  if (asciiUpper(text.slice(0, GM1_PREFIX.length)) === GM1_PREFIX) cred = await readGm1(ctx, text);
  else if (asciiUpper(text.slice(0, GM2_PREFIX.length)) === GM2_PREFIX) cred = await readGm2(ctx, text);
  else if (text.replace(LEADING, "").startsWith("{")) cred = readLegacy(ctx, text);
  else cred = await readManifestCode(ctx, text);
  if (cred.denial) return cred;
  const reserved = cred.ticket_id && cred.ticket_id.startsWith(lim.reserved_ticket_prefix);
  if (!cred.ticket_id || reserved || !fieldOk(cred.ticket_id, lim.ticket_id_bytes) || !fieldOk(cred.tier, lim.ticket_id_bytes)) {
    return deny("malformed", "ticket id is empty, too long or holds control characters");
  }
  const m = ctx.manifest.byTicket.get(cred.ticket_id);
  if (m && m.status === "cancelled") cred.revoked = true;
  return cred;
}

async function readGm1(ctx, text) {
  const damaged = deny("malformed", "GM1 code is damaged or cut short");
  const bytes = base32Decode(asciiUpper(text.slice(GM1_PREFIX.length)));
  if (!bytes || bytes.length <= SIG_BYTES) return damaged;
  const body = bytes.subarray(0, bytes.length - SIG_BYTES);
  const sig = bytes.subarray(bytes.length - SIG_BYTES);
  let t;
  try {
    const p = new Postcard(body);
    t = { event_id: p.str(), ticket_id: p.str(), tier: p.str(), key_id: p.str(), from_s: p.u64(), until_s: p.u64() };
    if (p.rest() !== 0) return damaged;
  } catch (_) {
    return damaged;
  }
  const key = ctx.pack.organizer_keys.find((k) => k.key_id === t.key_id);
  const claimed = claimedId(ctx, t.ticket_id);
  if (!key) return deny("invalid_signature", `GM1 code is signed with unknown key id ${t.key_id}`, claimed);
  if (!(await verifyEd25519(key.public_key, body, sig))) return deny("invalid_signature", "GM1 signature does not verify", claimed);
  return {
    format: "gm1", ticket_id: t.ticket_id, event_id: t.event_id, tier: t.tier,
    valid_from_ms: t.from_s * 1000, valid_until_ms: t.until_s * 1000, zone: null, revoked: false,
  };
}

// A rotating ticket's live code (crdt/src/credential/rotating.rs): the organizer's signature
// over the static part (which names the wallet's key), the wallet's over the ticket and step.
async function readGm2(ctx, text) {
  const damaged = deny("malformed", "GM2 code is damaged or cut short");
  const bytes = base32Decode(asciiUpper(text.slice(GM2_PREFIX.length)));
  if (!bytes) return damaged;
  let t, signed, sig, step, live;
  try {
    const p = new Postcard(bytes);
    t = { event_id: p.str(), ticket_id: p.str(), tier: p.str(), key_id: p.str(), from_s: p.u64(), until_s: p.u64() };
    if (p.rest() < 32) return damaged;
    t.holder = bytes.slice(p.i, p.i + 32);
    p.i += 32;
    signed = bytes.subarray(0, p.i);
    if (p.rest() < SIG_BYTES) return damaged;
    sig = bytes.subarray(p.i, p.i + SIG_BYTES);
    p.i += SIG_BYTES;
    step = p.varint();
    if (p.rest() !== SIG_BYTES) return damaged;
    live = bytes.subarray(p.i);
  } catch (_) {
    return damaged;
  }
  const key = ctx.pack.organizer_keys.find((k) => k.key_id === t.key_id);
  const claimed = claimedId(ctx, t.ticket_id);
  if (!key) return deny("invalid_signature", `GM2 code is signed with unknown key id ${t.key_id}`, claimed);
  const staticMsg = new Uint8Array([...STATIC_DOMAIN, ...signed]);
  if (!(await verifyEd25519(key.public_key, staticMsg, sig))) return deny("invalid_signature", "GM2 ticket's organizer signature does not verify", claimed);
  const be = new Uint8Array(8);
  new DataView(be.buffer).setBigUint64(0, step);
  const liveMsg = new Uint8Array([...utf8.encode(LIVE_DOMAIN + t.ticket_id + "\n"), ...be]);
  const holder = Array.from(t.holder, (b) => b.toString(16).padStart(2, "0")).join("");
  if (!(await verifyEd25519(holder, liveMsg, live))) return deny("invalid_signature", "GM2 live code's signature does not verify", claimed);
  return {
    format: "gm2", ticket_id: t.ticket_id, event_id: t.event_id, tier: t.tier,
    valid_from_ms: t.from_s * 1000, valid_until_ms: t.until_s * 1000, zone: null, revoked: false,
    live_step: step,
  };
}

// The id a code that cannot be read claims, cut as Rust cuts it.
function claimedId(ctx, id) {
  const max = ctx.pack.limits.claimed_id_bytes;
  let cut = id;
  while (utf8.encode(cut).length > max) cut = cut.slice(0, -1);
  return cut && !/[\u0000-\u001f\u007f-\u009f]/.test(cut) ? cut : null;
}

// A legacy HMAC code is read as far as its form; its signature needs the event's secret, which
// a phone never holds.
function readLegacy(ctx, text) {
  const bad = (why) => deny("malformed", why);
  let obj;
  try { obj = JSON.parse(text); } catch (_) { return bad("legacy code is not a JSON object"); }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return bad("legacy code is not a JSON object");
  const missing = LEGACY_FIELDS.find((f) => !(f in obj));
  if (missing) return bad(`legacy code has no ${missing}`);
  const scalar = (k) => typeof obj[k] === "string" || typeof obj[k] === "boolean" ||
    (typeof obj[k] === "number" && isFinite(obj[k]));
  if (!["ticketId", "eventId", "guestId", "ticketCode", "timestamp"].every(scalar)) return bad("legacy code fields must be strings or numbers");
  if (typeof obj.timestamp !== "number" || !isFinite(obj.timestamp) || obj.timestamp < 0) return bad("legacy timestamp is not a number of milliseconds");
  if (typeof obj.signature !== "string") return bad("legacy signature is not a string");
  return deny("invalid_signature", "legacy codes need the event's secret: check it at a node", claimedId(ctx, String(obj.ticketId)));
}

async function readManifestCode(ctx, text) {
  const t = rustTrim(text);
  const lim = ctx.pack.limits;
  if (!t || t.length > lim.manifest_code_len || !/^[\x20-\x7e]*$/.test(t)) return deny("malformed", "code matches no ticket format");
  const entry = ctx.manifest.byCode.get(await codeHash(ctx.manifest.eventId, t));
  if (!entry) return deny("unknown_ticket", "code is not in the ticket manifest");
  return manifestCredential(ctx, entry);
}

function manifestCredential(ctx, entry) {
  return {
    format: "manifest", ticket_id: entry.ticketId, event_id: ctx.manifest.eventId, tier: entry.tier,
    valid_from_ms: null, valid_until_ms: null, zone: entry.zone, revoked: entry.status === "cancelled",
  };
}

// ---- the policy (crdt/src/gate/policy.rs) ----

export function festivalDay(ms, dayStartMs) { return Math.max(0, Math.floor((ms - dayStartMs) / DAY_MS)); }

function checkTicket(ctx, cred, gate, revoked, now) {
  const pack = ctx.pack;
  if (cred.event_id !== pack.event_id && cred.event_id !== pack.legacy_event_id) {
    return { reason: "wrong_event", message: `ticket is for event ${cred.event_id}` };
  }
  const tier = pack.tiers.find((t) => t.name === cred.tier);
  if (!tier) return { reason: "unknown_ticket", message: `tier ${cred.tier} is not sold for this event` };
  if (cred.revoked || revoked) return { reason: "revoked", message: "ticket was cancelled by the organizer" };
  const stale = checkLive(ctx, cred, tier, now);
  if (stale) return stale;
  const from = Math.max(...[pack.valid_from_ms, tier.valid_from_ms, cred.valid_from_ms].filter((v) => v !== null && v !== undefined));
  const until = Math.min(...[pack.valid_until_ms, tier.valid_until_ms, cred.valid_until_ms].filter((v) => v !== null && v !== undefined));
  if (now < from) return { reason: "not_yet_valid", message: "not valid yet" };
  if (now > until) return { reason: "expired", message: "no longer valid" };
  const today = festivalDay(now, pack.day_start_ms);
  if (tier.valid_days.length && !tier.valid_days.includes(today)) {
    return tier.valid_days.some((d) => d > today)
      ? { reason: "not_yet_valid", message: "valid on another day" }
      : { reason: "expired", message: "was valid on an earlier day" };
  }
  if (!(tier.zones.includes(gate.zone) || cred.zone === gate.zone)) {
    return { reason: "wrong_zone", message: `tier ${tier.name} does not enter zone ${gate.zone}` };
  }
  if (gate.tiers && gate.tiers.length && !gate.tiers.includes(tier.name)) {
    return { reason: "wrong_list", message: `gate ${gate.name} admits ${gate.tiers.join(", ")} only` };
  }
  return { tier };
}

// A live code must be recent; a tier that shows live codes takes no static code
// (crdt/src/gate/policy.rs `check_live`).
function checkLive(ctx, cred, tier, now) {
  const live = ctx.pack.live;
  if (cred.live_step === undefined || cred.live_step === null) {
    const staticCode = cred.format === "gm1" || cred.format === "legacy";
    return tier.live_code && staticCode ? { reason: "code_expired", message: "this ticket shows a live code: ask the holder for it" } : null;
  }
  const made = cred.live_step * BigInt(live.step_ms);
  const at = BigInt(now);
  if (made > at + BigInt(live.ahead_ms)) return { reason: "code_expired", message: "the live code is ahead of this scanner's clock" };
  if (at > made && at - made > BigInt(live.window_ms)) return { reason: "code_expired", message: "an old code: ask for the live code (or check the phone's clock)" };
  return null;
}

// ---- entries: the snapshot, then the phone's own scans (crdt/src/index/replay.rs) ----

function ruleOf(ctx, tier) {
  const r = ctx.snapshot.rules.get(tier);
  return r || { max_entries: 1, reentry: false, per_day: 0 };
}

// A ticket's standing: as the snapshot has it, its day count on the snapshot's day.
function baseOf(ctx, hash, rule) {
  const e = lookupEntry(ctx.snapshot, hash);
  const snapDay = ctx.snapshot.header.day;
  if (!e) return { credits: rule.max_entries, inside: false, day: null, zone: null, gate: null, revoked: false };
  const gateName = e.gate === null ? null : ctx.snapshot.header.gates[e.gate];
  const g = ctx.pack.gates.find((x) => x.name === gateName);
  return {
    credits: e.credits, inside: e.inside, day: [snapDay, e.today],
    zone: e.inside && g ? g.zone : null, gate: gateName, revoked: e.revoked,
  };
}

// One admit of the phone's own, as the replay steps over it.
function step(s, rec, rule, dayStartMs) {
  if (rec.verdict !== "admit") return;
  const day = festivalDay(rec.wall_ms, dayStartMs);
  const today = s.day && s.day[0] === day ? s.day[1] : 0;
  if (rec.direction === "in") {
    if (s.credits > 0 && (rule.per_day === 0 || today < rule.per_day)) {
      s.credits -= 1;
      s.inside = true;
      s.day = [day, today + 1];
      s.zone = rec.zone;
      s.gate = rec.gate;
      s.entries.push(rec);
    }
  } else {
    if (s.inside && rule.reentry) {
      s.credits += 1;
      if (s.day && s.day[0] === day) s.day = [day, Math.max(0, s.day[1] - 1)];
    }
    s.inside = false;
    s.zone = null;
  }
}

// The phone's own scans by ticket, and ticket ids' hashes, kept with `ctx` and brought up to
// date as `ctx.own` grows (a phone offline all day holds thousands: each decision stays linear
// in the ticket's own scans).
async function ownIndex(ctx) {
  let x = ctx.ownIndex;
  if (!x || x.own !== ctx.own || x.n > ctx.own.length) {
    x = ctx.ownIndex = { own: ctx.own, n: 0, byTicket: new Map(), hashes: x ? x.hashes : new Map() };
  }
  for (; x.n < ctx.own.length; x.n++) {
    const rec = ctx.own[x.n];
    if (!x.byTicket.has(rec.ticket_id)) x.byTicket.set(rec.ticket_id, []);
    x.byTicket.get(rec.ticket_id).push(rec);
    if (!x.hashes.has(rec.ticket_id)) x.hashes.set(rec.ticket_id, await ticketHash(rec.ticket_id));
  }
  return x;
}

async function standing(ctx, ticketId, tier) {
  const x = await ownIndex(ctx);
  const rule = ruleOf(ctx, tier);
  const s = baseOf(ctx, x.hashes.get(ticketId) || (await ticketHash(ticketId)), rule);
  const before = s.zone;
  s.entries = [];
  for (const rec of x.byTicket.get(ticketId) || []) step(s, rec, rule, ctx.pack.day_start_ms);
  return { s, before };
}

// People inside a zone: the snapshot's count moved by the phone's own scans.
async function insideNow(ctx, zone) {
  const x = await ownIndex(ctx);
  let n = ctx.snapshot.inside.get(zone) || 0;
  for (const [ticket, recs] of x.byTicket) {
    const first = recs.find((r) => r.verdict === "admit");
    if (!first) continue;
    const { s, before } = await standing(ctx, ticket, first.tier);
    n += (s.zone === zone ? 1 : 0) - (before === zone ? 1 : 0);
  }
  return Math.max(0, n);
}

function paused(ctx, gate) {
  const p = ctx.snapshot.header.pauses;
  return p.find((x) => x.scope === "event") || p.find((x) => x.scope === "zone" && x.name === gate.zone) ||
    p.find((x) => x.scope === "gate" && x.name === gate.name) || null;
}

function ticketInfo(ctx, cred, tier) {
  const m = ctx.manifest.byTicket.get(cred.ticket_id);
  const info = { id: cred.ticket_id, tier, format: cred.format };
  if (m && m.name) info.name = m.name;
  if (m && m.order) info.order = m.order;
  if (m && m.notes) info.notes = m.notes;
  return info;
}

function attentionOf(ctx, ticketId, tier) {
  const m = ctx.manifest.byTicket.get(ticketId);
  if (m && m.attention) return m.notes || "";
  const t = ctx.pack.tiers.find((x) => x.name === tier);
  return t && t.attention ? t.attention : null;
}

// ---- the decision (GateLogic::scan) ----

// Decide one scan on the phone. `ctx`: {pack, manifest (openManifest), snapshot (readSnapshot),
// own: the phone's own scans since the snapshot, oldest first}. `scan`: {code, gate, direction,
// now_ms}. Returns the decision and, unless it repeats an admit of a moment ago, the record to
// keep in `own` (and queue for the node).
export async function decide(ctx, scan) {
  const gate = ctx.pack.gates.find((g) => g.name === scan.gate);
  if (!gate) throw new Error(`unknown gate ${scan.gate}`);
  const direction = scan.direction || gate.direction;
  const now = scan.now_ms;
  const read = await readCode(ctx, scan.code);
  const knownTier = (t) => (ctx.pack.tiers.some((x) => x.name === t) ? t : "");
  // The answer names the ticket as its code does; the record carries a tier the event sells.
  const out = (verdict, reason, message, cred, tier) => ({
    decision: {
      verdict, reason, message, gate: gate.name, direction,
      ticket: cred ? ticketInfo(ctx, cred, cred.tier) : undefined,
    },
    record: {
      ticket_id: cred ? cred.ticket_id : read.claimed || "", tier: cred ? knownTier(tier) : "", verdict, reason,
      direction, gate: gate.name, zone: gate.zone, wall_ms: now,
    },
  });
  const p = direction === "in" ? paused(ctx, gate) : null;
  if (p) return out("deny", "paused", `${p.scope} ${p.name} paused`, read.denial ? null : read, read.denial ? "" : knownTier(read.tier));
  if (read.denial) return out("deny", read.denial.reason, read.denial.message, null, "");
  const cred = read;
  const hash = await ticketHash(cred.ticket_id);
  const revoked = (lookupEntry(ctx.snapshot, hash) || {}).revoked;
  const checked = checkTicket(ctx, cred, gate, revoked, now);
  if (!checked.tier) return out("deny", checked.reason, checked.message, cred, knownTier(cred.tier));
  const tier = checked.tier;
  if (direction === "in") {
    const denied = await entryCheck(ctx, cred, tier, gate, now);
    if (denied && denied.repeat) {
      const r = out("admit", "ok", "Same scan again: already admitted a moment ago", cred, tier.name);
      return { decision: { ...r.decision, repeat: true }, record: null };
    }
    if (denied) {
      const r = out("deny", denied.reason, denied.message, cred, tier.name);
      if (denied.previous) r.decision.previous = denied.previous;
      return r;
    }
  }
  const r = out("admit", "ok", "Welcome in", cred, tier.name);
  if (direction === "in") {
    const a = attentionOf(ctx, cred.ticket_id, tier.name);
    if (a !== null) r.decision.attention = a;
  }
  return r;
}

// An `in` scan against the entries: a repeat of the phone's own admit within the grace, no
// entry left (or none left today), the zone full.
async function entryCheck(ctx, cred, tier, gate, now) {
  const rule = ruleOf(ctx, tier.name);
  const { s } = await standing(ctx, cred.ticket_id, tier.name);
  const again = [...s.entries].reverse().find((e) => now - e.wall_ms <= tier.grace_ms && e.wall_ms <= now);
  if (again) return { repeat: true };
  const today = festivalDay(now, ctx.pack.day_start_ms);
  const dayUsed = rule.per_day > 0 && s.day && s.day[0] === today && s.day[1] >= rule.per_day;
  if (s.credits === 0 || dayUsed) {
    const previous = s.gate ? [{ gate: s.gate }] : undefined;
    return { reason: "already_redeemed", message: s.gate ? `entered at gate ${s.gate}` : "no entries left", previous };
  }
  // A strict zone admits with a place a gate holds: a phone holds none.
  if ((ctx.pack.strict_zones || []).includes(gate.zone)) {
    return { reason: "zone_full", message: `zone ${gate.zone} is full: its places are held by the gates` };
  }
  if (Object.prototype.hasOwnProperty.call(ctx.pack.capacity, gate.zone)) {
    const cap = ctx.pack.capacity[gate.zone];
    const inside = await insideNow(ctx, gate.zone);
    if (inside >= cap) return { reason: "zone_full", message: `zone ${gate.zone} holds ${inside} of ${cap}` };
  }
  return null;
}
