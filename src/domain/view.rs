//! Every frame the server sends, built in one place.
//!
//! It exists so that a frame's shape is decided once: the live `message` and the one `sync`
//! replays, the sender's carbon and everyone else's copy, a `deleted` from a retraction and
//! the tombstone that replaces a message retracted before a device got it. Frames come out
//! as finished JSON (`ByteString`), serialised once and shared by every session they go to.

use super::broadcast::QuoteInfo;
use super::ops::AckInfo;
use crate::error::ApiError;
use crate::storage::{
    ConversationState, MemberRow, NewMessage, PushTargetRow, ReactionCount, Role, StoredMessage,
};
use bytestring::ByteString;
use parley_protocol::{
    Conversation, ConversationCursor, ConversationEvent, DeleteScope, Message, PushState, Quote,
    ReactionSummary, ReceiptKind, ServerFrame,
};

fn json(frame: &ServerFrame) -> ByteString {
    frame.to_json().into()
}

/// The client view of a conversation.
/// A stored file as a message's attachment (v1.1: with an image's dimensions, thumbnail path
/// and placeholder).
pub fn attachment(f: &crate::storage::FileRow) -> parley_protocol::Attachment {
    let image = f.image.as_ref();
    parley_protocol::Attachment {
        file_id: f.file_id.clone(),
        size: f.size,
        content_type: f.content_type.clone(),
        sha256: f.sha256.clone(),
        width: image.map(|i| i.width),
        height: image.map(|i| i.height),
        thumbnail: image.map(|_| format!("/v1/files/{}/thumbnail", f.file_id)),
        placeholder: image.map(|i| i.placeholder.clone()),
    }
}

/// A stored file as the answer to its upload: the same fields as its attachment.
pub fn file_info(f: &crate::storage::FileRow) -> parley_protocol::FileInfo {
    let a = attachment(f);
    parley_protocol::FileInfo {
        file_id: a.file_id,
        size: a.size,
        content_type: a.content_type,
        sha256: a.sha256,
        width: a.width,
        height: a.height,
        thumbnail: a.thumbnail,
        placeholder: a.placeholder,
    }
}

pub fn conversation(state: &ConversationState) -> Conversation {
    Conversation {
        conversation_id: state.row.conversation_id.clone(),
        kind: state.row.kind,
        title: state.row.title.clone(),
        members: state.members.iter().map(|m| m.user_id.clone()).collect(),
        admins: state
            .members
            .iter()
            .filter(|m| m.role == Role::Admin)
            .map(|m| m.user_id.clone())
            .collect(),
        created_at: state.row.created_at,
        last_seq: state.last_seq,
        avatar: state.row.avatar.clone(),
    }
}

fn meta(m: Option<&str>) -> Option<serde_json::Value> {
    m.and_then(|s| serde_json::from_str(s).ok())
}

/// How much of a quoted message's text a reply shows.
const QUOTE_CHARS: usize = 200;

/// What a reply shows of the message at its `reply_to`, as stored now.
pub fn quote(m: &StoredMessage) -> QuoteInfo {
    QuoteInfo {
        seq: m.seq,
        sender_id: m.sender_id.clone(),
        text: if m.deleted {
            None
        } else {
            m.text
                .as_deref()
                .map(|t| t.chars().take(QUOTE_CHARS).collect())
        },
        attachments: if m.deleted {
            0
        } else {
            m.attachments.len() as u32
        },
        deleted: m.deleted,
    }
}

fn wire_quote(q: &QuoteInfo) -> Quote {
    Quote {
        seq: q.seq,
        sender_id: q.sender_id.clone(),
        text: q.text.clone(),
        attachments: q.attachments,
        deleted: q.deleted,
    }
}

/// A message just committed, as members see it; `carbon` adds the sender's `client_id` for
/// the sender's own other devices.
pub fn committed_message(
    conversation_id: &str,
    seq: u64,
    c: &CommittedRef,
    carbon: bool,
) -> ByteString {
    let m = c.message;
    json(&ServerFrame::Message(Message {
        conversation_id: conversation_id.to_string(),
        seq,
        message_id: m.message_id.clone(),
        sender_id: m.sender_id.clone(),
        sender_device_id: m.sender_device_id.clone(),
        ts: m.ts,
        text: m.text.clone(),
        attachments: m.attachments.clone(),
        meta: meta(m.meta.as_deref()),
        client_id: carbon.then(|| m.client_id.clone()),
        deleted: false,
        edited_at: None,
        reply_to: m.reply_to,
        quote: c.quote.map(wire_quote),
        reactions: Vec::new(),
    }))
}

