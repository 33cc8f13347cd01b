//! Retention: how long a conversation keeps its messages, how far they have been purged, and
//! what senders are told about messages that expired before a device of a recipient got them.
//!
//! Purging goes from the oldest message up, so what is gone is always a prefix of the
//! conversation: every seq up to `expired_through`. Seqs stay gapless above it, and the
//! conversation's last seq never goes below it, even when every message expired.

/// A conversation's retention as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    /// The conversation's own period; `None`: the deployment's default.
    pub secs: Option<u64>,
    /// Every seq up to this one has been purged.
    pub expired_through: u64,
}

/// What one purge step removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expired {
    /// The new `expired_through` (unchanged when nothing was purged).
    pub through: u64,
    /// The purged messages, ascending: (seq, sender, sent at).
    pub messages: Vec<(u64, String, i64)>,
    /// The files those messages carried (their blobs may now be orphaned).
    pub file_ids: Vec<String>,
}

/// One device of a member, and how far it holds the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDevice {
    pub device_id: String,
    pub user_id: String,
    pub created_at: i64,
    pub delivered_seq: u64,
}

/// Messages of `user_id` (the sender told) in `from_seq..=to_seq` of a conversation that
/// expired before `device_id` of `recipient_id` received them; `lost` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Undeliverable {
    pub user_id: String,
    pub conversation_id: String,
    pub device_id: String,
    pub recipient_id: String,
    pub from_seq: u64,
    pub to_seq: u64,
    pub lost: u64,
    pub ts: i64,
}
