// The scanner page's offline decision (node/web/gate.js) on the vectors tests/offline.rs writes
// from the Rust gate logic. `run` is self-contained: Chromium gets its source (run.mjs,
// scenario "vectors"); Node.js runs it here.
// Usage: node vectors.mjs VECTORS.json  → one JSON line: per crypto path, scans checked and
// every difference.
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

export async function run(gate, v) {
  const bytes = (hex) => Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
  const manifest = await gate.openManifest(v.pack, v.manifest);
  const out = { checked: 0, mismatches: [], ms: [] };
  for (const sc of v.scenarios) {
    const ctx = { pack: v.pack, manifest, snapshot: gate.readSnapshot(bytes(v.snapshot_hex)), own: [] };
    for (const [i, s] of sc.scans.entries()) {
      const t0 = performance.now();
      let got;
      try {
        const { decision, record } = await gate.decide(ctx, { code: s.code, gate: s.gate, direction: s.direction, now_ms: s.now_ms });
        if (record) ctx.own.push(record);
        got = {
          verdict: decision.verdict, reason: decision.reason, repeat: !!decision.repeat,
          ticket_id: decision.ticket ? decision.ticket.id : null,
          attention: decision.attention === undefined ? null : decision.attention,
        };
      } catch (e) {
        got = { error: String(e) };
      }
      out.ms.push(performance.now() - t0);
      out.checked++;
      const want = s.expect;
      const same = ["verdict", "reason", "repeat", "ticket_id", "attention"].every((k) => got[k] === want[k]);
      if (!same) out.mismatches.push({ scenario: sc.name, index: i, code: s.code.slice(0, 80), gate: s.gate, want, got });
    }
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const v = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const here = fileURLToPath(new URL(".", import.meta.url));
  const gate = await import(pathToFileURL(`${here}/../../node/web/gate.js`).href);
  const webcrypto = await run(gate, v);
  gate.crypto.forceFallback = true;
  const fallback = await run(gate, v);
  delete webcrypto.ms;
  delete fallback.ms;
  console.log(JSON.stringify({ ok: true, webcrypto, fallback }));
}
