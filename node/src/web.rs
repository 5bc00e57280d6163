//! The pages a node serves: the scanner (`GET /`, an installable PWA with a service worker) and
//! the dashboard (`GET /dashboard`). Files are compiled into the binary; the pages carry no
//! secret and ask for the staff token once (or take it from the address's `#token=`).
//!
//! Camera scanning decodes QR codes in the browser with zxing-wasm (zxing-cpp compiled to
//! WebAssembly), served from here so it works without internet. A paired phone decides offline
//! with `gate.js` (the gate policy's second runtime, held to the Rust one by vectors) and keeps
//! its scans with `offline.js`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// One file: path, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../web/scan.html"),
    ),
    (
        "/scan.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/scan.js"),
    ),
    (
        "/gate.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/gate.js"),
    ),
    (
        "/offline.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/offline.js"),
    ),
    (
        "/i18n.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/i18n.js"),
    ),
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/sw.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/style.css"),
    ),
    (
        "/manifest.webmanifest",
        "application/manifest+json",
        include_bytes!("../web/manifest.webmanifest"),
    ),
    (
        "/icon.svg",
        "image/svg+xml",
        include_bytes!("../web/icon.svg"),
    ),
    (
        "/dashboard",
        "text/html; charset=utf-8",
        include_bytes!("../web/dashboard.html"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/dashboard.js"),
    ),
    (
        "/vendor/zxing-reader.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/zxing-reader.js"),
    ),
    // @noble/ed25519 2.3.0 (MIT, node/web/vendor/noble-ed25519.LICENSE): Ed25519 for the
    // phone's offline checks where the browser's WebCrypto lacks it.
    (
        "/vendor/noble-ed25519.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/noble-ed25519.js"),
    ),
    (
        "/vendor/zxing_reader.wasm",
        "application/wasm",
        include_bytes!("../web/vendor/zxing_reader.wasm"),
    ),
];

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for &(path, kind, bytes) in FILES {
        r = r.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, kind),
                        // The service worker decides what is cached; the browser revalidates.
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    bytes,
                )
                    .into_response()
            }),
        );
    }
    r
}
