// A paired phone's own side: what it keeps so it can decide when its node does not answer, and
// how its offline scans reach the ledger. The decision itself is gate.js's.
//
// Kept in IndexedDB (so a page killed or a phone rebooted keeps it):
// - the pack and the snapshot, as the node last gave them;
// - every scan the phone decided offline, written before its answer shows (`queued`), until a
//   node took it through `POST /offline/reconcile` (`reconciled`);
// - the admits the node decided for this phone while online (`online`).
// Reconciled and online scans stay in the phone's own picture until a snapshot fetched after
// they reached the node holds them; then they go.

import * as gate from "./gate.js";

const DB_NAME = "gatemesh-phone";
const DB_VERSION = 1;
/// Most scans one reconcile request carries, and its body's bytes (the node's body limit is 16 KiB).
export const RECONCILE_SCANS_MAX = 200;
export const RECONCILE_BODY_BYTES_MAX = 15000;
/// Most scans the phone keeps waiting (a phone offline for a whole day at one gate holds less).
export const QUEUE_MAX = 20000;

function request(r) {
  return new Promise((ok, fail) => { r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
}

function done(tx) {
  return new Promise((ok, fail) => { tx.oncomplete = () => ok(); tx.onerror = () => fail(tx.error); tx.onabort = () => fail(tx.error); });
}

function openDb() {
  const r = indexedDB.open(DB_NAME, DB_VERSION);
  r.onupgradeneeded = () => {
    const db = r.result;
    db.createObjectStore("kv");
    db.createObjectStore("scans", { keyPath: "key", autoIncrement: true });
  };
  return request(r);
}

export class Phone {
  constructor(db) {
    this.db = db;
    this.ctx = null; // {pack, manifest, snapshot, own}
    this.scans = []; // every kept scan, oldest first
    this.epoch = 0; // snapshot fetches started (a scan that reached the node before fetch n has epoch < n)
  }

  static async open(device) {
    const p = new Phone(await openDb());
    p.device = device;
    const tx = p.db.transaction(["kv", "scans"], "readonly");
    const kv = tx.objectStore("kv");
    const [pack, snapshot, epoch, scans] = await Promise.all([
      request(kv.get("pack")), request(kv.get("snapshot")), request(kv.get("epoch")), request(tx.objectStore("scans").getAll()),
    ]);
    p.epoch = epoch || 0;
    p.scans = scans;
    if (pack && snapshot) {
      try { await p.use(pack, new Uint8Array(snapshot)); } catch (e) { console.warn("kept pack", e); }
    }
    return p;
  }

  ready() { return this.ctx !== null; }
  waiting() { return this.scans.filter((s) => s.state === "queued" && s.device === this.device).length; }
  // Scans of an earlier pairing of this page (another device id): no node takes them from this
  // pass, so they are kept but not sent.
  stranded() { return this.scans.filter((s) => s.state === "queued" && s.device !== this.device).length; }
  snapshotMs() { return this.ctx ? this.ctx.snapshot.header.generated_ms : 0; }

  // Decide by this pack and snapshot from now on (the manifest's signature checked when the
  // pack is new to the page).
  async use(packDoc, snapshotBytes) {
    const snapshot = gate.readSnapshot(snapshotBytes);
    const manifest = packDoc === this.packDoc && this.ctx
      ? this.ctx.manifest
      : await gate.openManifest(packDoc.pack, packDoc.manifest);
    this.packDoc = packDoc;
    this.ctx = { pack: packDoc.pack, manifest, snapshot, own: [] };
    this.ownChanged();
  }

  ownChanged() {
    if (this.ctx) this.ctx.own = this.scans.map((s) => s.record);
  }

  // One transaction; `strict` (the scans a steward was answered on) waits until the browser has
  // them on the disk, so a phone switched off keeps them.
  async put(kvPairs, scans = [], deleted = [], strict = false) {
    const tx = this.db.transaction(["kv", "scans"], "readwrite", { durability: strict ? "strict" : "relaxed" });
    for (const [k, v] of kvPairs) tx.objectStore("kv").put(v, k);
    scans.forEach((s) => {
      const r = tx.objectStore("scans").put(s);
      r.onsuccess = () => { s.key = r.result; };
    });
    for (const k of deleted) tx.objectStore("scans").delete(k);
    await done(tx);
  }

  // Fetch the pack (when the phone has none, or `pack` says so) and a fresh snapshot; then the
  // scans the snapshot holds leave the phone's own picture.
  async refresh(api, pack = false) {
    const epoch = ++this.epoch;
    let packDoc = null;
    if (pack || !this.ctx) {
      const r = await api("/offline/pack");
      if (!r.ok) throw Object.assign(new Error(r.text), { status: r.status });
      packDoc = JSON.parse(r.text);
    }
    const s = await api("/offline/snapshot", { binary: true });
    if (!s.ok) throw Object.assign(new Error("snapshot"), { status: s.status });
    const bytes = new Uint8Array(s.bytes);
    await this.use(packDoc || this.packDoc, bytes);
    const gone = this.scans.filter((x) => x.state !== "queued" && x.epoch < epoch);
    this.scans = this.scans.filter((x) => !gone.includes(x));
    this.ownChanged();
    const pairs = [["snapshot", bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)], ["epoch", this.epoch]];
    if (packDoc) pairs.push(["pack", packDoc]);
    await this.put(pairs, [], gone.map((x) => x.key));
  }

  // Decide a scan on the phone and keep it (durably, before the answer is shown). A code the
  // page refused as malformed is kept cut short: the node refuses it too, whatever its length.
  async decide(scan) {
    const t0 = performance.now();
    const { decision, record } = await gate.decide(this.ctx, scan);
    if (record) {
      if (this.scans.length >= QUEUE_MAX) throw new Error("the phone holds too many scans waiting; find a node");
      const code = decision.reason === "malformed" ? scan.code.slice(0, MALFORMED_KEPT) : scan.code;
      const kept = { state: "queued", code, scanned_at_ms: scan.now_ms, record, epoch: Infinity, device: this.device };
      await this.put([], [kept], [], true);
      this.scans.push(kept);
      this.ownChanged();
    }
    decision.decided_ms = performance.now() - t0;
    return decision;
  }

  // An admit the node decided for this phone: part of the phone's picture until the next snapshot.
  async online(d, scan) {
    if (!this.ctx || d.verdict !== "admit" || d.repeat || !d.ticket) return;
    const g = this.ctx.pack.gates.find((x) => x.name === d.gate);
    const record = {
      ticket_id: d.ticket.id, tier: d.ticket.tier, verdict: "admit", reason: "ok", direction: d.direction,
      gate: d.gate, zone: g ? g.zone : "", wall_ms: scan.now_ms,
    };
    const kept = { state: "online", code: scan.code, scanned_at_ms: scan.now_ms, record, epoch: this.epoch, device: this.device };
    await this.put([], [kept]);
    this.scans.push(kept);
    this.ownChanged();
  }

  // Send every queued scan of this pairing to the node, in requests within its limits. The
  // node answers each scan (SUCCESS, DUPLICATE or a final ERROR); a scan it refuses whole (its
  // request refused on its own) is set aside, so one bad scan never holds the others back. A
  // request that fails otherwise leaves the rest queued.
  async reconcile(api) {
    let sent = 0;
    for (;;) {
      const batch = this.batch();
      if (!batch.length) return sent;
      const body = JSON.stringify({ device_id: this.device, scans: batch.map(wire) });
      const r = await api("/offline/reconcile", { method: "POST", body });
      const refusedAlone = !r.ok && batch.length === 1 && [400, 413].includes(r.status);
      if (!r.ok && !refusedAlone) throw Object.assign(new Error(r.body && r.body.message || `reconcile: ${r.status}`), { status: r.status, code: r.body && r.body.error });
      for (const s of batch) { s.state = refusedAlone ? "refused" : "reconciled"; s.epoch = this.epoch; }
      await this.put([], batch, [], true);
      sent += batch.length;
    }
  }

  // The next request's scans: at most RECONCILE_SCANS_MAX, its body within
  // RECONCILE_BODY_BYTES_MAX bytes as sent (a scan alone over it goes alone, to be refused).
  batch() {
    const out = [];
    let bytes = 64 + utf8.encode(JSON.stringify(this.device)).length;
    for (const s of this.scans) {
      if (s.state !== "queued" || s.device !== this.device) continue;
      const size = utf8.encode(JSON.stringify(wire(s))).length + 1;
      if (out.length >= RECONCILE_SCANS_MAX || (out.length && bytes + size > RECONCILE_BODY_BYTES_MAX)) break;
      out.push(s);
      bytes += size;
    }
    return out;
  }

  // This phone was unpaired: what it was given goes (its pack and snapshot); its scans stay.
  async forget() {
    this.ctx = null;
    this.packDoc = null;
    const tx = this.db.transaction(["kv"], "readwrite");
    tx.objectStore("kv").delete("pack");
    tx.objectStore("kv").delete("snapshot");
    await done(tx);
  }
}

const utf8 = new TextEncoder();
/// How much of a code the page refused as malformed it keeps, in characters.
const MALFORMED_KEPT = 256;

// A kept scan as the seed's reconcile takes it.
function wire(s) {
  return {
    ticket_id: s.record.ticket_id, scanned_at: new Date(s.scanned_at_ms).toISOString(),
    result: s.record.verdict === "admit" ? "ALLOW" : "DENY", reason: s.record.reason,
    gate: s.record.gate, direction: s.record.direction, code: s.code,
  };
}

// The phone's device id, as its pass says (the pass's body is postcard: event, device id, ...).
export function passDevice(pass) {
  try {
    const [, body] = pass.split(".");
    const p = new gate.Postcard(gate.base64urlDecode(body));
    p.str();
    return p.str();
  } catch (_) {
    return null;
  }
}
