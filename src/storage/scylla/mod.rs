//! The ScyllaDB backend: the same `Store` on a database that scales past one host.
//!
//! Every statement comes from `cql` (checked against `schema/scylla/` by a test) and is
//! prepared once at start-up, so the driver routes each one to a replica of its partition
//! (token-aware) and binds values of exactly the catalogue's types; rows decode into the
//! structs of `rows` (checked against the same catalogue). Reads and writes run at
//! `scylla_consistency` (LOCAL_QUORUM by default); lightweight transactions at LOCAL_SERIAL.
//! The statements of each entity are in their own file (`users`, `conversations`,
//! `messages`, `events`, `cursors`, `files`); `messages` says how `append` keeps
//! `(conversation, seq)` unique and gapless without a transaction across partitions.

mod conversations;
pub mod cql;
mod cursors;
mod events;
mod files;
mod messages;
mod migrate;
mod push;
mod receipts;
mod retention;
mod rows;
mod uploads;
mod users;

pub use migrate::{migrate, schema_statements};

use super::*;
use crate::config::StorageConfig;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{CqlValue, Row};
use cql::Stmt;
use std::collections::HashMap;
use std::sync::Arc;

/// A parsed `scylla://host1:9042,host2:9042/keyspace` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ScyllaUrl {
    pub nodes: Vec<String>,
    pub keyspace: String,
}

impl ScyllaUrl {
    pub fn parse(url: &str) -> Result<ScyllaUrl, String> {
        let rest = url
            .strip_prefix("scylla://")
            .ok_or_else(|| format!("store URL {url}: expected scylla://host:port,.../keyspace"))?;
        let (hosts, keyspace) = rest
            .split_once('/')
            .ok_or_else(|| format!("store URL {url}: no keyspace"))?;
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_string()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        let valid = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !keyspace.starts_with(|c: char| c.is_ascii_digit());
        if nodes.is_empty() || !valid {
            return Err(format!(
                "store URL {url}: need at least one host and a keyspace of [a-zA-Z0-9_]"
            ));
        }
        Ok(ScyllaUrl {
            nodes,
            keyspace: keyspace.to_string(),
        })
    }
}

fn consistency(name: &str) -> Result<(Consistency, SerialConsistency), String> {
    Ok(match name {
        "local_quorum" => (Consistency::LocalQuorum, SerialConsistency::LocalSerial),
        "quorum" => (Consistency::Quorum, SerialConsistency::Serial),
        "each_quorum" => (Consistency::EachQuorum, SerialConsistency::Serial),
        "all" => (Consistency::All, SerialConsistency::Serial),
        "one" => (Consistency::One, SerialConsistency::LocalSerial),
        "local_one" => (Consistency::LocalOne, SerialConsistency::LocalSerial),
        other => return Err(format!("storage.scylla_consistency: unknown level {other}")),
    })
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("scylla: {e}"))
}

