//! HTTP conditional and range requests for blob downloads (RFC 9110 §13, §14), kept apart
//! from `files` so that every backend gets the same answers: one range per request (a
//! multi-range request gets the whole blob, which the RFC allows), `If-Range` with the ETag.

use actix_web::http::header;
use actix_web::HttpRequest;

pub enum Wanted {
    All,
    /// Bytes `start..end` (end exclusive).
    Part(u64, u64),
    Unsatisfiable,
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `If-None-Match` names the blob's ETag (or `*`): the client's copy is current.
pub fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    header_str(req, header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    })
}

/// The range the request asks for, if any applies.
pub fn requested(req: &HttpRequest, etag: &str, size: u64) -> Wanted {
    let Some(spec) = header_str(req, header::RANGE) else {
        return Wanted::All;
    };
    if header_str(req, header::IF_RANGE).is_some_and(|v| v.trim() != etag) {
        return Wanted::All;
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Wanted::All;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => b
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n.min(size)), size, n > 0)),
        (false, true) => a.parse::<u64>().ok().map(|s| (s, size, true)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size), true)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Wanted::All,
        Some((start, end, nonempty)) if nonempty && start < size && start < end => {
            Wanted::Part(start, end)
        }
        Some(_) => Wanted::Unsatisfiable,
    }
}
