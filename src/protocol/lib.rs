//! Parley client protocol v1: the wire types, and nothing else.
//!
//! This crate exists so that the server, the load generator and any client written in Rust
//! parse and print exactly the same frames. It does no I/O and depends only on serde, so it can
//! be shared without dragging the server along. The contract it encodes is `docs/protocol.md`.

mod http;
pub use http::*;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Error codes shared by the WebSocket `error` frame and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// WebSocket close codes of the contract.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const TOO_LARGE: u16 = 1009;
    pub const RESTARTING: u16 = 1012;
    pub const BAD_TOKEN: u16 = 4401;
    pub const AUTH_TIMEOUT: u16 = 4408;
    pub const TOO_SLOW: u16 = 4429;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub file_id: String,
}

/// An attachment as the server describes it inside a message.
///
/// v1.1: an image (JPEG, PNG, WebP, GIF) also carries its dimensions, the path of its
/// thumbnail and a ThumbHash placeholder; these are `null` for any other file. (No
/// `skip_serializing_if`: the type also travels between nodes in postcard, which needs every
/// field present.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub file_id: String,
    pub size: u64,
    pub content_type: String,
    pub sha256: String,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// `/v1/files/{file_id}/thumbnail`.
    #[serde(default)]
    pub thumbnail: Option<String>,
    /// ThumbHash of the image, standard base64.
    #[serde(default)]
    pub placeholder: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteScope {
    Everyone,
    Me,
}

impl DeleteScope {
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteScope::Everyone => "everyone",
            DeleteScope::Me => "me",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// Frames a client sends. Unknown fields are ignored; an unknown `type` fails to parse and the
/// server answers `bad_request` without closing the connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Auth {
        token: String,
    },
    Send(SendFrame),
    Received {
        conversation_id: String,
        seq: u64,
        /// Optional (v1.1): an error this frame causes carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Read {
        conversation_id: String,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Sync {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    History {
        id: String,
        conversation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    Delete {
        id: String,
        conversation_id: String,
        seq: u64,
        scope: DeleteScope,
    },
    Typing {
        conversation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// v1.1: the sender replaces the text and/or meta of a message (an absent field stays as
    /// it is). Answered with an `ack` (`seq` is the edited message's).
    Edit {
        id: String,
        conversation_id: String,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Value>,
    },
    /// v1.1: adds (or, with `remove`, takes back) the user's reaction `emoji` to a message.
    React {
        id: String,
        conversation_id: String,
        seq: u64,
        emoji: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SendFrame {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// v1.1: the seq of the message this one replies to (in the same conversation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
}

/// v1.1: what a reply shows of the message it answers, built by the server when the reply
/// is read, so a later edit or retraction of the quoted message shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub seq: u64,
    pub sender_id: String,
    /// The start of the quoted text (at most 200 characters, cut at a character boundary).
    #[serde(default)]
    pub text: Option<String>,
    /// How many attachments the quoted message has.
    #[serde(default)]
    pub attachments: u32,
    /// The quoted message was retracted (nothing else is shown), or is not visible to the
    /// reader (hidden, or from before the reader joined).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// v1.1: how many users reacted to a message with one emoji, and whether the reader did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: u32,
    pub me: bool,
}

/// A stored message as clients see it (the `message` frame without its tag, and the element of
/// `history` and the HTTP messages list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: String,
    pub seq: u64,
    pub message_id: String,
    pub sender_id: String,
    pub sender_device_id: String,
    pub ts: i64,
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Extension: set on a retracted message (a tombstone) in `history` and HTTP listings, so
    /// that a page never shows a gap in `seq`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// v1.1: when the text or meta shown last changed (an edited message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// v1.1: the seq this message replies to, and what it shows of that message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Quote>,
    /// v1.1: reactions, most used first (in pages and `sync`; a live `message` has none yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationCursor {
    pub conversation_id: String,
    pub last_seq: u64,
    pub delivered_seq: u64,
    pub read_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub conversation_id: String,
    pub seq: u64,
    pub message_id: String,
    pub ts: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Ready {
        user_id: String,
        device_id: String,
        session_id: String,
        heartbeat_ms: u64,
        conversations: Vec<ConversationCursor>,
        /// Extension: this device's push target and its state, if it has one (a disabled
        /// target means: register again).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        push: Option<PushState>,
    },
    Ack(Ack),
    Message(Message),
    Receipt {
        conversation_id: String,
        user_id: String,
        kind: ReceiptKind,
        seq: u64,
    },
    /// v1.1: in a large group, how many recipients have received and read the sender's
    /// message `seq` (coalesced: at most one per message per interval; replaces `receipt`).
    ReceiptSummary {
        conversation_id: String,
        seq: u64,
        recipients: u64,
        delivered: u64,
        read: u64,
    },
    Deleted {
        conversation_id: String,
        seq: u64,
        scope: DeleteScope,
        by: String,
    },
    /// v1.1: a message was edited: its text and meta are now these.
    Edited {
        conversation_id: String,
        seq: u64,
        text: Option<String>,
        meta: Option<Value>,
        edited_at: i64,
        by: String,
    },
    /// v1.1: `user_id` added (`added`) or took back a reaction.
    Reaction {
        conversation_id: String,
        seq: u64,
        user_id: String,
        emoji: String,
        added: bool,
    },
    Typing {
        conversation_id: String,
        user_id: String,
    },
    Presence {
        user_id: String,
        online: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<i64>,
    },
    Conversation {
        event: ConversationEvent,
        conversation: Conversation,
    },
    Synced {
        id: String,
        more: bool,
    },
    History {
        id: String,
        conversation_id: String,
        messages: Vec<Message>,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
    },
    /// v1.1: the user's own settings of a conversation changed (on any of its devices): to
    /// every session of the user.
    Settings(ConversationSettings),
    /// Extension: a device's push target changed state (a provider declared it dead): to
    /// every session of its user, so the app registers again.
    PushTarget {
        device_id: String,
        #[serde(flatten)]
        push: PushState,
    },
    /// v1.1: messages `from_seq..=to_seq` expired (the conversation's retention) before this
    /// device got them: the device holds the conversation up to `to_seq` from now on.
    Expired {
        conversation_id: String,
        from_seq: u64,
        to_seq: u64,
    },
    /// v1.1, to a sender: `lost` of its messages in `from_seq..=to_seq` expired before
    /// `device_id` of `user_id` received them.
    Undeliverable(Undeliverable),
    /// v1.1: the conversation's own retention period changed (`None`: the deployment's).
    Retention {
        conversation_id: String,
        retention_secs: Option<u64>,
        by: String,
    },
}

/// v1.1: what a sender is told of messages that expired undelivered (`undeliverable` frame,
/// and `GET /v1/undeliverable`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undeliverable {
    pub conversation_id: String,
    pub user_id: String,
    pub device_id: String,
    pub from_seq: u64,
    pub to_seq: u64,
    pub lost: u64,
    pub ts: i64,
}

impl ServerFrame {
    pub fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            id,
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationEvent {
    Created,
    MemberAdded,
    MemberRemoved,
    Updated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        }
    }
}

/// A conversation as the HTTP API and `conversation` events describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub conversation_id: String,
    pub kind: ConversationKind,
    #[serde(default)]
    pub title: Option<String>,
    pub members: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    pub created_at: i64,
    #[serde(default)]
    pub last_seq: u64,
    /// v1.1: a group's avatar (a file id), `null` if none. Always present (this type is also
    /// postcard-encoded between nodes, so no field is skipped).
    #[serde(default)]
    pub avatar: Option<String>,
}

