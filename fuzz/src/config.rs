//! Target `config`: the operator's TOML file, as `Config::load` reads it at start.
//!
//! The file is trusted more than the network, but it is typed by hand and copied between
//! releases: a typo must be a clear error at start, never a panic, and a file that loads must
//! be one the node can run with. Checked for any input:
//! - `Config::load(Some(text))` returns `Ok` or `Err`;
//! - a loaded config keeps the promises `Config::validate` makes (pages, positive sizes,
//!   cluster timing, log format);
//! - the pure code that takes config values as they are does not fail on any value the
//!   loader accepts: `auth::Auth` (argon2 cost, token lifetime: a fresh token never expires
//!   before it was issued) and `rules::retract_for_everyone` (the retraction window: a
//!   sender may retract a one-second-old message whenever the window is at least 1 s).

use crate::Outcome;
use parley::auth::Auth;
use parley::config::Config;
use parley::domain::rules;
use parley::storage::{ConversationRow, ConversationState, MemberRow, Role, StoredMessage};
use parley_protocol::ConversationKind;

/// A fixed "now" (2026-01-01T00:00:00Z, in ms), so that a crash reproduces.
pub const NOW_MS: i64 = 1_767_225_600_000;

pub fn run(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let Ok(cfg) = Config::load(Some(text)) else {
        return Outcome::Refused;
    };
    check_validated(&cfg);
    check_auth(&cfg);
    check_retract_window(&cfg);
    Outcome::Accepted
}

fn check_validated(cfg: &Config) {
    let l = &cfg.limits;
    assert!(0 < l.default_page && l.default_page <= l.max_page);
    assert!(l.outbound_queue > 0 && cfg.storage.max_batch > 0 && cfg.storage.readers > 0);
    assert!(cfg.gateway.request_header_timeout_ms >= 1000 && cfg.gateway.body_timeout_ms > 0);
    let c = &cfg.cluster;
    assert!(c.bus.is_empty() || c.bus.starts_with("redis://"));
    assert!(c.heartbeat_ms > 0 && c.node_ttl_ms / 2 >= c.heartbeat_ms);
    assert!(matches!(cfg.log.format.as_str(), "text" | "json"));
}

/// `server::build` makes an `Auth` from `[auth]` (an argon2 cost it refuses is an error at
/// start), and every `POST /v1/sessions` calls `issue`.
fn check_auth(cfg: &Config) {
    let a = &cfg.auth;
    let Ok(auth) = Auth::new(
        b"fuzz",
        a.token_ttl_secs,
        a.argon2_memory_kib,
        a.argon2_iterations,
    ) else {
        return;
    };
    let (token, expires_ms) = auth.issue("u", "d", NOW_MS);
    assert!(!token.is_empty());
    assert!(
        expires_ms >= NOW_MS - 1000,
        "token_ttl_secs = {} makes tokens that expired before they were issued ({expires_ms})",
        a.token_ttl_secs
    );
}

/// The conversation actor checks `delete` with scope `everyone` against
/// `limits.retract_window_secs`.
fn check_retract_window(cfg: &Config) {
    let window = cfg.limits.retract_window_secs;
    let sender = MemberRow {
        user_id: "u".into(),
        role: Role::Member,
        joined_seq: 0,
        delivered_seq: 0,
        read_seq: 0,
    };
    let state = ConversationState {
        row: ConversationRow {
            conversation_id: "k".into(),
            kind: ConversationKind::Direct,
            title: None,
            created_by: "u".into(),
            created_at: 0,
            avatar: None,
        },
        members: vec![sender.clone()],
        last_seq: 1,
        last_event_no: 0,
    };
    let msg = StoredMessage {
        conversation_id: "k".into(),
        seq: 1,
        message_id: "m".into(),
        sender_id: "u".into(),
        sender_device_id: "d".into(),
        client_id: "c".into(),
        ts: NOW_MS - 1000,
        text: Some("hi".into()),
        attachments: vec![],
        meta: None,
        deleted: false,
        deleted_by: None,
        edited_at: None,
        reply_to: None,
    };
    let verdict = rules::retract_for_everyone(&state, &sender, &msg, NOW_MS, window);
    assert_eq!(
        rules::edit(
            &sender,
            &msg,
            Some("hi"),
            NOW_MS,
            cfg.limits.edit_window_secs
        )
        .is_ok(),
        cfg.limits.edit_window_secs >= 1,
        "edit_window_secs = {}",
        cfg.limits.edit_window_secs
    );
    assert_eq!(
        verdict.is_ok(),
        window >= 1,
        "retract_window_secs = {window}: a 1 s old message, {verdict:?}"
    );
}
