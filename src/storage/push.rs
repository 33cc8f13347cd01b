//! The rows of push notifications: targets' state, the outbox's jobs, and what a device was
//! last notified of. The flow is in `crate::push`; these are only the shapes the store keeps.

/// A device that may be owed a push in a conversation: it has an active push target.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecipient {
    pub device_id: String,
    pub user_id: String,
    /// The device's cursor in the conversation: what it already holds.
    pub delivered_seq: u64,
}

/// A message job to create, or to collapse into the device's pending one.
#[derive(Debug, Clone, PartialEq)]
pub struct PushSchedule {
    pub device_id: String,
    pub user_id: String,
    /// The newest message it stands for.
    pub seq: u64,
    /// Not before (now + the confirmation delay).
    pub due_at: i64,
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    Message,
    Clear,
}

impl PushKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Message => "message",
            PushKind::Clear => "clear",
        }
    }
    pub fn parse(s: &str) -> PushKind {
        if s == "clear" {
            PushKind::Clear
        } else {
            PushKind::Message
        }
    }
}

/// A leased job.
#[derive(Debug, Clone, PartialEq)]
pub struct PushJob {
    pub device_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub kind: PushKind,
    pub seq: u64,
    /// Bumped whenever the job changes; completing a job completes only this version.
    pub version: u64,
    pub created_at: i64,
    pub attempts: u32,
}

/// How a leased job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushDone {
    /// The provider accepted it: the device now shows the message (or, for a clear, nothing).
    Delivered,
    /// Nothing had to be sent (the device already held it, or the user had read it).
    Skipped,
    /// Given up (its TTL passed, a provider rejected it, the target is dead).
    Dropped,
}

/// A user's own settings of one conversation (v1.1), the same on all of its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvSettings {
    /// Alerts are suppressed until then (ms; 0: not muted).
    pub muted_until: i64,
    pub archived: bool,
    /// When it was pinned (ms; 0: not pinned).
    pub pinned_at: i64,
}

/// A change of settings: `None` keeps what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsPatch {
    pub muted_until: Option<i64>,
    pub archived: Option<bool>,
    pub pinned_at: Option<i64>,
}