/// A committed message and its quote, borrowed (from a commit batch or a bus broadcast).
#[derive(Clone, Copy)]
pub struct CommittedRef<'a> {
    pub message: &'a NewMessage,
    pub quote: Option<&'a QuoteInfo>,
}

/// A stored message as `viewer` sees it in a page: `client_id` only for the sender's own
/// devices; a retracted message is a tombstone (`deleted: true`, no content). Its quote and
/// reactions are added by `reads`, which reads them in one go for a page.
pub fn stored_message(m: StoredMessage, viewer: &str) -> Message {
    let own = m.sender_id == viewer;
    Message {
        conversation_id: m.conversation_id,
        seq: m.seq,
        message_id: m.message_id,
        sender_id: m.sender_id,
        sender_device_id: m.sender_device_id,
        ts: m.ts,
        text: m.text,
        attachments: m.attachments,
        meta: meta(m.meta.as_deref()),
        client_id: own.then_some(m.client_id),
        deleted: m.deleted,
        edited_at: if m.deleted { None } else { m.edited_at },
        reply_to: if m.deleted { None } else { m.reply_to },
        quote: None,
        reactions: Vec::new(),
    }
}

/// Adds what `reads` found of a page's quotes and reactions to one message.
pub fn decorate(m: &mut Message, quote: Option<&QuoteInfo>, reactions: &[ReactionCount]) {
    m.quote = quote.map(wire_quote);
    m.reactions = reactions
        .iter()
        .map(|r| ReactionSummary {
            emoji: r.emoji.clone(),
            count: r.count,
            me: r.me,
        })
        .collect();
}

/// A message frame (a page's message replayed, or owed).
pub fn message(m: Message) -> ByteString {
    json(&ServerFrame::Message(m))
}

/// What a device that has not got a stored message yet receives in place of it when it was
/// retracted meanwhile.
pub fn tombstone(m: &StoredMessage) -> ByteString {
    let by = m.deleted_by.clone().unwrap_or_else(|| m.sender_id.clone());
    deleted(&m.conversation_id, m.seq, DeleteScope::Everyone, &by)
}

pub fn deleted(conversation_id: &str, seq: u64, scope: DeleteScope, by: &str) -> ByteString {
    json(&ServerFrame::Deleted {
        conversation_id: conversation_id.to_string(),
        seq,
        scope,
        by: by.to_string(),
    })
}

/// A message's text and meta after an edit (live, or replayed from the latest version).
pub fn edited(m: &StoredMessage, by: &str) -> ByteString {
    json(&ServerFrame::Edited {
        conversation_id: m.conversation_id.clone(),
        seq: m.seq,
        text: m.text.clone(),
        meta: meta(m.meta.as_deref()),
        edited_at: m.edited_at.unwrap_or(m.ts),
        by: by.to_string(),
    })
}

pub fn reaction(
    conversation_id: &str,
    seq: u64,
    user_id: &str,
    emoji: &str,
    added: bool,
) -> ByteString {
    json(&ServerFrame::Reaction {
        conversation_id: conversation_id.to_string(),
        seq,
        user_id: user_id.to_string(),
        emoji: emoji.to_string(),
        added,
    })
}

pub fn receipt(conversation_id: &str, user_id: &str, kind: ReceiptKind, seq: u64) -> ByteString {
    json(&ServerFrame::Receipt {
        conversation_id: conversation_id.to_string(),
        user_id: user_id.to_string(),
        kind,
        seq,
    })
}

/// Messages `from..=to` expired before the device got them (in place of them, as `sync` and
/// catch-up go).
pub fn expired(conversation_id: &str, from: u64, to: u64) -> ByteString {
    json(&ServerFrame::Expired {
        conversation_id: conversation_id.to_string(),
        from_seq: from,
        to_seq: to,
    })
}

/// What a sender is told (live, and in `GET /v1/undeliverable`).
pub fn undeliverable(u: &crate::storage::Undeliverable) -> parley_protocol::Undeliverable {
    parley_protocol::Undeliverable {
        conversation_id: u.conversation_id.clone(),
        user_id: u.recipient_id.clone(),
        device_id: u.device_id.clone(),
        from_seq: u.from_seq,
        to_seq: u.to_seq,
        lost: u.lost,
        ts: u.ts,
    }
}

pub fn undeliverable_frame(u: &crate::storage::Undeliverable) -> ByteString {
    json(&ServerFrame::Undeliverable(undeliverable(u)))
}

