//! The operations on a conversation, as data.
//!
//! A session or HTTP handler builds a `ConvRequest`; the conversation's actor handles it,
//! wherever it runs: on this node it arrives in the actor's mailbox, on another node it
//! crosses the bus in this same form (postcard-encoded), and the answer comes back as a
//! `ConvResult`. Adding an operation is one variant here, its handler in
//! `actors::conversation`, and its frame in `view`.
//!
//! These types are encoded with postcard, which is not self-describing: none of them may use
//! `skip_serializing_if` (a skipped field would shift every field after it). `tests` below
//! round-trips every variant.

use crate::error::ApiError;
use parley_protocol::{Attachment, Conversation, DeleteScope, ReceiptKind, ReceiptPage};
use serde::{Deserialize, Serialize};

/// The user and device a request acts for (from a verified token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: String,
    pub device_id: String,
}

/// A message to append, validated and with its attachments resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submit {
    pub by: Caller,
    /// The client's idempotency key.
    pub client_id: String,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The meta object as JSON text.
    pub meta: Option<String>,
    /// The seq of the message this one replies to.
    pub reply_to: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConvRequest {
    Submit(Submit),
    /// The device holds (`Delivered`) or the user has read (`Read`) everything up to `seq`.
    /// `id`: the client frame's, if it gave one (an error it causes carries it).
    Cursor {
        by: Caller,
        kind: ReceiptKind,
        seq: u64,
        id: Option<String>,
    },
    /// Retract (`Everyone`) or hide (`Me`) the message at `seq`; `id` is the client frame's.
    Delete {
        by: Caller,
        id: String,
        seq: u64,
        scope: DeleteScope,
    },
    Typing {
        by: Caller,
        id: Option<String>,
    },
    /// Replace the text and/or meta (JSON text) of the caller's message at `seq`; `None`
    /// keeps what is there.
    Edit {
        by: Caller,
        id: String,
        seq: u64,
        text: Option<String>,
        meta: Option<String>,
    },
    /// Add (`added`) or take back the caller's reaction `emoji` to the message at `seq`.
    React {
        by: Caller,
        id: String,
        seq: u64,
        emoji: String,
        added: bool,
    },
    AddMembers {
        by: Caller,
        user_ids: Vec<String>,
    },
    RemoveMember {
        by: Caller,
        user_id: String,
    },
    /// v1.1: who received (`Delivered`) or read the caller's message at `seq`: the counts
    /// and a page of users of `kind` after `after` (by user id), at most `limit`.
    Receipts {
        by: Caller,
        seq: u64,
        kind: ReceiptKind,
        after: Option<String>,
        limit: u32,
    },
    /// v1.1: the conversation's own retention period (`None`: the deployment's default).
    SetRetention {
        by: Caller,
        secs: Option<u64>,
    },
    /// Purge one batch of the messages sent before `before_ts` (the retention sweep, on no
    /// one's behalf); answers `Purged` with how many went.
    Expire {
        before_ts: i64,
    },
    /// v1.1: an admin changes a group's title and/or avatar (a file id). `None`: unchanged;
    /// `Some(None)`: cleared.
    UpdateGroup {
        by: Caller,
        title: Option<Option<String>>,
        avatar: Option<Option<String>>,
    },
    /// v1.1: an admin makes `user_id` an admin (`admin`) or a plain member.
    SetRole {
        by: Caller,
        user_id: String,
        admin: bool,
    },
    /// v1.1: `by` blocked (`blocked`) or unblocked `user_id`, already stored: the actor of
    /// their direct conversation refreshes what it knows.
    Block {
        by: Caller,
        user_id: String,
        blocked: bool,
    },
}

/// Who acts for requests that no user made (`Expire`).
pub static SYSTEM: Caller = Caller {
    user_id: String::new(),
    device_id: String::new(),
};

impl ConvRequest {
    pub fn caller(&self) -> &Caller {
        match self {
            ConvRequest::Submit(s) => &s.by,
            ConvRequest::Cursor { by, .. }
            | ConvRequest::Delete { by, .. }
            | ConvRequest::Typing { by, .. }
            | ConvRequest::Edit { by, .. }
            | ConvRequest::React { by, .. }
            | ConvRequest::AddMembers { by, .. }
            | ConvRequest::RemoveMember { by, .. }
            | ConvRequest::Receipts { by, .. }
            | ConvRequest::SetRetention { by, .. }
            | ConvRequest::UpdateGroup { by, .. }
            | ConvRequest::SetRole { by, .. }
            | ConvRequest::Block { by, .. } => by,
            ConvRequest::Expire { .. } => &SYSTEM,
        }
    }

    /// The id of the client frame behind a fire-and-forget request, if it gave one.
    pub fn frame_id(&self) -> Option<&str> {
        match self {
            ConvRequest::Cursor { id, .. } | ConvRequest::Typing { id, .. } => id.as_deref(),
            _ => None,
        }
    }

    /// Operations whose sender waits for an answer. The others (cursor moves, typing) are
    /// fire-and-forget: a refusal reaches the caller's device as an `error` frame.
    pub fn expects_reply(&self) -> bool {
        !matches!(
            self,
            ConvRequest::Cursor { .. } | ConvRequest::Typing { .. }
        )
    }
}

/// An `ack` as the conversation actor computes it (the wire `Ack` skips `duplicate` when
/// false, which postcard cannot carry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckInfo {
    pub id: String,
    pub conversation_id: String,
    pub seq: u64,
    pub message_id: String,
    pub ts: i64,
    pub duplicate: bool,
}