/// Seqs and counters are u64 in the code and bigint (i64) in CQL.
fn bigint(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub struct ScyllaStore {
    session: Session,
    prepared: HashMap<&'static str, PreparedStatement>,
    idempotency_ttl: i32,
    /// For batches, which carry their own consistency (their statements' is ignored).
    consistency: (Consistency, SerialConsistency),
}

impl ScyllaStore {
    /// Connects, applies the schema (idempotent) and prepares every statement.
    pub async fn connect(url: &str, cfg: &StorageConfig) -> Result<ScyllaStore, String> {
        let u = ScyllaUrl::parse(url)?;
        let (c, sc) = consistency(&cfg.scylla_consistency)?;
        let session = SessionBuilder::new()
            .known_nodes(&u.nodes)
            .build()
            .await
            .map_err(|e| format!("scylla {}: {e}", u.nodes.join(",")))?;
        migrate::migrate_session(&session, &u.keyspace, cfg.scylla_replication).await?;
        session
            .use_keyspace(&u.keyspace, false)
            .await
            .map_err(|e| format!("scylla: use keyspace {}: {e}", u.keyspace))?;
        let mut prepared = HashMap::new();
        for s in cql::ALL {
            let mut p = session
                .prepare(s.cql)
                .await
                .map_err(|e| format!("scylla: prepare {}: {e}", s.name))?;
            p.set_consistency(c);
            p.set_serial_consistency(Some(sc));
            prepared.insert(s.name, p);
        }
        Ok(ScyllaStore {
            session,
            prepared,
            idempotency_ttl: cfg.idempotency_ttl_secs.min(i32::MAX as u64) as i32,
            consistency: (c, sc),
        })
    }

    fn ps(&self, s: &Stmt) -> &PreparedStatement {
        &self.prepared[s.name]
    }

    async fn exec(&self, s: &Stmt, v: impl SerializeRow) -> StoreResult<QueryResult> {
        self.session
            .execute_unpaged(self.ps(s), v)
            .await
            .map_err(err)
    }

    async fn rows<R>(&self, s: &Stmt, v: impl SerializeRow) -> StoreResult<Vec<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        let res = self.exec(s, v).await?.into_rows_result().map_err(err)?;
        let rows = res.rows::<R>().map_err(err)?;
        rows.collect::<Result<Vec<R>, _>>().map_err(err)
    }

    async fn row<R>(&self, s: &Stmt, v: impl SerializeRow) -> StoreResult<Option<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        Ok(self.rows::<R>(s, v).await?.into_iter().next())
    }

    /// Runs a lightweight transaction; true if it applied.
    async fn lwt(&self, s: &Stmt, v: impl SerializeRow) -> StoreResult<bool> {
        applied(self.exec(s, v).await?)
    }
}

/// `[applied]` of an LWT's answer (its first column).
fn applied(res: QueryResult) -> StoreResult<bool> {
    let rows = res.into_rows_result().map_err(err)?;
    let first = rows.maybe_first_row::<Row>().map_err(err)?;
    Ok(matches!(
        first.and_then(|r| r.columns.into_iter().next().flatten()),
        Some(CqlValue::Boolean(true))
    ))
}

#[async_trait]
impl Store for ScyllaStore {
    async fn create_user(&self, u: UserRow) -> StoreResult<()> {
        users::create_user(self, u).await
    }
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRow>> {
        users::user_by_name(self, username).await
    }
    async fn user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRow>> {
        users::user_by_id(self, user_id).await
    }
    async fn create_device(&self, d: DeviceRow) -> StoreResult<()> {
        users::create_device(self, d).await
    }
    async fn device(&self, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        users::device(self, device_id).await
    }
    async fn set_push_target(&self, device_id: &str, t: PushTargetRow) -> StoreResult<()> {
        users::set_push_target(self, device_id, t).await
    }
    async fn devices_of_user(&self, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
        users::devices_of_user(self, user_id).await
    }
    async fn delete_device(&self, device_id: &str) -> StoreResult<()> {
        users::delete_device(self, device_id).await
    }
    async fn set_refresh_hash(
        &self,
        device_id: &str,
        expected: Option<String>,
        new_hash: String,
    ) -> StoreResult<bool> {
        users::set_refresh_hash(self, device_id, expected, new_hash).await
    }
    async fn set_password_hash(&self, user_id: &str, hash: String) -> StoreResult<()> {
        users::set_password_hash(self, user_id, hash).await
    }
    async fn touch_devices(&self, seen: Vec<(String, i64)>) -> StoreResult<()> {
        users::touch_devices(self, &seen).await
    }
    async fn delete_user(&self, user_id: &str) -> StoreResult<()> {
        users::delete_user(self, user_id).await
    }

