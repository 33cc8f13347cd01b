//! The rows every backend reads and writes: plain data, the `Store` trait's vocabulary.

use parley_protocol::{Attachment, ConversationKind, ReceiptKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub username: String,
    pub display_name: Option<String>,
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub device_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub created_at: i64,
    /// Where to notify the device while it is offline, if it said.
    pub push: Option<PushTargetRow>,
    /// v1.1: hex SHA-256 of the device's current refresh token.
    pub refresh_hash: Option<String>,
    /// v1.1: when a session of the device last ended (or began), ms.
    pub last_seen_at: Option<i64>,
}

/// A device's push target (`PUT /v1/devices/{id}/push`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PushTargetRow {
    pub provider: String,
    pub token: Option<String>,
    pub endpoint: Option<String>,
    /// Web Push subscription keys (base64url).
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    /// "full" or "id_only"; `None`: the deployment's default.
    pub payload: Option<String>,
    pub registered_at: i64,
    /// Set when a provider declared the target dead: (when, why). Registering again clears it.
    pub disabled: Option<(i64, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Role {
        if s == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub conversation_id: String,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// v1.1: a group's avatar, the id of an uploaded file.
    pub avatar: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub user_id: String,
    pub role: Role,
    /// Members receive messages with seq above this (0 for founding members).
    pub joined_seq: u64,
    pub delivered_seq: u64,
    pub read_seq: u64,
}

/// Everything a conversation actor needs to start.
#[derive(Debug, Clone)]
pub struct ConversationState {
    pub row: ConversationRow,
    pub members: Vec<MemberRow>,
    pub last_seq: u64,
    pub last_event_no: u64,
}

pub enum CreateOutcome {
    Created,
    /// A direct conversation for that pair exists already: its id.
    Existing(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub message_id: String,
    pub sender_id: String,
    pub sender_device_id: String,
    pub client_id: String,
    pub ts: i64,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The meta object as JSON text.
    pub meta: Option<String>,
    /// The seq of the message this one replies to (v1.1).
    pub reply_to: Option<u64>,
}

/// What `append` did: one outcome per message of the batch, in order (it derefs to them), and
/// whether it marked the conversation pending for push. SQLite marks only a conversation
/// where a member's device has an active push target (most have none, and the conversation
/// actor then skips the push read that would follow every commit); ScyllaDB, which would need
/// a read in the batch, marks whenever something was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub outcomes: Vec<AppendOutcome>,
    pub push_pending: bool,
}

impl std::ops::Deref for Appended {
    type Target = [AppendOutcome];
    fn deref(&self) -> &[AppendOutcome] {
        &self.outcomes
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    Stored {
        seq: u64,
    },
    /// The (device, client id) pair was already used for another message (another
    /// conversation or content): nothing stored; the client's id is at fault.
    Reused {
        conversation_id: String,
        seq: u64,
    },
    /// The (device, client id) pair was already stored: the original message's coordinates.
    Duplicate {
        conversation_id: String,
        seq: u64,
        message_id: String,
        ts: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub conversation_id: String,
    pub seq: u64,
    pub message_id: String,
    pub sender_id: String,
    pub sender_device_id: String,
    pub client_id: String,
    pub ts: i64,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    pub meta: Option<String>,
    pub deleted: bool,
    /// Who retracted it, for a tombstone.
    pub deleted_by: Option<String>,
    /// When the latest version replaced the one before (an edited message).
    pub edited_at: Option<i64>,
    pub reply_to: Option<u64>,
}

/// Which way a page of messages is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A cursor move. The store applies each as `max(old, new)`: cursors never move backwards.
#[derive(Debug, Clone, PartialEq)]
pub enum CursorUpdate {
    DeviceDelivered {
        device_id: String,
        conversation_id: String,
        seq: u64,
    },
    DeviceEvents {
        device_id: String,
        conversation_id: String,
        event_no: u64,
    },
    UserDelivered {
        user_id: String,
        conversation_id: String,
        seq: u64,
    },
    UserRead {
        user_id: String,
        conversation_id: String,
        seq: u64,
    },
    /// v1.1: the user's `kind` position moved to `seq` at `ts`: a receipt mark. The store
    /// keeps the latest `RECEIPT_MARKS_KEPT` marks per (conversation, user, kind).
    Mark {
        conversation_id: String,
        user_id: String,
        kind: ReceiptKind,
        seq: u64,
        ts: i64,
    },
}

/// Receipt marks kept per (conversation, user, kind): enough to time a member's recent
/// moves, bounded whatever the conversation's history.
pub const RECEIPT_MARKS_KEPT: usize = 32;

/// A receipt kind as the stores keep it.
pub fn receipt_kind_str(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Delivered => "delivered",
        ReceiptKind::Read => "read",
    }
}

/// One conversation as a device sees it when it connects or syncs.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConversation {
    pub conversation_id: String,
    pub last_seq: u64,
    pub delivered_seq: u64,
    pub read_seq: u64,
    pub event_cursor: u64,
    pub joined_seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    pub file_id: String,
    pub uploader_id: String,
    pub size: u64,
    pub content_type: String,
    pub sha256: String,
    pub created_at: i64,
    /// v1.1: set for a processed image (JPEG, PNG, WebP, GIF), `None` for any other file.
    pub image: Option<ImageMeta>,
}

/// v1.1: what processing an image recorded (`crate::media`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMeta {
    /// Of the stored copy, orientation applied.
    pub width: u32,
    pub height: u32,
    /// The thumbnail's blob and its type.
    pub thumb_sha256: String,
    pub thumb_content_type: String,
    /// ThumbHash, base64.
    pub placeholder: String,
}

/// A page of ids and the cursor of the next page (`None`: no more).
pub type Page = (Vec<String>, Option<String>);

/// v1.1: a resumable (tus) upload. Its bytes so far are on the disk of the node that took
/// them (`Blobs::partial_dir`); `file_id` is set once it completed into a file.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    pub upload_id: String,
    pub user_id: String,
    pub device_id: String,
    pub length: u64,
    pub content_type: String,
    /// The client's `Upload-Metadata` header, as sent (echoed on HEAD).
    pub metadata: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub file_id: Option<String>,
}
