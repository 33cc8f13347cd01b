//! Every check of input, limits and permissions, each written once.
//!
//! It exists so that a rule means the same wherever it applies: membership is decided here
//! for the conversation actor (on the state it owns) and for the HTTP handlers and history
//! reads (on what the store returns); the group-size limit for creating a group and for
//! adding members; and each client-facing limit names the same error code everywhere.

use crate::config::{Limits, RetentionConfig};
use crate::error::{ApiError, ApiResult};
use crate::storage::{ConversationState, MemberRow, Role, StoredMessage};
use parley_protocol::{ConversationKind, PushTarget, SendFrame};

fn not_a_member() -> ApiError {
    ApiError::forbidden("not a member of this conversation")
}

pub fn no_conversation() -> ApiError {
    ApiError::not_found("no such conversation")
}

/// `user`'s membership in a conversation whose members are `members`.
pub fn member<'a>(members: &'a [MemberRow], user: &str) -> ApiResult<&'a MemberRow> {
    members
        .iter()
        .find(|m| m.user_id == user)
        .ok_or_else(not_a_member)
}

/// The same rule on a member row read from the store.
pub fn stored_member(row: Option<MemberRow>) -> ApiResult<MemberRow> {
    row.ok_or_else(not_a_member)
}

pub fn group_size(limits: &Limits, members: usize) -> ApiResult<()> {
    if members > limits.max_group_members {
        return Err(ApiError::too_large(format!(
            "a group has at most {} members",
            limits.max_group_members
        )));
    }
    Ok(())
}

/// Checks a `send` frame; returns its meta as JSON text.
pub fn send(limits: &Limits, f: &SendFrame) -> ApiResult<Option<String>> {
    client_id(limits, f.id.as_str())?;
    if f.conversation_id.is_some() == f.to.is_some() {
        return Err(ApiError::bad_request(
            "give exactly one of conversation_id and to",
        ));
    }
    if f.text
        .as_ref()
        .is_some_and(|t| t.len() > limits.max_text_bytes)
    {
        return Err(ApiError::too_large(format!(
            "text is over {} bytes",
            limits.max_text_bytes
        )));
    }
    if f.attachments.len() > limits.max_attachments {
        return Err(ApiError::too_large(format!(
            "at most {} attachments",
            limits.max_attachments
        )));
    }
    if f.text.as_deref().unwrap_or("").is_empty() && f.attachments.is_empty() {
        return Err(ApiError::bad_request("a message needs text or attachments"));
    }
    if f.reply_to == Some(0) {
        return Err(ApiError::bad_request("reply_to must be a seq (1 or more)"));
    }
    meta(limits, &f.meta)
}

/// A client's id for an operation it may retry.
pub fn client_id(limits: &Limits, id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > limits.max_client_id_bytes {
        return Err(ApiError::bad_request(format!(
            "id must be 1..{} bytes",
            limits.max_client_id_bytes
        )));
    }
    Ok(())
}

/// Checks an `edit` frame; returns its meta as JSON text.
pub fn edit_frame(
    limits: &Limits,
    id: &str,
    text: Option<&str>,
    meta_value: &Option<serde_json::Value>,
) -> ApiResult<Option<String>> {
    client_id(limits, id)?;
    if text.is_none() && meta_value.is_none() {
        return Err(ApiError::bad_request("an edit needs text or meta"));
    }
    if text.is_some_and(|t| t.len() > limits.max_text_bytes) {
        return Err(ApiError::too_large(format!(
            "text is over {} bytes",
            limits.max_text_bytes
        )));
    }
    meta(limits, meta_value)
}

/// Whether `by` may edit `msg` now, leaving it with `text` and its attachments.
pub fn edit(
    by: &MemberRow,
    msg: &StoredMessage,
    text: Option<&str>,
    now_ms: i64,
    window_secs: u64,
) -> ApiResult<()> {
    if msg.deleted {
        return Err(ApiError::not_found("the message was retracted"));
    }
    if msg.sender_id != by.user_id {
        return Err(ApiError::forbidden("only the sender may edit a message"));
    }
    if now_ms - msg.ts > window_secs as i64 * 1000 {
        return Err(ApiError::forbidden("the edit window has passed"));
    }
    if text.unwrap_or("").is_empty() && msg.attachments.is_empty() {
        return Err(ApiError::bad_request("a message needs text or attachments"));
    }
    Ok(())
}

