//! What one node hands to the sessions of every other node after it acted: committed
//! messages, finished frames, membership events.
//!
//! It exists so that fan-out has one shape on every node: the owner of a conversation hands
//! a `Broadcast` to its own sessions and, in a cluster, to the other nodes, which hand it to
//! theirs through the same code (`actors::hub`). Like `ops`, it is postcard-encoded on the
//! bus: no `skip_serializing_if`.

use crate::storage::NewMessage;
use parley_protocol::{Conversation, ConversationEvent};
use serde::{Deserialize, Serialize};

/// Which of a user's devices a frame is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Devices {
    All,
    /// Every device but this one (the one that caused the frame already knows).
    Except(String),
    /// Only this one (an `error` for a fire-and-forget request).
    Only(String),
}

impl Devices {
    pub fn includes(&self, device_id: &str) -> bool {
        match self {
            Devices::All => true,
            Devices::Except(d) => d != device_id,
            Devices::Only(d) => d == device_id,
        }
    }
}

/// One committed message: its seq, what was stored, and the quote of the message it replies
/// to as it was at the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    pub seq: u64,
    pub message: NewMessage,
    pub quote: Option<QuoteInfo>,
}

/// `parley_protocol::Quote` in a form postcard can carry (no skipped fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteInfo {
    pub seq: u64,
    pub sender_id: String,
    pub text: Option<String>,
    pub attachments: u32,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Broadcast {
    /// The messages of one commit batch, for every device of `members` (the sending device
    /// gets its ack instead; the sender's other devices get the frame with `client_id`).
    Messages {
        conversation_id: String,
        members: Vec<String>,
        messages: Vec<Committed>,
    },
    /// A finished client frame (receipt, typing, presence, deleted, error).
    Frame {
        users: Vec<String>,
        devices: Devices,
        frame: String,
    },
    /// A membership change, for the sessions of `users` (members, and anyone just removed).
    Conversation {
        users: Vec<String>,
        event: ConversationEvent,
        conversation: Conversation,
    },
    /// An event of the conversation's log (retraction, hide, edit, reaction) as its finished
    /// frame, with the coordinates a session needs to keep its event position.
    Event {
        users: Vec<String>,
        devices: Devices,
        event: EventRef,
        frame: String,
    },
    /// v1.1: these devices of `user_id` were revoked (signed out, or the account deleted):
    /// every node forgets them in its token check and closes their sessions with 4401.
    Revoked {
        user_id: String,
        devices: Vec<String>,
    },
}

/// Where an event sits: in its conversation's log (`event_no`) and on which message (`seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub conversation_id: String,
    pub event_no: u64,
    pub seq: u64,
}