    async fn create_conversation(
        &self,
        row: ConversationRow,
        members: Vec<(String, Role)>,
        direct_key: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        conversations::create(self, row, members, direct_key).await
    }
    async fn load_conversation(&self, id: &str) -> StoreResult<Option<ConversationState>> {
        conversations::load(self, id).await
    }
    async fn member(&self, id: &str, user_id: &str) -> StoreResult<Option<MemberRow>> {
        conversations::member(self, id, user_id).await
    }
    async fn contacts_of_user(&self, user_id: &str) -> StoreResult<Vec<String>> {
        conversations::contacts_of_user(self, user_id).await
    }
    async fn add_members(&self, id: &str, user_ids: Vec<String>, joined: u64) -> StoreResult<()> {
        conversations::add_members(self, id, user_ids, joined).await
    }
    async fn remove_member(&self, id: &str, user_id: &str) -> StoreResult<()> {
        conversations::remove_member(self, id, user_id).await
    }
    async fn update_conversation(
        &self,
        id: &str,
        title: Option<String>,
        avatar: Option<String>,
    ) -> StoreResult<()> {
        conversations::update(self, id, title.as_deref(), avatar.as_deref()).await
    }
    async fn set_role(&self, id: &str, user_id: &str, role: Role) -> StoreResult<()> {
        conversations::set_role(self, id, user_id, role).await
    }
    async fn direct_conversation(&self, key: &str) -> StoreResult<Option<String>> {
        conversations::direct(self, key).await
    }
    async fn device_cursor(&self, device_id: &str, id: &str) -> StoreResult<Option<u64>> {
        conversations::device_cursor(self, device_id, id).await
    }
    async fn device_conversations(
        &self,
        device_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<DeviceConversation>> {
        conversations::of_device(self, device_id, user_id).await
    }

    async fn append(
        &self,
        id: &str,
        first_seq: u64,
        batch: Arc<[NewMessage]>,
    ) -> StoreResult<Appended> {
        messages::append(self, id, first_seq, &batch).await
    }
    async fn messages(
        &self,
        id: &str,
        after: u64,
        before: u64,
        limit: u32,
        order: Order,
    ) -> StoreResult<Vec<StoredMessage>> {
        messages::page(self, id, after, before, limit, order).await
    }
    async fn message(&self, id: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        messages::one(self, id, seq).await
    }
    async fn senders_between(&self, id: &str, after: u64, upto: u64) -> StoreResult<Vec<String>> {
        messages::senders_between(self, id, after, upto).await
    }
    async fn count_unread(&self, id: &str, user_id: &str, after: u64) -> StoreResult<u64> {
        messages::count_unread(self, id, user_id, after).await
    }

    async fn retract(&self, r: MessageEvent) -> StoreResult<()> {
        events::retract(self, r).await
    }
    async fn hide(&self, r: MessageEvent) -> StoreResult<()> {
        events::hide(self, r).await
    }
    async fn edit(
        &self,
        e: MessageEvent,
        content: EditContent,
        key: IdemKey,
    ) -> StoreResult<EditOutcome> {
        events::edit(self, e, content, key).await
    }
    async fn message_versions(&self, id: &str, seq: u64) -> StoreResult<Vec<MessageVersion>> {
        events::versions(self, id, seq).await
    }
    async fn react(&self, e: MessageEvent) -> StoreResult<bool> {
        events::react(self, e).await
    }
    async fn reactions(
        &self,
        id: &str,
        seqs: &[u64],
        viewer: &str,
    ) -> StoreResult<Vec<(u64, Vec<ReactionCount>)>> {
        events::reactions(self, id, seqs, viewer).await
    }
    async fn events_since(
        &self,
        id: &str,
        user_id: &str,
        after_event: u64,
        limit: u32,
    ) -> StoreResult<Vec<MessageEvent>> {
        events::since(self, id, user_id, after_event, limit).await
    }
    async fn hidden_seqs(
        &self,
        user_id: &str,
        id: &str,
        after: u64,
        before: u64,
    ) -> StoreResult<Vec<u64>> {
        events::hidden_seqs(self, user_id, id, after, before).await
    }

    async fn advance_cursors(&self, updates: Vec<CursorUpdate>) -> StoreResult<()> {
        cursors::advance(self, updates).await
    }
    async fn receipt_times(
        &self,
        conversation_id: &str,
        kind: parley_protocol::ReceiptKind,
        seq: u64,
        user_ids: Vec<String>,
    ) -> StoreResult<Vec<(String, Option<i64>)>> {
        receipts::times(self, conversation_id, kind, seq, user_ids).await
    }
    async fn expire_idempotency(&self, _before_ts: i64) -> StoreResult<u64> {
        Ok(0) // keys carry a TTL (storage.idempotency_ttl_secs): ScyllaDB drops them itself
    }
    fn idempotency_expires_by_ttl(&self) -> bool {
        true
    }

    async fn create_file(&self, f: FileRow) -> StoreResult<()> {
        files::create(self, f).await
    }
    async fn file(&self, file_id: &str) -> StoreResult<Option<FileRow>> {
        files::one(self, file_id).await
    }
    async fn file_visible_to(&self, file_id: &str, user_id: &str) -> StoreResult<bool> {
        files::visible_to(self, file_id, user_id).await
    }
    async fn orphaned_blobs(&self, file_ids: Vec<String>) -> StoreResult<Vec<String>> {
        files::orphaned_blobs(self, file_ids).await
    }
    async fn user_file_bytes(&self, user_id: &str) -> StoreResult<u64> {
        uploads::user_bytes(self, user_id).await
    }
    async fn old_files(&self, before: i64, after: &str, n: u32) -> StoreResult<Page> {
        uploads::old_files(self, before, after, n).await
    }
    async fn create_upload(&self, u: UploadRow) -> StoreResult<()> {
        uploads::create(self, u).await
    }
    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRow>> {
        uploads::one(self, id).await
    }
    async fn complete_upload(&self, id: &str, file_id: &str) -> StoreResult<()> {
        uploads::complete(self, id, file_id).await
    }
    async fn delete_upload(&self, id: &str) -> StoreResult<()> {
        uploads::delete(self, id).await
    }
    async fn expired_uploads(&self, now: i64, limit: u32) -> StoreResult<Vec<UploadRow>> {
        uploads::expired(self, now, limit).await
    }
    async fn blob_in_use(&self, sha256: &str) -> StoreResult<bool> {
        files::blob_in_use(self, sha256).await
    }

    async fn push_recipients(&self, id: &str) -> StoreResult<Vec<PushRecipient>> {
        push::recipients(self, id).await
    }
    async fn push_pending(&self, limit: u32) -> StoreResult<Vec<(String, u64)>> {
        push::pending(self, limit).await
    }
    async fn push_schedule(&self, id: &str, upto: u64, jobs: Vec<PushSchedule>) -> StoreResult<()> {
        push::schedule(self, id, upto, jobs).await
    }
    async fn push_clear(
        &self,
        user_id: &str,
        id: &str,
        read_seq: u64,
        reader: &str,
        now: i64,
    ) -> StoreResult<()> {
        push::clear(self, user_id, id, read_seq, reader, now).await
    }
    async fn push_lease(
        &self,
        owner: &str,
        now: i64,
        until: i64,
        limit: u32,
    ) -> StoreResult<Vec<PushJob>> {
        push::lease(self, owner, now, until, limit).await
    }
    async fn push_done(&self, job: &PushJob, how: PushDone) -> StoreResult<()> {
        push::done(self, job, how).await
    }
    async fn push_retry(&self, job: &PushJob, due_at: i64, error: &str) -> StoreResult<()> {
        push::retry(self, job, due_at, error).await
    }
    async fn push_queue(&self) -> StoreResult<(u64, Option<i64>)> {
        push::queue(self).await
    }
    async fn disable_push_target(
        &self,
        device_id: &str,
        reason: &str,
        at: i64,
        registered_before: Option<i64>,
    ) -> StoreResult<bool> {
        push::disable_target(self, device_id, reason, at, registered_before).await
    }
    async fn set_muted_until(&self, user_id: &str, id: &str, until: i64) -> StoreResult<()> {
        push::set_muted_until(self, user_id, id, until).await
    }
    async fn update_settings(&self, user_id: &str, id: &str, p: SettingsPatch) -> StoreResult<()> {
        push::update_settings(self, user_id, id, p).await
    }
    async fn conversation_settings(
        &self,
        user_id: &str,
    ) -> StoreResult<Vec<(String, ConvSettings)>> {
        push::settings_of_user(self, user_id).await
    }
    async fn block(&self, user_id: &str, blocked_id: &str, at: i64) -> StoreResult<()> {
        conversations::block(self, user_id, blocked_id, at).await
    }
    async fn unblock(&self, user_id: &str, blocked_id: &str) -> StoreResult<bool> {
        conversations::unblock(self, user_id, blocked_id).await
    }
    async fn blocks(&self, user_id: &str) -> StoreResult<Vec<(String, i64)>> {
        conversations::blocks(self, user_id).await
    }
    async fn blocked_by(&self, user_id: &str) -> StoreResult<Vec<String>> {
        conversations::blocked_by(self, user_id).await
    }
    async fn muted_until(&self, user_id: &str, id: &str) -> StoreResult<i64> {
        push::muted_until(self, user_id, id).await
    }
    async fn unread_total(&self, user_id: &str) -> StoreResult<u64> {
        push::unread_total(self, user_id).await
    }

    async fn retention(&self, id: &str) -> StoreResult<Retention> {
        retention::get(self, id).await
    }
    async fn set_retention(&self, id: &str, secs: Option<u64>) -> StoreResult<()> {
        retention::set(self, id, secs).await
    }
    async fn expire(&self, id: &str, before_ts: i64, limit: u32) -> StoreResult<Expired> {
        retention::expire(self, id, before_ts, limit).await
    }
    async fn member_devices(&self, id: &str) -> StoreResult<Vec<MemberDevice>> {
        retention::member_devices(self, id).await
    }
    async fn add_undeliverable(&self, rows: Vec<Undeliverable>) -> StoreResult<()> {
        retention::add_undeliverable(self, rows).await
    }
    async fn undeliverable(&self, user_id: &str) -> StoreResult<Vec<Undeliverable>> {
        retention::undeliverable(self, user_id).await
    }
    async fn clear_undeliverable(&self, user_id: &str, upto_ts: i64) -> StoreResult<u64> {
        retention::clear_undeliverable(self, user_id, upto_ts).await
    }
    async fn conversation_ids(&self, after: &str, limit: u32) -> StoreResult<Vec<String>> {
        retention::conversation_ids(self, after, limit).await
    }

    async fn check_writable(&self) -> StoreResult<()> {
        let now = crate::ids::now_ms().to_string();
        self.exec(&cql::SET_KV, ("readyz", now.as_str()))
            .await
            .map(|_| ())
    }

    async fn close(&self) {
        // Every write was acknowledged by the cluster before its caller returned; nothing is
        // queued here. The session closes its connections when the store is dropped.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        assert_eq!(
            ScyllaUrl::parse("scylla://a:9042,b/parley").unwrap(),
            ScyllaUrl {
                nodes: vec!["a:9042".into(), "b:9042".into()],
                keyspace: "parley".into()
            }
        );
        for bad in [
            "redis://a/x",
            "scylla://a",
            "scylla:///ks",
            "scylla://a/bad-ks",
            "scylla://a/1x",
        ] {
            assert!(ScyllaUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_splits_into_filled_statements() {
        let stmts = schema_statements(cql::SCHEMA[0].1, "ks", 3);
        assert!(stmts[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks"));
        assert!(stmts[0].contains("'replication_factor': 3"));
        assert!(stmts
            .iter()
            .all(|s| !s.contains('{') || s.contains("'class'")));
        assert!(stmts
            .iter()
            .any(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ks.messages")));
    }

    #[test]
    fn every_consistency_name_maps() {
        for n in [
            "local_quorum",
            "quorum",
            "each_quorum",
            "all",
            "one",
            "local_one",
        ] {
            assert!(consistency(n).is_ok());
        }
        assert!(consistency("serial").is_err());
    }
}
