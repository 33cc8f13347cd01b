//! Every frame the server sends, built in one place.
//!
//! It exists so that a frame's shape is decided once: the live `message` and the one `sync`
//! replays, the sender's carbon and everyone else's copy, a `deleted` from a retraction and
//! the tombstone that replaces a message retracted before a device got it. Frames come out
//! as finished JSON (`ByteString`), serialised once and shared by every session they go to.

use super::ops::AckInfo;
use crate::error::ApiError;
use crate::storage::{ConversationState, NewMessage, PushTargetRow, Role, StoredMessage};
use bytestring::ByteString;
use parley_protocol::{
    Conversation, ConversationCursor, ConversationEvent, DeleteScope, Message, PushState,
    ReceiptKind, ServerFrame,
};

fn json(frame: &ServerFrame) -> ByteString {
    frame.to_json().into()
}

/// The client view of a conversation.
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
    }
}

fn meta(m: Option<&str>) -> Option<serde_json::Value> {
    m.and_then(|s| serde_json::from_str(s).ok())
}

/// A message just committed, as members see it; `carbon` adds the sender's `client_id` for
/// the sender's own other devices.
pub fn committed_message(
    conversation_id: &str,
    seq: u64,
    m: &NewMessage,
    carbon: bool,
) -> ByteString {
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
    }))
}

/// A stored message as `viewer` sees it in a page: `client_id` only for the sender's own
/// devices; a retracted message is a tombstone (`deleted: true`, no content).
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
    }
}

/// What a device that has not got a stored message yet receives for it: the message, or a
/// `deleted` frame in place of one retracted meanwhile.
pub fn owed_message(m: StoredMessage, viewer: &str) -> ByteString {
    if m.deleted {
        let by = m.deleted_by.clone().unwrap_or_else(|| m.sender_id.clone());
        return deleted(&m.conversation_id, m.seq, DeleteScope::Everyone, &by);
    }
    json(&ServerFrame::Message(stored_message(m, viewer)))
}

pub fn deleted(conversation_id: &str, seq: u64, scope: DeleteScope, by: &str) -> ByteString {
    json(&ServerFrame::Deleted {
        conversation_id: conversation_id.to_string(),
        seq,
        scope,
        by: by.to_string(),
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