/// One row of `GET /v1/conversations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub delivered_seq: u64,
    pub read_seq: u64,
    pub unread: u64,
    /// v1.1: the caller's own settings of it.
    #[serde(default)]
    pub muted_until: i64,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub pinned_at: i64,
}

/// v1.1: a user's own settings of a conversation, the same on all of its devices (the answer
/// of `PUT /v1/conversations/{id}/settings` and the `settings` frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSettings {
    pub conversation_id: String,
    /// Alerts are suppressed until then (ms since the epoch; 0: not muted).
    pub muted_until: i64,
    pub archived: bool,
    /// When it was pinned (ms since the epoch; 0: not pinned). Clients list pinned
    /// conversations first, the most recently pinned first.
    pub pinned_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_send_with_unknown_fields() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"send","id":"c1","conversation_id":"x","text":"hi","extra":1}"#,
        )
        .unwrap();
        match f {
            ClientFrame::Send(s) => {
                assert_eq!(s.id, "c1");
                assert_eq!(s.text.as_deref(), Some("hi"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn ack_omits_duplicate_when_false() {
        let a = ServerFrame::Ack(Ack {
            id: "c".into(),
            conversation_id: "k".into(),
            seq: 1,
            message_id: "m".into(),
            ts: 5,
            duplicate: false,
        });
        let s = a.to_json();
        assert!(s.starts_with(r#"{"type":"ack""#), "{s}");
        assert!(!s.contains("duplicate"));
    }

    #[test]
    fn error_codes_round_trip() {
        let e = ServerFrame::error(Some("1".into()), ErrorCode::TooLarge, "big");
        let back: ServerFrame = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);
        assert!(e.to_json().contains(r#""code":"too_large""#));
    }
}
