//! Durable state behind one trait, so that SQLite (embedded) and ScyllaDB (clusters) are
//! interchangeable.
//!
//! The trait is shaped for a wide-column store: every call touches one partition (a
//! conversation, a device, a user) or a handful of them, there are no joins the caller relies
//! on, and no transaction spans partitions except where SQLite gives it for free. Appends are
//! conditional on `(conversation_id, seq)` being free, which is what keeps `seq` gapless and
//! unique when ownership of a conversation moves between nodes.

mod events;
mod push;
mod retention;
mod rows;
#[cfg(feature = "scylla")]
pub mod scylla;
pub mod sqlite;

pub use events::*;
pub use push::*;
pub use retention::*;
pub use rows::*;

use async_trait::async_trait;
use parley_protocol::{Attachment, ReceiptKind};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    NotFound,
    /// A uniqueness rule refused the write (username taken, `(conversation, seq)` taken).
    Conflict(String),
    /// The store cannot serve now (closed, busy); the caller may retry.
    Unavailable(String),
    Internal(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "not found"),
            StoreError::Conflict(m) => write!(f, "conflict: {m}"),
            StoreError::Unavailable(m) => write!(f, "unavailable: {m}"),
            StoreError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a client id was used for: a retry must carry the same conversation and content.
pub fn payload_hash(conversation_id: &str, m: &NewMessage) -> String {
    content_hash(
        conversation_id,
        m.text.as_deref(),
        m.meta.as_deref(),
        &m.attachments,
        m.reply_to,
    )
}

