//! The web client (`web/`) and the JavaScript SDK it runs on (`clients/js/src/`), compiled
//! into the binary and served at `/`: a newcomer who runs `parley serve` opens the page and
//! chats, with no build step and nothing fetched from elsewhere.
//!
//! The page is served with a strict Content-Security-Policy (scripts, styles and connections
//! from this origin only; images also from `blob:`, which is how the client previews its
//! own uploads; others' images load from short-lived signed URLs of this origin), `nosniff`, and `no-cache` so that a new release is
//! picked up on the next load.

use actix_web::{http::header, web, HttpResponse};

const JS: &str = "text/javascript; charset=utf-8";

/// Path -> (content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    ),
    ("/app.js", JS, include_bytes!("../../web/app.js")),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/style.css"),
    ),
    (
        "/sdk/index.js",
        JS,
        include_bytes!("../../clients/js/src/index.js"),
    ),
    (
        "/sdk/client.js",
        JS,
        include_bytes!("../../clients/js/src/client.js"),
    ),
    (
        "/sdk/emitter.js",
        JS,
        include_bytes!("../../clients/js/src/emitter.js"),
    ),
    (
        "/sdk/http.js",
        JS,
        include_bytes!("../../clients/js/src/http.js"),
    ),
    (
        "/sdk/outbox.js",
        JS,
        include_bytes!("../../clients/js/src/outbox.js"),
    ),
    (
        "/sdk/sequencer.js",
        JS,
        include_bytes!("../../clients/js/src/sequencer.js"),
    ),
    (
        "/sdk/storage.js",
        JS,
        include_bytes!("../../clients/js/src/storage.js"),
    ),
];

const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Registers one GET route per embedded file.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for &(path, content_type, bytes) in FILES {
        cfg.route(
            path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(content_type)
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
                    .insert_header((header::REFERRER_POLICY, "no-referrer"))
                    .body(bytes)
            }),
        );
    }
}
