//! A conversation's event log: what happened to its messages after they were stored
//! (retracted, hidden for one user, edited, reacted to). Devices that already hold a message
//! learn of its events live or, through `sync`, from this log after their event cursor; the
//! conversation actor numbers the events (`event_no`), as it numbers messages.

use super::StoredMessage;
use parley_protocol::DeleteScope;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub conversation_id: String,
    pub event_no: u64,
    pub seq: u64,
    pub kind: EventKind,
    pub by_user: String,
    /// Set for an event only one user sees (a hide).
    pub for_user: Option<String>,
    pub ts: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// For everyone: the content is purged.
    Retract,
    /// For `for_user` only.
    Hide,
    /// The message was edited. The event does not carry the content: whoever replays it
    /// reads the message's latest version, so a later retraction purges one place only.
    Edit,
    React {
        emoji: String,
        added: bool,
    },
    /// A kind this release does not know (written by a newer one): skipped.
    Other,
}

/// What a reaction event stores besides its kind (the `data` column).
#[derive(Serialize, Deserialize)]
struct ReactData {
    emoji: String,
    added: bool,
}

impl EventKind {
    /// The name in the store's `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Retract => "retract",
            EventKind::Hide => "hide",
            EventKind::Edit => "edit",
            EventKind::React { .. } => "react",
            EventKind::Other => "other",
        }
    }

    /// The `scope` column, set for retractions and hides (rows written before edits and
    /// reactions existed have only it).
    pub fn scope(&self) -> Option<&'static str> {
        match self {
            EventKind::Retract => Some(DeleteScope::Everyone.as_str()),
            EventKind::Hide => Some(DeleteScope::Me.as_str()),
            _ => None,
        }
    }

    /// The `data` column.
    pub fn data(&self) -> Option<String> {
        match self {
            EventKind::React { emoji, added } => serde_json::to_string(&ReactData {
                emoji: emoji.clone(),
                added: *added,
            })
            .ok(),
            _ => None,
        }
    }

    /// Back from the columns.
    pub fn parse(kind: Option<&str>, scope: Option<&str>, data: Option<&str>) -> EventKind {
        match (kind, scope) {
            (Some("retract"), _) | (None, Some("everyone")) => EventKind::Retract,
            (Some("hide"), _) | (None, Some("me")) => EventKind::Hide,
            (Some("edit"), _) => EventKind::Edit,
            (Some("react"), _) => data
                .and_then(|d| serde_json::from_str::<ReactData>(d).ok())
                .map(|d| EventKind::React {
                    emoji: d.emoji,
                    added: d.added,
                })
                .unwrap_or(EventKind::Other),
            _ => EventKind::Other,
        }
    }
}

/// The new content of an edited message (the meta object as JSON text).
#[derive(Debug, Clone, PartialEq)]
pub struct EditContent {
    pub text: Option<String>,
    pub meta: Option<String>,
}

/// A client's idempotency key for an operation other than a send, with the hash of what it
/// asked for: a retry is a duplicate, the same key for something else is `Reused`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdemKey {
    pub device_id: String,
    pub client_id: String,
    pub payload_hash: String,
}

/// An earlier version of an edited message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageVersion {
    pub text: Option<String>,
    pub meta: Option<String>,
    /// When it was replaced by the next version.
    pub replaced_at: i64,
}

/// How many users reacted to a message with one emoji, and whether the viewer did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: u32,
    pub me: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EditOutcome {
    Applied,
    /// This edit (the same client id and content) was applied before, at `ts`.
    Duplicate {
        ts: i64,
    },
    /// The client id was used for something else.
    Reused,
    /// No such message, or it was retracted.
    Gone,
}

/// What a page of a conversation needs to be shown to one member (`Store::page_parts`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageParts {
    /// As `Store::messages` returns them.
    pub messages: Vec<StoredMessage>,
    /// Which of their seqs the viewer hid.
    pub hidden: Vec<u64>,
    /// The reactions to the messages that are neither retracted nor hidden.
    pub reactions: Vec<(u64, Vec<ReactionCount>)>,
}

impl PageParts {
    /// The lowest and highest seq of `messages`: the range whose hides are read.
    pub fn span(messages: &[StoredMessage]) -> Option<(u64, u64)> {
        let lo = messages.iter().map(|m| m.seq).min()?;
        Some((lo, messages.iter().map(|m| m.seq).max()?))
    }

    /// The seqs whose reactions are read: neither retracted nor hidden.
    pub fn shown(messages: &[StoredMessage], hidden: &[u64]) -> Vec<u64> {
        messages
            .iter()
            .filter(|m| !m.deleted && !hidden.contains(&m.seq))
            .map(|m| m.seq)
            .collect()
    }
}