pub fn retention(conversation_id: &str, secs: Option<u64>, by: &str) -> ByteString {
    json(&ServerFrame::Retention {
        conversation_id: conversation_id.to_string(),
        retention_secs: secs,
        by: by.to_string(),
    })
}

/// v1.1: a message's receipt counts, for its sender in a large group.
pub fn receipt_summary(conversation_id: &str, seq: u64, c: ReceiptCounts) -> ByteString {
    json(&ServerFrame::ReceiptSummary {
        conversation_id: conversation_id.to_string(),
        seq,
        recipients: c.recipients,
        delivered: c.delivered,
        read: c.read,
    })
}

/// How many recipients a message has, and how many of them received and read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptCounts {
    pub recipients: u64,
    pub delivered: u64,
    pub read: u64,
}

/// The receipts of the message at `seq` sent by `sender`, from the members' positions: one
/// pass over the members, whatever the history.
pub fn receipt_counts(members: &[MemberRow], sender: &str, seq: u64) -> ReceiptCounts {
    let mut c = ReceiptCounts {
        recipients: 0,
        delivered: 0,
        read: 0,
    };
    for m in members
        .iter()
        .filter(|m| super::rules::receipt_recipient(m, sender, seq))
    {
        c.recipients += 1;
        c.delivered += u64::from(m.delivered_seq.max(m.read_seq) >= seq);
        c.read += u64::from(m.read_seq >= seq);
    }
    c
}

pub fn typing(conversation_id: &str, user_id: &str) -> ByteString {
    json(&ServerFrame::Typing {
        conversation_id: conversation_id.to_string(),
        user_id: user_id.to_string(),
    })
}

pub fn presence(user_id: &str, online: bool, last_seen: Option<i64>) -> ByteString {
    json(&ServerFrame::Presence {
        user_id: user_id.to_string(),
        online,
        last_seen,
    })
}

pub fn conversation_event(event: ConversationEvent, conversation: &Conversation) -> ByteString {
    json(&ServerFrame::Conversation {
        event,
        conversation: conversation.clone(),
    })
}

pub fn ready(
    user_id: &str,
    device_id: &str,
    session_id: &str,
    heartbeat_ms: u64,
    conversations: Vec<ConversationCursor>,
    push: Option<&PushTargetRow>,
) -> ByteString {
    json(&ServerFrame::Ready {
        user_id: user_id.to_string(),
        device_id: device_id.to_string(),
        session_id: session_id.to_string(),
        heartbeat_ms,
        conversations,
        push: push.map(push_state),
    })
}

pub fn ack(a: AckInfo) -> ByteString {
    json(&ServerFrame::Ack(a.into()))
}

pub fn synced(id: String, more: bool) -> ByteString {
    json(&ServerFrame::Synced { id, more })
}

pub fn history(id: String, conversation_id: String, messages: Vec<Message>) -> ByteString {
    json(&ServerFrame::History {
        id,
        conversation_id,
        messages,
    })
}

/// A push target as its user sees it.
pub fn push_state(t: &PushTargetRow) -> PushState {
    PushState {
        provider: t.provider.clone(),
        state: if t.disabled.is_some() {
            "disabled"
        } else {
            "active"
        }
        .to_string(),
        reason: t.disabled.as_ref().map(|d| d.1.clone()),
        registered_at: t.registered_at,
    }
}

/// A user's own settings of a conversation (the HTTP answer and the `settings` frame's body).
pub fn settings(
    conversation_id: &str,
    s: &crate::storage::ConvSettings,
) -> parley_protocol::ConversationSettings {
    parley_protocol::ConversationSettings {
        conversation_id: conversation_id.to_string(),
        muted_until: s.muted_until,
        archived: s.archived,
        pinned_at: s.pinned_at,
    }
}

pub fn settings_frame(s: &parley_protocol::ConversationSettings) -> ByteString {
    json(&ServerFrame::Settings(s.clone()))
}

/// A device's push target changed state.
pub fn push_target(device_id: &str, t: &PushTargetRow) -> ByteString {
    json(&ServerFrame::PushTarget {
        device_id: device_id.to_string(),
        push: push_state(t),
    })
}

pub fn error(id: Option<String>, e: &ApiError) -> ByteString {
    json(&ServerFrame::error(id, e.code, e.message.clone()))
}

/// An earlier version of an edited message, as the versions endpoint lists it.
pub fn version(v: crate::storage::MessageVersion) -> parley_protocol::MessageVersion {
    parley_protocol::MessageVersion {
        text: v.text,
        meta: meta(v.meta.as_deref()),
        replaced_at: v.replaced_at,
    }
}
