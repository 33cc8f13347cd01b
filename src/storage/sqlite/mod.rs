//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to one dedicated writer thread (`writer`) that owns the only write connection and
//! does group commit; an ack therefore never leaves before its commit has returned. Reads run
//! on a fixed pool of reader threads (`readers`) with their own connections; WAL lets them
//! proceed while the writer commits. The SQL itself is in one file per entity (`users`,
//! `conversations`, `messages`, `events`, `cursors`, `files`) as plain functions of a
//! connection; `conn` opens connections and maps SQLite's errors; this file only routes each
//! `Store` method to the writer or a reader.

mod conn;
mod conversations;
mod cursors;
mod events;
mod files;
mod messages;
mod migrate;
mod pcache;
mod push;
mod readers;
mod receipts;
mod retention;
mod rows;
mod uploads;
mod users;
mod writer;

pub use migrate::migrate_dir;

use super::*;
use crate::config::{Durability, StorageConfig};
use crate::metrics::Metrics;
use conn::{exec_cached, internal, is_unique_violation, open, sql};
use readers::ReadPool;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use writer::Cmd;

pub struct SqliteStore {
    checkpoints: Arc<writer::Checkpoints>,
    /// Unbounded on purpose (ARCHITECTURE.md, invariant 7): a bounded tokio channel hands send
    /// permits to queued futures, which may sit unpolled. The depth is bounded upstream: one
    /// append in flight per conversation actor, and rate-limited cursor moves.
    writer: mpsc::UnboundedSender<Cmd>,
    readers: ReadPool,
    /// `storage.idempotency_ttl_secs`: a key stamped more than this ahead of the clock is an
    /// error of the clock, and does not hold up expiry (`cursors::expire_idempotency`).
    idempotency_ttl_ms: i64,
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/parley.db`, applies migrations and starts the writer,
    /// the checkpointer and the readers.
    pub fn open(
        dir: &Path,
        cfg: &StorageConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SqliteStore, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
        let path = dir.join("parley.db");
        let conn = open(&path, cfg.cache_kib, false)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let sync = match cfg.durability {
            Durability::Fsync => "FULL",
            Durability::Os => "NORMAL",
        };
        migrate::migrate(&conn).map_err(|e| format!("migrate: {e}"))?;
        // secure_delete: a retraction overwrites the purged content's bytes instead of leaving
        // them in free space. journal_size_limit: 1 GiB, far above what a steady load leaves
        // in the WAL between rewinds, so that commits reuse the file in place; the checkpoint
        // thread empties it once commits stop (writer.rs says why).
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync}; PRAGMA secure_delete = ON;
             PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 1073741824;
             PRAGMA temp_store = MEMORY;"
        ))
        .map_err(|e| format!("pragmas: {e}"))?;
        let checkpoints = writer::start_checkpoints(&path)?;
        let tx = writer::start(conn, cfg.max_batch, metrics, checkpoints.clone())?;
        Ok(SqliteStore {
            checkpoints,
            writer: tx,
            readers: ReadPool::start(&path, cfg.readers)?,
            idempotency_ttl_ms: i64::try_from(cfg.idempotency_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        })
    }

    /// Runs `f` in the next group commit; resolves once that commit has returned.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel::<StoreResult<T>>();
        self.writer
            .send(Cmd::Job(writer::job(f, otx)))
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        orx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    /// Runs `f` on one of the reader threads.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.readers.run(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, u: UserRow) -> StoreResult<()> {
        self.write(move |c| users::create_user(c, &u)).await
    }
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRow>> {
        let username = username.to_string();
        self.read(move |c| users::user_by_name(c, &username)).await
    }
    async fn user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRow>> {
        let id = user_id.to_string();
        self.read(move |c| users::user_by_id(c, &id)).await
    }
    async fn create_device(&self, d: DeviceRow) -> StoreResult<()> {
        self.write(move |c| users::create_device(c, &d)).await
    }
    async fn device(&self, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        let id = device_id.to_string();
        self.read(move |c| users::device(c, &id)).await
    }
    async fn set_push_target(&self, device_id: &str, t: PushTargetRow) -> StoreResult<()> {
        let id = device_id.to_string();
        self.write(move |c| users::set_push_target(c, &id, &t))
            .await
    }
    async fn devices_of_user(&self, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
        let u = user_id.to_string();
        self.read(move |c| users::devices_of_user(c, &u)).await
    }
    async fn delete_device(&self, device_id: &str) -> StoreResult<()> {
        let id = device_id.to_string();
        self.write(move |c| users::delete_device(c, &id)).await
    }
    async fn set_refresh_hash(
        &self,
        device_id: &str,
        expected: Option<String>,
        new_hash: String,
    ) -> StoreResult<bool> {
        let id = device_id.to_string();
        self.write(move |c| users::set_refresh_hash(c, &id, expected.as_deref(), &new_hash))
            .await
    }
    async fn set_password_hash(&self, user_id: &str, hash: String) -> StoreResult<()> {
        let id = user_id.to_string();
        self.write(move |c| users::set_password_hash(c, &id, &hash))
            .await
    }
    async fn touch_devices(&self, seen: Vec<(String, i64)>) -> StoreResult<()> {
        self.write(move |c| users::touch_devices(c, &seen)).await
    }
    async fn delete_user(&self, user_id: &str) -> StoreResult<()> {
        let id = user_id.to_string();
        self.write(move |c| users::delete_user(c, &id)).await
    }

    async fn create_conversation(
        &self,
        row: ConversationRow,
        members: Vec<(String, Role)>,
        direct_key: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        self.write(move |c| conversations::create(c, &row, &members, direct_key.as_deref()))
            .await
    }
    async fn load_conversation(&self, id: &str) -> StoreResult<Option<ConversationState>> {
        let id = id.to_string();
        self.read(move |c| conversations::load(c, &id)).await
    }
    async fn member(&self, conversation_id: &str, user_id: &str) -> StoreResult<Option<MemberRow>> {
        let (id, u) = (conversation_id.to_string(), user_id.to_string());
        self.read(move |c| conversations::member(c, &id, &u)).await
    }
    async fn contacts_of_user(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let u = user_id.to_string();
        self.read(move |c| conversations::contacts_of_user(c, &u))
            .await
    }
    async fn presence_contacts(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let u = user_id.to_string();
        self.read(move |c| conversations::presence_contacts(c, &u))
            .await
    }
    async fn add_members(&self, id: &str, user_ids: Vec<String>, joined: u64) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| conversations::add_members(c, &id, &user_ids, joined))
            .await
    }
    async fn remove_member(&self, id: &str, user_id: &str) -> StoreResult<()> {
        let (id, u) = (id.to_string(), user_id.to_string());
        self.write(move |c| conversations::remove_member(c, &id, &u))
            .await
    }
    async fn update_conversation(
        &self,
        id: &str,
        title: Option<String>,
        avatar: Option<String>,
    ) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| conversations::update(c, &id, title.as_deref(), avatar.as_deref()))
            .await
    }
    async fn set_role(&self, id: &str, user_id: &str, role: Role) -> StoreResult<()> {
        let (id, u) = (id.to_string(), user_id.to_string());
        self.write(move |c| conversations::set_role(c, &id, &u, role))
            .await
    }
    async fn direct_conversation(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_string();
        self.read(move |c| conversations::direct(c, &key)).await
    }
    async fn device_cursor(&self, device_id: &str, id: &str) -> StoreResult<Option<u64>> {
        let (d, id) = (device_id.to_string(), id.to_string());
        self.read(move |c| conversations::device_cursor(c, &d, &id))
            .await
    }
    async fn device_conversations(
        &self,
        device_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<DeviceConversation>> {
        let (d, u) = (device_id.to_string(), user_id.to_string());
        self.read(move |c| conversations::of_device(c, &d, &u))
            .await
    }

    async fn append(
        &self,
        conversation_id: &str,
        first_seq: u64,
        batch: Arc<[NewMessage]>,
    ) -> StoreResult<Appended> {
        let id = conversation_id.to_string();
        self.write(move |c| messages::append(c, &id, first_seq, &batch))
            .await
    }
    async fn messages(
        &self,
        conversation_id: &str,
        after: u64,
        before: u64,
        limit: u32,
        order: Order,
    ) -> StoreResult<Vec<StoredMessage>> {
        let id = conversation_id.to_string();
        self.read(move |c| messages::page(c, &id, after, before, limit, order))
            .await
    }
    async fn message(&self, conversation_id: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        let id = conversation_id.to_string();
        self.read(move |c| messages::one(c, &id, seq)).await
    }
    async fn senders_between(&self, id: &str, after: u64, upto: u64) -> StoreResult<Vec<String>> {
        let id = id.to_string();
        self.read(move |c| messages::senders_between(c, &id, after, upto))
            .await
    }
    async fn count_unread(&self, id: &str, user_id: &str, after: u64) -> StoreResult<u64> {
        let (id, u) = (id.to_string(), user_id.to_string());
        self.read(move |c| messages::count_unread(c, &id, &u, after))
            .await
    }

    async fn retract(&self, r: MessageEvent) -> StoreResult<()> {
        self.write(move |c| events::retract(c, &r)).await
    }
    async fn hide(&self, r: MessageEvent) -> StoreResult<()> {
        self.write(move |c| events::hide(c, &r)).await
    }
    async fn edit(
        &self,
        e: MessageEvent,
        content: EditContent,
        key: IdemKey,
    ) -> StoreResult<EditOutcome> {
        self.write(move |c| events::edit(c, &e, &content, &key))
            .await
    }
    async fn message_versions(
        &self,
        conversation_id: &str,
        seq: u64,
    ) -> StoreResult<Vec<MessageVersion>> {
        let id = conversation_id.to_string();
        self.read(move |c| events::versions(c, &id, seq)).await
    }
    async fn react(&self, e: MessageEvent) -> StoreResult<bool> {
        self.write(move |c| events::react(c, &e)).await
    }
    async fn reactions(
        &self,
        conversation_id: &str,
        seqs: &[u64],
        viewer: &str,
    ) -> StoreResult<Vec<(u64, Vec<ReactionCount>)>> {
        let (id, seqs, v) = (
            conversation_id.to_string(),
            seqs.to_vec(),
            viewer.to_string(),
        );
        self.read(move |c| events::reactions(c, &id, &seqs, &v))
            .await
    }
    async fn events_since(
        &self,
        conversation_id: &str,
        user_id: &str,
        after_event: u64,
        limit: u32,
    ) -> StoreResult<Vec<MessageEvent>> {
        let (id, u) = (conversation_id.to_string(), user_id.to_string());
        self.read(move |c| events::since(c, &id, &u, after_event, limit))
            .await
    }
    async fn hidden_seqs(
        &self,
        user_id: &str,
        conversation_id: &str,
        after: u64,
        before: u64,
    ) -> StoreResult<Vec<u64>> {
        let (u, id) = (user_id.to_string(), conversation_id.to_string());
        self.read(move |c| events::hidden_seqs(c, &u, &id, after, before))
            .await
    }
    async fn page_parts(
        &self,
        conversation_id: &str,
        viewer: &str,
        after: u64,
        before: u64,
        limit: u32,
        order: Order,
    ) -> StoreResult<PageParts> {
        let (id, v) = (conversation_id.to_string(), viewer.to_string());
        self.read(move |c| events::page_parts(c, &id, &v, (after, before), limit, order))
            .await
    }

    async fn advance_cursors(&self, updates: Vec<CursorUpdate>) -> StoreResult<()> {
        self.write(move |c| cursors::advance(c, &updates)).await
    }
    async fn receipt_times(
        &self,
        conversation_id: &str,
        kind: parley_protocol::ReceiptKind,
        seq: u64,
        user_ids: Vec<String>,
    ) -> StoreResult<Vec<(String, Option<i64>)>> {
        let id = conversation_id.to_string();
        self.read(move |c| receipts::times(c, &id, kind, seq, &user_ids))
            .await
    }
    async fn expire_idempotency(&self, before_ts: i64) -> StoreResult<u64> {
        let horizon_ts = cursors::expiry_horizon(before_ts, self.idempotency_ttl_ms);
        self.write(move |c| cursors::expire_idempotency(c, before_ts, horizon_ts))
            .await
    }

    async fn create_file(&self, f: FileRow) -> StoreResult<()> {
        self.write(move |c| files::create(c, &f)).await
    }
    async fn file(&self, file_id: &str) -> StoreResult<Option<FileRow>> {
        let id = file_id.to_string();
        self.read(move |c| files::one(c, &id)).await
    }
    async fn file_visible_to(&self, file_id: &str, user_id: &str) -> StoreResult<bool> {
        let (f, u) = (file_id.to_string(), user_id.to_string());
        self.read(move |c| files::visible_to(c, &f, &u)).await
    }
    async fn orphaned_blobs(&self, file_ids: Vec<String>) -> StoreResult<Vec<String>> {
        self.write(move |c| files::orphaned_blobs(c, &file_ids))
            .await
    }
    async fn user_file_bytes(&self, user_id: &str) -> StoreResult<u64> {
        let u = user_id.to_string();
        self.read(move |c| uploads::user_bytes(c, &u)).await
    }
    async fn old_files(&self, before: i64, after: &str, n: u32) -> StoreResult<Page> {
        let a = after.to_string();
        self.read(move |c| uploads::old_files(c, before, &a, n))
            .await
    }
    async fn create_upload(&self, u: UploadRow) -> StoreResult<()> {
        self.write(move |c| uploads::create(c, &u)).await
    }
    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRow>> {
        let id = id.to_string();
        self.read(move |c| uploads::one(c, &id)).await
    }
    async fn complete_upload(&self, id: &str, file_id: &str) -> StoreResult<()> {
        let (id, f) = (id.to_string(), file_id.to_string());
        self.write(move |c| uploads::complete(c, &id, &f)).await
    }
    async fn delete_upload(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| uploads::delete(c, &id)).await
    }
    async fn expired_uploads(&self, now: i64, limit: u32) -> StoreResult<Vec<UploadRow>> {
        self.read(move |c| uploads::expired(c, now, limit)).await
    }
    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        let sha = sha256.to_string();
        self.read(move |c| files::blob_in_use(c, &sha)).await
    }

    async fn push_recipients(&self, conversation_id: &str) -> StoreResult<Vec<PushRecipient>> {
        let id = conversation_id.to_string();
        self.read(move |c| push::recipients(c, &id)).await
    }
    async fn push_pending(&self, limit: u32) -> StoreResult<Vec<(String, u64)>> {
        self.read(move |c| push::pending(c, limit)).await
    }
    async fn push_schedule(&self, id: &str, upto: u64, jobs: Vec<PushSchedule>) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |c| push::schedule(c, &id, upto, &jobs))
            .await
    }
    async fn push_clear(
        &self,
        user_id: &str,
        id: &str,
        read_seq: u64,
        reader: &str,
        now: i64,
    ) -> StoreResult<()> {
        let (u, id, r) = (user_id.to_string(), id.to_string(), reader.to_string());
        self.write(move |c| push::clear(c, &u, &id, read_seq, &r, now))
            .await
    }
    async fn push_lease(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: u32,
    ) -> StoreResult<Vec<PushJob>> {
        let owner = owner.to_string();
        self.write(move |c| push::lease(c, &owner, now, until, limit))
            .await
    }
    async fn push_done(&self, job: &PushJob, how: PushDone) -> StoreResult<()> {
        let job = job.clone();
        self.write(move |c| push::done(c, &job, how)).await
    }
    async fn push_retry(&self, job: &PushJob, due_at: i64, error: &str) -> StoreResult<()> {
        let (job, error) = (job.clone(), error.to_string());
        self.write(move |c| push::retry(c, &job, due_at, &error))
            .await
    }
    async fn push_queue(&self) -> StoreResult<(u64, Option<i64>)> {
        self.read(push::queue).await
    }
    async fn disable_push_target(
        &self,
        device_id: &str,
        reason: &str,
        at: i64,
        registered_before: Option<i64>,
    ) -> StoreResult<bool> {
        let (d, r) = (device_id.to_string(), reason.to_string());
        self.write(move |c| push::disable_target(c, &d, &r, at, registered_before))
            .await
    }
    async fn set_muted_until(&self, user_id: &str, id: &str, until: i64) -> StoreResult<()> {
        let (u, id) = (user_id.to_string(), id.to_string());
        self.write(move |c| push::set_muted_until(c, &u, &id, until))
            .await
    }
    async fn update_settings(&self, user_id: &str, id: &str, p: SettingsPatch) -> StoreResult<()> {
        let (u, id) = (user_id.to_string(), id.to_string());
        self.write(move |c| push::update_settings(c, &u, &id, &p))
            .await
    }
    async fn conversation_settings(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<(String, ConvSettings)>> {
        let u = user_id.to_string();
        self.read(move |c| push::settings_of_user(c, &u)).await
    }
    async fn block(&self, user_id: &str, blocked_id: &str, at: i64) -> StoreResult<()> {
        let (u, b) = (user_id.to_string(), blocked_id.to_string());
        self.write(move |c| conversations::block(c, &u, &b, at))
            .await
    }
    async fn unblock(&self, user_id: &str, blocked_id: &str) -> StoreResult<bool> {
        let (u, b) = (user_id.to_string(), blocked_id.to_string());
        self.write(move |c| conversations::unblock(c, &u, &b)).await
    }
    async fn blocks(&self, user_id: &str) -> StoreResult<Vec<(String, i64)>> {
        let u = user_id.to_string();
        self.read(move |c| conversations::blocks(c, &u)).await
    }
    async fn blocked_by(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let u = user_id.to_string();
        self.read(move |c| conversations::blocked_by(c, &u)).await
    }
    async fn muted_until(&self, user_id: &str, id: &str) -> StoreResult<i64> {
        let (u, id) = (user_id.to_string(), id.to_string());
        self.read(move |c| push::muted_until(c, &u, &id)).await
    }
    async fn unread_total(&self, user_id: &str) -> StoreResult<u64> {
        let u = user_id.to_string();
        self.read(move |c| push::unread_total(c, &u)).await
    }

    async fn retention(&self, conversation_id: &str) -> StoreResult<Retention> {
        let id = conversation_id.to_string();
        self.read(move |c| retention::get(c, &id)).await
    }
    async fn set_retention(&self, conversation_id: &str, secs: Option<u64>) -> StoreResult<()> {
        let id = conversation_id.to_string();
        self.write(move |c| retention::set(c, &id, secs)).await
    }
    async fn expire(
        &self,
        conversation_id: &str,
        before_ts: i64,
        limit: u32,
    ) -> StoreResult<Expired> {
        let id = conversation_id.to_string();
        self.write(move |c| retention::expire(c, &id, before_ts, limit))
            .await
    }
    async fn member_devices(&self, conversation_id: &str) -> StoreResult<Vec<MemberDevice>> {
        let id = conversation_id.to_string();
        self.read(move |c| retention::member_devices(c, &id)).await
    }
    async fn add_undeliverable(&self, rows: Vec<Undeliverable>) -> StoreResult<()> {
        self.write(move |c| retention::add_undeliverable(c, &rows))
            .await
    }
    async fn undeliverable(&self, user_id: &str) -> StoreResult<Vec<Undeliverable>> {
        let user = user_id.to_string();
        self.read(move |c| retention::undeliverable(c, &user)).await
    }
    async fn clear_undeliverable(&self, user_id: &str, upto_ts: i64) -> StoreResult<u64> {
        let user = user_id.to_string();
        self.write(move |c| retention::clear_undeliverable(c, &user, upto_ts))
            .await
    }
    async fn conversation_ids(&self, after: &str, limit: u32) -> StoreResult<Vec<String>> {
        let after = after.to_string();
        self.read(move |c| retention::conversation_ids(c, &after, limit))
            .await
    }

    async fn check_writable(&self) -> StoreResult<()> {
        let now = crate::ids::now_ms();
        self.write(move |c| files::touch_kv(c, "readyz", &now.to_string()))
            .await
    }

    async fn close(&self) {
        self.checkpoints.stop();
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        self.readers.close();
    }
}
