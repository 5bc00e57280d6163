// gatemesh scanner service worker: the page and its files come from the cache when the node
// cannot be reached, so a reload during a Wi-Fi drop still shows the scanner (which then says
// the node is unreachable). API calls are never cached.
const CACHE = "gatemesh-v2";
const SHELL = [
  "/", "/i18n.js", "/scan.js", "/style.css", "/manifest.webmanifest", "/icon.svg",
  "/vendor/zxing-reader.js", "/vendor/zxing_reader.wasm",
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
  // Network first (fresh files when the node is there), the cache when it is not.
  e.respondWith(
    fetch(e.request)
      .then((r) => {
        const copy = r.clone();
        caches.open(CACHE).then((c) => c.put(e.request, copy));
        return r;
      })
      .catch(() => caches.match(e.request)),
  );
});