impl From<AckInfo> for parley_protocol::Ack {
    fn from(a: AckInfo) -> Self {
        parley_protocol::Ack {
            id: a.id,
            conversation_id: a.conversation_id,
            seq: a.seq,
            message_id: a.message_id,
            ts: a.ts,
            duplicate: a.duplicate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConvReply {
    Ack(AckInfo),
    Conversation(Conversation),
    Done,
    Receipts(ReceiptPage),
    /// How many messages an `Expire` purged.
    Purged(u64),
}

pub type ConvResult = Result<ConvReply, ApiError>;

impl ConvReply {
    pub fn into_ack(self) -> Result<AckInfo, ApiError> {
        match self {
            ConvReply::Ack(a) => Ok(a),
            other => Err(ApiError::internal(format!(
                "expected an ack, got {other:?}"
            ))),
        }
    }
    pub fn into_receipts(self) -> Result<ReceiptPage, ApiError> {
        match self {
            ConvReply::Receipts(p) => Ok(p),
            other => Err(ApiError::internal(format!(
                "expected receipts, got {other:?}"
            ))),
        }
    }
    pub fn into_conversation(self) -> Result<Conversation, ApiError> {
        match self {
            ConvReply::Conversation(c) => Ok(c),
            other => Err(ApiError::internal(format!(
                "expected a conversation, got {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_protocol::{ConversationKind, ErrorCode};

    fn caller() -> Caller {
        Caller {
            user_id: "u".into(),
            device_id: "d".into(),
        }
    }

    fn round_trip<T: Serialize + for<'a> Deserialize<'a> + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = postcard::to_stdvec(&v).unwrap();
        assert_eq!(postcard::from_bytes::<T>(&bytes).unwrap(), v);
    }

    #[test]
    fn every_request_survives_postcard() {
        let requests = vec![
            ConvRequest::Submit(Submit {
                by: caller(),
                client_id: "c1".into(),
                text: None,
                attachments: vec![Attachment {
                    file_id: "f".into(),
                    size: 3,
                    content_type: "image/png".into(),
                    sha256: "ab".into(),
                    width: Some(4),
                    height: Some(3),
                    thumbnail: Some("/v1/files/f/thumbnail".into()),
                    placeholder: Some("AAAA".into()),
                }],
                meta: Some(r#"{"k":1}"#.into()),
                reply_to: Some(3),
            }),
            ConvRequest::Edit {
                by: caller(),
                id: "e1".into(),
                seq: 3,
                text: Some("new".into()),
                meta: None,
            },
            ConvRequest::React {
                by: caller(),
                id: "r2".into(),
                seq: 3,
                emoji: "👍".into(),
                added: false,
            },
            ConvRequest::Cursor {
                by: caller(),
                kind: ReceiptKind::Read,
                seq: 9,
                id: Some("r1".into()),
            },
            ConvRequest::Delete {
                by: caller(),
                id: "x".into(),
                seq: 2,
                scope: DeleteScope::Me,
            },
            ConvRequest::Typing {
                by: caller(),
                id: None,
            },
            ConvRequest::AddMembers {
                by: caller(),
                user_ids: vec!["a".into(), "b".into()],
            },
            ConvRequest::RemoveMember {
                by: caller(),
                user_id: "a".into(),
            },
            ConvRequest::Receipts {
                by: caller(),
                seq: 4,
                kind: ReceiptKind::Delivered,
                after: Some("u7".into()),
                limit: 50,
            },
            ConvRequest::SetRetention {
                by: caller(),
                secs: Some(3600),
            },
            ConvRequest::Expire { before_ts: 12 },
            ConvRequest::UpdateGroup {
                by: caller(),
                title: Some(Some("t".into())),
                avatar: Some(None),
            },
            ConvRequest::UpdateGroup {
                by: caller(),
                title: None,
                avatar: Some(Some("f".into())),
            },
            ConvRequest::SetRole {
                by: caller(),
                user_id: "a".into(),
                admin: true,
            },
            ConvRequest::Block {
                by: caller(),
                user_id: "a".into(),
                blocked: false,
            },
        ];
        for r in requests {
            round_trip(r);
        }
    }

    #[test]
    fn every_reply_survives_postcard() {
        let ack = AckInfo {
            id: "c1".into(),
            conversation_id: "k".into(),
            seq: 4,
            message_id: "m".into(),
            ts: 5,
            duplicate: false,
        };
        let conv = Conversation {
            conversation_id: "k".into(),
            kind: ConversationKind::Group,
            title: None,
            members: vec!["u".into()],
            admins: vec![],
            created_at: 1,
            last_seq: 0,
            avatar: Some("f".into()),
        };
        let results: Vec<ConvResult> = vec![
            Ok(ConvReply::Ack(ack)),
            Ok(ConvReply::Conversation(conv)),
            Ok(ConvReply::Done),
            Ok(ConvReply::Receipts(parley_protocol::ReceiptPage {
                conversation_id: "k".into(),
                seq: 4,
                recipients: 3,
                delivered: 2,
                read: 1,
                users: vec![
                    parley_protocol::ReceiptUser {
                        user_id: "a".into(),
                        at: Some(7),
                    },
                    parley_protocol::ReceiptUser {
                        user_id: "b".into(),
                        at: None,
                    },
                ],
                more: true,
            })),
            Ok(ConvReply::Purged(7)),
            Err(ApiError::new(ErrorCode::Forbidden, "no")),
        ];
        for r in results {
            round_trip(r);
        }
        // The cause of an error stays on its node.
        let e = ApiError::internal("disk on fire");
        let back: ApiError = postcard::from_bytes(&postcard::to_stdvec(&e).unwrap()).unwrap();
        assert_eq!((back.code, back.cause), (ErrorCode::Internal, None));
    }
}