/// A reaction is one short emoji: no spaces or control characters.
pub fn emoji(limits: &Limits, e: &str) -> ApiResult<()> {
    let ok = !e.is_empty()
        && e.len() <= limits.max_emoji_bytes
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ApiError::bad_request(format!(
            "emoji must be 1..{} bytes without spaces",
            limits.max_emoji_bytes
        )));
    }
    Ok(())
}

/// A reaction to `msg`, which already has `distinct` emojis, none of them this one.
pub fn new_emoji(limits: &Limits, msg: &StoredMessage, distinct: usize) -> ApiResult<()> {
    if msg.deleted {
        return Err(ApiError::not_found("the message was retracted"));
    }
    if distinct >= limits.max_reactions_per_message {
        return Err(ApiError::too_large(format!(
            "a message has at most {} different reactions",
            limits.max_reactions_per_message
        )));
    }
    Ok(())
}

/// A meta object as JSON text, within its limit.
fn meta(limits: &Limits, meta: &Option<serde_json::Value>) -> ApiResult<Option<String>> {
    match meta {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => {
            let s = v.to_string();
            if s.len() > limits.max_meta_bytes {
                return Err(ApiError::too_large(format!(
                    "meta is over {} bytes",
                    limits.max_meta_bytes
                )));
            }
            Ok(Some(s))
        }
        Some(_) => Err(ApiError::bad_request("meta must be a JSON object")),
    }
}

/// Who may add `user_ids` to the conversation; returns the ones not already members.
pub fn add_members(
    limits: &Limits,
    state: &ConversationState,
    by: &str,
    user_ids: &[String],
) -> ApiResult<Vec<String>> {
    let adder = member(&state.members, by)?;
    if state.row.kind != ConversationKind::Group {
        return Err(ApiError::bad_request("members can be added to groups only"));
    }
    if adder.role != Role::Admin {
        return Err(ApiError::forbidden("only a group admin may add members"));
    }
    let mut new: Vec<String> = Vec::new();
    for u in user_ids {
        if !state.members.iter().any(|m| &m.user_id == u) && !new.contains(u) {
            new.push(u.clone());
        }
    }
    group_size(limits, state.members.len() + new.len())?;
    Ok(new)
}

/// Whether `by` may remove `user` (themselves, or anyone if a group admin).
pub fn remove_member(state: &ConversationState, by: &str, user: &str) -> ApiResult<()> {
    let remover = member(&state.members, by)?;
    if state.row.kind != ConversationKind::Group {
        return Err(ApiError::bad_request(
            "members can be removed from groups only",
        ));
    }
    if by != user && remover.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only a group admin may remove other members",
        ));
    }
    if !state.members.iter().any(|m| m.user_id == user) {
        return Err(ApiError::not_found("not a member"));
    }
    Ok(())
}

/// Whether `by` may set the conversation's retention to `secs` (`None`: the deployment's
/// default): a group admin, or either member of a direct conversation; at least
/// `retention.min_secs` and never longer than the deployment's default (0: forever), so a
/// conversation can only keep less than the operator decided.
pub fn set_retention(
    cfg: &RetentionConfig,
    state: &ConversationState,
    by: &str,
    secs: Option<u64>,
) -> ApiResult<()> {
    let m = member(&state.members, by)?;
    if state.row.kind == ConversationKind::Group && m.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only a group admin may set the retention",
        ));
    }
    let Some(secs) = secs else { return Ok(()) };
    let max = if cfg.default_secs == 0 {
        10 * 366 * 24 * 3600
    } else {
        cfg.default_secs
    };
    if secs < cfg.min_secs || secs > max {
        return Err(ApiError::bad_request(format!(
            "retention_secs must be between {} and {max}",
            cfg.min_secs
        )));
    }
    Ok(())
}

/// Whether the message at `seq` is one `by` can see (else `not_found`).
pub fn visible_seq(by: &MemberRow, seq: u64, last_seq: u64) -> ApiResult<()> {
    if seq == 0 || seq > last_seq || seq <= by.joined_seq {
        return Err(ApiError::not_found("no such message"));
    }
    Ok(())
}

