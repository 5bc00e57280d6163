// gatemesh scanner service worker: the page and its files come from the cache when the node
// cannot be reached, so a reload during a Wi-Fi drop still shows the scanner (a paired phone
// then decides on its own; a staff-token page says the node is unreachable). API calls are
// never cached. A node that does not answer within NETWORK_WAIT_MS (a link that drops packets
// rather than refusing them) counts as unreachable.
const CACHE = "gatemesh-v3";
const NETWORK_WAIT_MS = 2000;
const SHELL = [
  "/", "/i18n.js", "/scan.js", "/gate.js", "/offline.js", "/style.css", "/manifest.webmanifest", "/icon.svg",
  "/vendor/zxing-reader.js", "/vendor/zxing_reader.wasm", "/vendor/noble-ed25519.js",
];

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== location.origin || !SHELL.includes(url.pathname)) {
    return; // the network, as usual
  }
  // Network first (fresh files when the node is there), the cache when it is not or is slow.
  const fresh = fetch(e.request).then((r) => {
    if (r.ok) {
      const copy = r.clone();
      caches.open(CACHE).then((c) => c.put(e.request, copy));
    }
    return r;
  });
  const late = new Promise((ok) => setTimeout(ok, NETWORK_WAIT_MS));
  e.respondWith(
    Promise.race([fresh, late.then(() => Promise.reject(new Error("slow")))])
      .catch(() => caches.match(e.request).then((hit) => hit || fresh)),
  );
});
