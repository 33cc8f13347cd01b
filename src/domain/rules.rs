//! Every check of input, limits and permissions, each written once.
//!
//! It exists so that a rule means the same wherever it applies: membership is decided here
//! for the conversation actor (on the state it owns) and for the HTTP handlers and history
//! reads (on what the store returns); the group-size limit for creating a group and for
//! adding members; and each client-facing limit names the same error code everywhere.

use crate::config::{Limits, RetentionConfig};
use crate::error::{ApiError, ApiResult};
use crate::storage::{ConversationState, FileRow, MemberRow, Role, StoredMessage};
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

/// The admin of a group: forbidden for members, `bad_request` for a direct conversation
/// (it has no admins, title or avatar).
fn group_admin<'a>(state: &'a ConversationState, by: &str, what: &str) -> ApiResult<&'a MemberRow> {
    let m = member(&state.members, by)?;
    if state.row.kind != ConversationKind::Group {
        return Err(ApiError::bad_request(format!(
            "a direct conversation has no {what}"
        )));
    }
    if m.role != Role::Admin {
        return Err(ApiError::forbidden(format!(
            "only a group admin may change the {what}"
        )));
    }
    Ok(m)
}

/// Whether `by` may change the group's title and avatar, and the new title (1-256 bytes, or
/// none).
pub fn update_group(state: &ConversationState, by: &str, title: Option<&str>) -> ApiResult<()> {
    group_admin(state, by, "title or avatar")?;
    if title.is_some_and(|t| t.trim().is_empty()) {
        return Err(ApiError::bad_request("title: empty (use null for none)"));
    }
    short_text("title", title)
}

/// An avatar is a file the admin setting it may read (it uploaded it, or it was sent in a
/// conversation of theirs).
pub fn avatar(file: Option<&FileRow>, visible: bool) -> ApiResult<()> {
    match file {
        Some(_) if visible => Ok(()),
        _ => Err(ApiError::bad_request("avatar: no such file")),
    }
}

/// Whether `by` may make `user` an admin (`admin`) or a member: a group admin may, for any
/// member; the last admin may not step down (another admin must be named first).
pub fn set_role(state: &ConversationState, by: &str, user: &str, admin: bool) -> ApiResult<()> {
    group_admin(state, by, "roles")?;
    let target = state
        .members
        .iter()
        .find(|m| m.user_id == user)
        .ok_or_else(|| ApiError::not_found("not a member"))?;
    let admins = state
        .members
        .iter()
        .filter(|m| m.role == Role::Admin)
        .count();
    if !admin && target.role == Role::Admin && admins == 1 {
        return Err(ApiError::conflict("a group keeps at least one admin"));
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

/// Who becomes admin of a group that has members but no admin left (its last admin left or
/// was removed): the longest-standing member, the one with the lowest `joined_seq` (founding
/// members: 0), ties broken by user id.
pub fn successor(state: &ConversationState) -> Option<&str> {
    if state.row.kind != ConversationKind::Group
        || state.members.iter().any(|m| m.role == Role::Admin)
    {
        return None;
    }
    state
        .members
        .iter()
        .min_by(|a, b| (a.joined_seq, &a.user_id).cmp(&(b.joined_seq, &b.user_id)))
        .map(|m| m.user_id.as_str())
}

/// A change of a user's settings of a conversation: at least one field, no negative time.
/// `pinned` becomes `pinned_at` (now, or 0).
pub fn settings(
    muted_until: Option<i64>,
    archived: Option<bool>,
    pinned: Option<bool>,
    now_ms: i64,
) -> ApiResult<crate::storage::SettingsPatch> {
    if muted_until.is_none() && archived.is_none() && pinned.is_none() {
        return Err(ApiError::bad_request(
            "give at least one of muted_until, archived, pinned",
        ));
    }
    Ok(crate::storage::SettingsPatch {
        muted_until: muted_until.map(|m| m.max(0)),
        archived,
        pinned_at: pinned.map(|p| if p { now_ms } else { 0 }),
    })
}

/// The key that makes a pair's direct conversation unique: "a:b", sorted.
pub fn direct_key(a: &str, b: &str) -> String {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    format!("{x}:{y}")
}

/// Blocks between two users, as pairs (blocker, blocked).
pub type Blocks = [(String, String)];

/// Whether a block stands between `a` and `b`, either way: then neither may start a direct
/// conversation with the other or send into theirs, and neither gets the other's typing.
pub fn blocked_between(blocks: &Blocks, a: &str, b: &str) -> bool {
    blocks
        .iter()
        .any(|(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// The send (or new direct conversation) of `by` to `other` is refused if either blocked the
/// other.
pub fn not_blocked(blocks: &Blocks, by: &str, other: &str) -> ApiResult<()> {
    if blocked_between(blocks, by, other) {
        return Err(ApiError::forbidden("blocked"));
    }
    Ok(())
}

/// Who may be blocked: another user that exists.
pub fn block_target(by: &str, user: &str, exists: bool) -> ApiResult<()> {
    if by == user {
        return Err(ApiError::bad_request("you cannot block yourself"));
    }
    if !exists {
        return Err(ApiError::not_found("no such user"));
    }
    Ok(())
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