/// Whether `by` may see who received and read a message sent by `sender`: its sender only.
pub fn see_receipts(by: &MemberRow, sender: &str) -> ApiResult<()> {
    if sender != by.user_id {
        return Err(ApiError::forbidden(
            "only the sender sees who received and read a message",
        ));
    }
    Ok(())
}

/// Whether `m` counts among the recipients of the message at `seq` sent by `sender`: a member
/// who joined before it, other than its sender.
pub fn receipt_recipient(m: &MemberRow, sender: &str, seq: u64) -> bool {
    m.user_id != sender && m.joined_seq < seq
}

/// Whether senders in this conversation get coalesced `receipt_summary` frames instead of one
/// `receipt` per member (groups of at least `min_members`).
pub fn summarised(state: &ConversationState, min_members: usize) -> bool {
    state.row.kind == ConversationKind::Group && state.members.len() >= min_members
}

/// Whether `by` may retract `msg` for everyone: its sender within the window, or a group
/// admin at any time.

pub fn retract_for_everyone(
    state: &ConversationState,
    by: &MemberRow,
    msg: &StoredMessage,
    now_ms: i64,
    window_secs: u64,
) -> ApiResult<()> {
    let own = msg.sender_id == by.user_id;
    let in_window = now_ms - msg.ts <= window_secs as i64 * 1000;
    let admin = state.row.kind == ConversationKind::Group && by.role == Role::Admin;
    if (own && in_window) || admin {
        return Ok(());
    }
    Err(ApiError::forbidden(if own {
        "the retraction window has passed"
    } else {
        "only the sender or a group admin may retract for everyone"
    }))
}

pub fn username(u: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(ApiError::bad_request(
            "username: 1-64 characters of a-z, A-Z, 0-9, _ . -",
        ));
    }
    Ok(())
}

pub fn password(p: &str) -> ApiResult<()> {
    if p.len() < 8 || p.len() > 1024 {
        return Err(ApiError::bad_request("password: 8 to 1024 bytes"));
    }
    Ok(())
}

/// Display names, device names and group titles.
pub fn short_text(field: &str, v: Option<&str>) -> ApiResult<()> {
    if v.is_some_and(|v| v.len() > 256) {
        return Err(ApiError::bad_request(format!("{field}: at most 256 bytes")));
    }
    Ok(())
}

pub fn push_target(t: &PushTarget) -> ApiResult<()> {
    let token_ok =
        |t: &Option<String>| t.as_ref().is_some_and(|t| !t.is_empty() && t.len() <= 4096);
    let url_ok = |e: &Option<String>, https_only: bool| {
        e.as_ref().is_some_and(|e| {
            e.len() <= 2048
                && (e.starts_with("https://") || (!https_only && e.starts_with("http://")))
        })
    };
    if t.payload
        .as_deref()
        .is_some_and(|p| p != "full" && p != "id_only")
    {
        return Err(ApiError::bad_request(
            "payload must be \"full\" or \"id_only\"",
        ));
    }
    // base64url, unpadded: a 65-byte uncompressed P-256 point, and a 16-byte secret.
    let b64 = |s: &str, len: usize| {
        s.trim_end_matches('=').len() == len
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    let keys_ok = t
        .keys
        .as_ref()
        .is_some_and(|k| b64(&k.p256dh, 87) && b64(&k.auth, 22));
    let refusal = match t.provider.as_str() {
        "fcm" | "apns" if token_ok(&t.token) => return Ok(()),
        "fcm" | "apns" => "fcm and apns need a token (1-4096 bytes)",
        "webpush" if url_ok(&t.endpoint, true) && keys_ok => return Ok(()),
        "webpush" => "webpush needs an https:// endpoint and keys {p256dh, auth} (base64url)",
        "webhook" if url_ok(&t.endpoint, false) => return Ok(()),
        "webhook" => "webhook needs an http(s):// endpoint",
        _ => "provider must be fcm, apns, webpush or webhook",
    };
    Err(ApiError::bad_request(refusal))
}