/// `payload_hash` from a message's parts (a stored message has them too).
pub fn content_hash(
    conversation_id: &str,
    text: Option<&str>,
    meta: Option<&str>,
    attachments: &[Attachment],
    reply_to: Option<u64>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [conversation_id, text.unwrap_or(""), meta.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for a in attachments {
        h.update(a.file_id.as_bytes());
        h.update([0]);
    }
    // Absent for messages that reply to nothing, so their hashes stay those of v1.
    if let Some(r) = reply_to {
        h.update(format!("reply_to:{r}").as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// What an edit's client id was used for: the message and the content asked for.
pub fn edit_hash(
    conversation_id: &str,
    seq: u64,
    text: Option<&str>,
    meta: Option<&str>,
) -> String {
    content_hash(
        &format!("edit:{conversation_id}:{seq}"),
        text,
        meta,
        &[],
        None,
    )
}

/// A message's attachments as stored (JSON). A value that does not parse (it never should:
/// the store wrote it) is logged, and the message is served without them.
pub fn parse_attachments(json: &str) -> Vec<Attachment> {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored attachments unreadable");
        Vec::new()
    })
}

/// The store `storage.url` names: embedded SQLite in the data directory when it is empty.
pub async fn open(
    cfg: &crate::config::Config,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> Result<std::sync::Arc<dyn Store>, String> {
    let url = cfg.storage.url.as_str();
    if url.is_empty() {
        let s = sqlite::SqliteStore::open(&cfg.data_dir, &cfg.storage, metrics.clone())?;
        return Ok(std::sync::Arc::new(s));
    }
    if url.starts_with("scylla://") {
        #[cfg(feature = "scylla")]
        {
            let s = scylla::ScyllaStore::connect(url, &cfg.storage).await?;
            tracing::info!(store = url, "connected to ScyllaDB");
            return Ok(std::sync::Arc::new(s));
        }
        #[cfg(not(feature = "scylla"))]
        return Err("this binary was built without the scylla feature".into());
    }
    Err(format!(
        "storage.url {url}: expected empty (SQLite) or scylla://host:port,.../keyspace"
    ))
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // -- users and devices
    /// `Conflict` if the username is taken.
    async fn create_user(&self, user: UserRow) -> StoreResult<()>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRow>>;
    async fn user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRow>>;
    /// Creates the device and starts its cursors at each conversation's current end, so that a
    /// new device is owed only what is sent after it exists.
    async fn create_device(&self, device: DeviceRow) -> StoreResult<()>;
    async fn device(&self, device_id: &str) -> StoreResult<Option<DeviceRow>>;
    /// Replaces the device's push target (enabled again); `NotFound` if there is no such
    /// device.
    async fn set_push_target(&self, device_id: &str, target: PushTargetRow) -> StoreResult<()>;
    /// Every device of the user, with its push target.
    async fn devices_of_user(&self, user_id: &str) -> StoreResult<Vec<DeviceRow>>;
    /// Deletes a device (v1.1 revoke, sign-out): its row, its cursors, its push target and
    /// its push jobs. `NotFound` if there is no such device.
    async fn delete_device(&self, device_id: &str) -> StoreResult<()>;
    /// Replaces the device's refresh-token hash with `new_hash` if the current one is
    /// `expected` (`None`: whatever it is). False if it was not (a reused refresh token) or
    /// there is no such device.
    async fn set_refresh_hash(
        &self,
        device_id: &str,
        expected: Option<String>,
        new_hash: String,
    ) -> StoreResult<bool>;
    /// Replaces the user's password hash; `NotFound` if there is no such user.
    async fn set_password_hash(&self, user_id: &str, hash: String) -> StoreResult<()>;
    /// Records when each device was last seen connected (an unknown device is skipped; SQLite
    /// keeps the later of the stored and the given time, ScyllaDB the last written, and the
    /// batches come in time order). One call per batch: sessions end by the thousand
    /// in a reconnect storm (`actors::last_seen`).
    async fn touch_devices(&self, seen: Vec<(String, i64)>) -> StoreResult<()>;
    /// Deletes the user's row and frees its username (v1.1 account deletion: the caller has
    /// already deleted its devices and memberships). Its messages stay, naming its id.
    async fn delete_user(&self, user_id: &str) -> StoreResult<()>;

    // -- conversations and members
    /// Creates a conversation with its founding members (joined at seq 0). With `direct_key`,
    /// returns the existing conversation's id if the pair has one.
    async fn create_conversation(
        &self,
        row: ConversationRow,
        members: Vec<(String, Role)>,
        direct_key: Option<String>,
    ) -> StoreResult<CreateOutcome>;
    async fn load_conversation(
        &self,
        conversation_id: &str,
    ) -> StoreResult<Option<ConversationState>>;
    /// One member's row, if `user_id` is a member.
    async fn member(&self, conversation_id: &str, user_id: &str) -> StoreResult<Option<MemberRow>>;
    /// Users who share at least one conversation with `user_id` (presence goes to them).
    async fn contacts_of_user(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// v1.1: `contacts_of_user` without the users across a block from `user_id` (blocked by
    /// it or blocking it): who sees its presence and whose presence it is told. Every
    /// connect and disconnect asks, so a backend that can answers in one read (SQLite); the
    /// default is the three reads it is made of.
    async fn presence_contacts(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let contacts = self.contacts_of_user(user_id).await?;
        let hidden = self.across_block(user_id).await?;
        Ok(contacts
            .into_iter()
            .filter(|c| !hidden.contains(c))
            .collect())
    }
    /// v1.1: the users `user_id` blocked and the users who blocked it: neither side gets
    /// the other's presence or typing. The one definition of "across a block".
    async fn across_block(&self, user_id: &str) -> StoreResult<std::collections::HashSet<String>> {
        let mut out: std::collections::HashSet<String> = self
            .blocks(user_id)
            .await?
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        out.extend(self.blocked_by(user_id).await?);
        Ok(out)
    }
    /// Adds members who receive messages after `joined_seq`, with cursors for their devices
    /// (a member already there is left as is).
    async fn add_members(
        &self,
        conversation_id: &str,
        user_ids: Vec<String>,
        joined_seq: u64,
    ) -> StoreResult<()>;
    /// `NotFound` if `user_id` is not a member.
    async fn remove_member(&self, conversation_id: &str, user_id: &str) -> StoreResult<()>;
    /// Sets a conversation's title and avatar (v1.1; both as given, `None` clears). The avatar
    /// file becomes readable by the members (a grant at seq 0), the previous one's grant goes.
    async fn update_conversation(
        &self,
        conversation_id: &str,
        title: Option<String>,
        avatar: Option<String>,
    ) -> StoreResult<()>;
    /// Sets a member's role; `NotFound` if `user_id` is not a member.
    async fn set_role(&self, conversation_id: &str, user_id: &str, role: Role) -> StoreResult<()>;
    /// The direct conversation of the pair `direct_key` ("a:b", sorted), if it has one.
    async fn direct_conversation(&self, direct_key: &str) -> StoreResult<Option<String>>;
    /// The device's delivered cursor in one conversation (`None`: it has none there).
    async fn device_cursor(
        &self,
        device_id: &str,
        conversation_id: &str,
    ) -> StoreResult<Option<u64>>;
    /// Every conversation of the device's user, with this device's cursors.
    async fn device_conversations(
        &self,
        device_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<DeviceConversation>>;

    // -- messages
    /// Appends `messages` at `first_seq`, `first_seq + 1`, ... skipping any whose
    /// (sender_device_id, client_id) is already stored (those return `Duplicate` and consume
    /// no seq). Atomic: all stored or none. `Conflict` if a seq is taken. The messages are
    /// shared, not copied: the conversation actor fans the same batch out after the commit.
    async fn append(
        &self,
        conversation_id: &str,
        first_seq: u64,
        messages: std::sync::Arc<[NewMessage]>,
    ) -> StoreResult<Appended>;
    /// Messages with `after < seq < before`, in `order`, at most `limit`.
    async fn messages(
        &self,
        conversation_id: &str,
        after: u64,
        before: u64,
        limit: u32,
        order: Order,
    ) -> StoreResult<Vec<StoredMessage>>;
    async fn message(&self, conversation_id: &str, seq: u64) -> StoreResult<Option<StoredMessage>>;
    /// Distinct senders of messages with `after < seq <= upto`.
    async fn senders_between(
        &self,
        conversation_id: &str,
        after: u64,
        upto: u64,
    ) -> StoreResult<Vec<String>>;
    /// Count of messages after `after` not sent by `user_id` and not retracted.
    async fn count_unread(
        &self,
        conversation_id: &str,
        user_id: &str,
        after: u64,
    ) -> StoreResult<u64>;

    // -- the event log: retraction, hiding, edits, reactions
    /// Purges the message's text, attachments and meta (a tombstone keeps its seq), its
    /// earlier versions, its reactions and the content of its edit events, drops the file
    /// grants it carried, and logs the retraction as `event_no`.
    async fn retract(&self, r: MessageEvent) -> StoreResult<()>;
    /// Hides the message for one user and logs the hide as `event_no`.
    async fn hide(&self, r: MessageEvent) -> StoreResult<()>;
    /// Applies an edit (`kind` is `Edit`): keeps the current text and meta as an earlier
    /// version, stores `content` with `edited_at = ts`, logs the event, and records `key` so
    /// that a retry is a duplicate. All or nothing.
    async fn edit(
        &self,
        e: MessageEvent,
        content: EditContent,
        key: IdemKey,
    ) -> StoreResult<EditOutcome>;
    /// Earlier versions of a message, oldest first.
    async fn message_versions(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> StoreResult<Vec<MessageVersion>>;
    /// Adds or removes `by_user`'s reaction (`kind` is `React`) and logs it, if it changes
    /// anything; returns whether it did.
    async fn react(&self, e: MessageEvent) -> StoreResult<bool>;
    /// The reactions to each of `seqs`, as `viewer` sees them (emojis by count).
    async fn reactions(
        &self,
        conversation_id: &str,
        seqs: &[u64],
        viewer: &str,
    ) -> StoreResult<Vec<(u64, Vec<ReactionCount>)>>;
    /// Events after `after_event` that concern `user_id` (everyone's, and the user's own
    /// hides), at most `limit`.
    async fn events_since(
        &self,
        conversation_id: &str,
        user_id: &str,
        after_event: u64,
        limit: u32,
    ) -> StoreResult<Vec<MessageEvent>>;
    /// Seqs in `after < seq < before` hidden for the user.
    async fn hidden_seqs(
        &self,
        user_id: &str,
        conversation_id: &str,
        after: u64,
        before: u64,
    ) -> StoreResult<Vec<u64>>;
    /// `messages`, with the seqs among them `viewer` hid and the reactions to the others: a
    /// sync page is mostly this, for thousands of devices at once in a reconnect storm, and a
    /// store may answer it in one read (SQLite does). The default makes the three calls.
    async fn page_parts(
        &self,
        conversation_id: &str,
        viewer: &str,
        after: u64,
        before: u64,
        limit: u32,
        order: Order,
    ) -> StoreResult<PageParts> {
        let messages = self
            .messages(conversation_id, after, before, limit, order)
            .await?;
        let Some((lo, hi)) = PageParts::span(&messages) else {
            return Ok(PageParts::default());
        };
        let hidden = self
            .hidden_seqs(viewer, conversation_id, lo - 1, hi + 1)
            .await?;
        let shown = PageParts::shown(&messages, &hidden);
        let reactions = match shown.is_empty() {
            true => Vec::new(),
            false => self.reactions(conversation_id, &shown, viewer).await?,
        };
        Ok(PageParts {
            messages,
            hidden,
            reactions,
        })
    }

    // -- cursors and idempotency
    async fn advance_cursors(&self, updates: Vec<CursorUpdate>) -> StoreResult<()>;
    /// For each of `user_ids`, the time of its first kept `kind` mark at or above `seq` (the
    /// moment its cursor passed `seq`, or an upper bound of it when older marks were dropped;
    /// `None`: no such mark), in the order asked.
    async fn receipt_times(
        &self,
        conversation_id: &str,
        kind: ReceiptKind,
        seq: u64,
        user_ids: Vec<String>,
    ) -> StoreResult<Vec<(String, Option<i64>)>>;
    /// Drops idempotency keys stamped before `before_ts` (the clock less the TTL); returns how
    /// many. SQLite drops them as a prefix in the order they were written, so a key can
    /// outlive its TTL a little when one written before it is stamped later.
    async fn expire_idempotency(&self, before_ts: i64) -> StoreResult<u64>;
    /// True when idempotency keys expire by themselves (a TTL) after
    /// `storage.idempotency_ttl_secs`, and `expire_idempotency` has nothing to do.
    fn idempotency_expires_by_ttl(&self) -> bool {
        false
    }

    // -- files
    async fn create_file(&self, file: FileRow) -> StoreResult<()>;
    async fn file(&self, file_id: &str) -> StoreResult<Option<FileRow>>;
    /// The uploader, or a member of a conversation the file was sent in.
    async fn file_visible_to(&self, file_id: &str, user_id: &str) -> StoreResult<bool>;
    /// Files (of a purged message) that no grant and no other file row uses any more: their
    /// blobs may be unlinked. Removes those file rows.
    async fn orphaned_blobs(&self, file_ids: Vec<String>) -> StoreResult<Vec<String>>;
    /// v1.1: the bytes of every file row `user_id` uploaded (the storage quota).
    async fn user_file_bytes(&self, user_id: &str) -> StoreResult<u64>;
    /// v1.1: one page of the walk over files for the unattached-file sweep: ids of files
    /// created before `before_ts` (a backend may leave out ones it knows are granted), and
    /// the cursor to pass as `after` next (`None`: the walk is over).
    async fn old_files(&self, before_ts: i64, after: &str, limit: u32) -> StoreResult<Page>;

    // -- v1.1: resumable uploads
    async fn create_upload(&self, upload: UploadRow) -> StoreResult<()>;
    async fn upload(&self, upload_id: &str) -> StoreResult<Option<UploadRow>>;
    /// Records the file a completed upload became.
    async fn complete_upload(&self, upload_id: &str, file_id: &str) -> StoreResult<()>;
    async fn delete_upload(&self, upload_id: &str) -> StoreResult<()>;
    /// Up to `limit` uploads whose `expires_at` is before `now_ms`.
    async fn expired_uploads(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<UploadRow>>;
    /// v1.1: whether a file row uses the blob (as its content or as a thumbnail), so that an
    /// upload whose original bytes were replaced by a stripped copy may unlink them.
    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool>;

    // -- push notifications (the flow is in `crate::push`)
    /// Devices of the conversation's members with an active push target, and their cursors.
    async fn push_recipients(&self, conversation_id: &str) -> StoreResult<Vec<PushRecipient>>;
    /// Conversations `append` marked as having messages not yet scheduled for push, and the
    /// seq they were marked up to (a store may mark only conversations where someone can be
    /// notified: `Appended::push_pending`).
    async fn push_pending(&self, limit: u32) -> StoreResult<Vec<(String, u64)>>;
    /// Creates message jobs, collapsing each into the device's pending job for the
    /// conversation (newer seq, version bumped, the earlier due time kept), then clears the
    /// conversation's pending mark if it is still at or below `upto_seq`.
    async fn push_schedule(
        &self,
        conversation_id: &str,
        upto_seq: u64,
        jobs: Vec<PushSchedule>,
    ) -> StoreResult<()>;
    /// The user read the conversation up to `read_seq` on `reader`: each other device that
    /// was notified of a message at or below it gets a `clear` job.
    async fn push_clear(
        &self,
        user_id: &str,
        conversation_id: &str,
        read_seq: u64,
        reader: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Leases up to `limit` due jobs whose lease is free (or expired) to `owner` until
    /// `until`: no other bridge gets them while the lease holds.
    async fn push_lease(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: u32,
    ) -> StoreResult<Vec<PushJob>>;
    /// Ends a leased job: removed if its version is unchanged (else only its lease is freed,
    /// and the newer content goes out next); a delivered message is recorded as shown on
    /// the device, a delivered clear removes that record.
    async fn push_done(&self, job: &PushJob, how: PushDone) -> StoreResult<()>;
    /// Frees the lease and schedules another attempt at `due_at`.
    async fn push_retry(&self, job: &PushJob, due_at: i64, error: &str) -> StoreResult<()>;
    /// Jobs in the outbox, and when the oldest was created.
    async fn push_queue(&self) -> StoreResult<(u64, Option<i64>)>;
    /// Marks a device's target dead for `reason`, unless it was registered again at or after
    /// `registered_before`; returns whether it did. Its jobs are dropped.
    async fn disable_push_target(
        &self,
        device_id: &str,
        reason: &str,
        at: i64,
        registered_before: Option<i64>,
    ) -> StoreResult<bool>;
    async fn set_muted_until(
        &self,
        user_id: &str,
        conversation_id: &str,
        until: i64,
    ) -> StoreResult<()>;
    /// Applies a change of the user's settings of a conversation (v1.1).
    async fn update_settings(
        &self,
        user_id: &str,
        conversation_id: &str,
        patch: SettingsPatch,
    ) -> StoreResult<()>;
    /// The user's settings of every conversation it ever changed one of, by conversation id.
    async fn conversation_settings(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<(String, ConvSettings)>>;
    /// 0 when never muted.
    async fn muted_until(&self, user_id: &str, conversation_id: &str) -> StoreResult<i64>;
    /// Unread messages over all the user's conversations (the badge), from its read cursors.
    async fn unread_total(&self, user_id: &str) -> StoreResult<u64>;

    // -- retention (`retention.rs`)
    async fn retention(&self, conversation_id: &str) -> StoreResult<Retention>;
    /// Sets the conversation's own period (`None`: back to the deployment's default).
    async fn set_retention(&self, conversation_id: &str, secs: Option<u64>) -> StoreResult<()>;
    /// Purges the oldest messages sent before `before_ts`, at most `limit`, from the lowest
    /// seq up (stopping at the first newer one): their rows, file grants, earlier versions,
    /// reactions and the content of their events. All or nothing.
    async fn expire(
        &self,
        conversation_id: &str,
        before_ts: i64,
        limit: u32,
    ) -> StoreResult<Expired>;
    /// Every device of every member, with its cursor in the conversation.
    async fn member_devices(&self, conversation_id: &str) -> StoreResult<Vec<MemberDevice>>;
    /// Records what senders are told, merging into each (sender, conversation, device) row:
    /// its range widens and its count adds up.
    async fn add_undeliverable(&self, rows: Vec<Undeliverable>) -> StoreResult<()>;
    /// What the user was told and has not cleared, by conversation and device.
    async fn undeliverable(&self, user_id: &str) -> StoreResult<Vec<Undeliverable>>;
    /// Clears the user's rows recorded at or before `upto_ts`; returns how many.
    async fn clear_undeliverable(&self, user_id: &str, upto_ts: i64) -> StoreResult<u64>;
    /// Conversation ids after `after` in the store's own order, at most `limit`: every
    /// conversation is visited by paging from "" until a short page.
    async fn conversation_ids(&self, after: &str, limit: u32) -> StoreResult<Vec<String>>;
    // -- blocking (v1.1)
    /// `user_id` blocks `blocked_id` (again: keeps the first time).
    async fn block(&self, user_id: &str, blocked_id: &str, at: i64) -> StoreResult<()>;
    /// Returns whether there was such a block.
    async fn unblock(&self, user_id: &str, blocked_id: &str) -> StoreResult<bool>;
    /// The users `user_id` blocked, with when, by user id.
    async fn blocks(&self, user_id: &str) -> StoreResult<Vec<(String, i64)>>;
    /// The users who blocked `user_id`.
    async fn blocked_by(&self, user_id: &str) -> StoreResult<Vec<String>>;

    // -- operations
    /// A tiny write that proves the write path works (readiness).
    async fn check_writable(&self) -> StoreResult<()>;
    /// Finishes queued writes and closes. Later calls fail with `Unavailable`.
    async fn close(&self);
}
