//! Target `client_frame`: a WebSocket text frame, as `session/inbound.rs: on_text` reads it.
//!
//! A client controls every byte here, before and after authentication. Checked for any input:
//! - parsing into `ClientFrame` returns, and a refused frame goes through what the session
//!   does next (`malformed`: a second parse as a JSON value to find the frame's `id`);
//! - a parsed frame prints as JSON that parses back to the same frame, so the protocol crate's
//!   types mean one thing in both directions (the load generator and Rust clients print them),
//!   numbers in `meta` included: the workspace builds serde_json with `float_roundtrip`, after
//!   this target found a float that moved by one ulp between store and delivery
//!   (`corpus/client_frame/ok-meta-float-round-trip.json`);
//! - a `send` frame goes through `rules::send` with the default limits: it returns, refuses
//!   with `bad_request` or `too_large` only, and the meta it accepts is the client's object,
//!   as JSON text within `max_meta_bytes` that parses back to the same value (that text is
//!   what the store keeps and what every member is sent).

use crate::{default_limits, Outcome};
use parley::domain::rules;
use parley_protocol::{ClientFrame, ErrorCode, SendFrame};
use serde_json::Value;

pub fn run(data: &[u8]) -> Outcome {
    // actix-ws hands the session only valid UTF-8 text frames.
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(e) => {
            malformed(text, &e);
            return Outcome::Refused;
        }
    };
    let printed = serde_json::to_string(&frame).expect("a parsed ClientFrame prints");
    let again: ClientFrame = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("a printed ClientFrame does not parse: {e}\n{printed}"));
    assert_eq!(
        again, frame,
        "the round trip changed the frame\nprinted: {printed}"
    );
    if let ClientFrame::Send(f) = &frame {
        check_send(f);
    }
    Outcome::Accepted
}

/// What the session does with a frame that does not parse: it looks for an `id` to tie its
/// `error` frame to, and renders the parse error into the message. Only "does not panic" is
/// checked here; `black_box` keeps the work from being optimised away.
fn malformed(text: &str, e: &serde_json::Error) {
    let id = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from));
    std::hint::black_box((id, format!("malformed frame: {e}")));
}

fn check_send(f: &SendFrame) {
    let limits = default_limits();
    match rules::send(limits, f) {
        Ok(stored) => match (&f.meta, stored) {
            (None | Some(Value::Null), None) => {}
            (Some(meta @ Value::Object(_)), Some(text)) => {
                assert!(text.len() <= limits.max_meta_bytes, "meta over the limit");
                let back: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("stored meta is not JSON: {e}\n{text}"));
                assert_eq!(&back, meta, "stored meta differs from the client's\n{text}");
            }
            (meta, stored) => panic!("rules::send accepted meta {meta:?} as {stored:?}"),
        },
        Err(e) => assert!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::TooLarge),
            "rules::send refused with {e}"
        ),
    }
}
