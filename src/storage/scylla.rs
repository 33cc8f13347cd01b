//! The ScyllaDB backend: the same `Store` on a database that scales past one host.
//!
//! Every statement comes from `cql.rs` (checked against `schema/scylla/` by a test) and is
//! prepared once at start-up, so the driver routes each one to a replica of its partition
//! (token-aware) and binds values of exactly the catalogue's types. Reads and writes run at
//! `scylla_consistency` (LOCAL_QUORUM by default); lightweight transactions at LOCAL_SERIAL.
//!
//! How `append` keeps `(conversation, seq)` unique and gapless without a transaction across
//! partitions (the SQLite backend gets one for free):
//! 1. Idempotency keys are looked up first (and duplicates within the batch folded).
//! 2. The new messages are written with `INSERT ... IF NOT EXISTS`, one conditional batch per
//!    bucket (a conditional batch must stay in one partition): one Paxos round per bucket. A
//!    seq someone else holds fails the batch: `Conflict`, nothing of that bucket is written.
//! 3. After each bucket, its idempotency keys are written (with the TTL), so that a batch that
//!    fails in a later bucket never leaves a stored message a retry could not find.
//! 4. Last, the conversation's head (a hint of its last seq) is set.
//!
//! The truth about a conversation's end is the messages table: `load_conversation` reads the
//! head, then probes the following buckets for later seqs (a writer that died between steps 2
//! and 4) and rewrites their idempotency keys, which makes step 3 safe against a crash too.
//! Measured cost without a node: none; see the note in README.md about what was verified.

use super::cql::{self, Stmt};
use super::*;
use crate::config::StorageConfig;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{CqlValue, Row};
use parley_protocol::DeleteScope;
use std::collections::{BTreeSet, HashMap};
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

fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

type MessageRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<String>,
);

fn message_from(r: MessageRow) -> StoredMessage {
    StoredMessage {
        conversation_id: r.0,
        seq: r.1 as u64,
        message_id: r.2,
        sender_id: r.3,
        sender_device_id: r.4,
        client_id: r.5,
        ts: r.6,
        text: r.7,
        attachments: r
            .8
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
        meta: r.9,
        deleted: r.10.unwrap_or(false),
        deleted_by: r.11,
    }
}

type RetractionRow = (String, i64, i64, String, String, Option<String>, i64);

fn retraction_from(r: RetractionRow) -> Retraction {
    Retraction {
        conversation_id: r.0,
        event_no: r.1 as u64,
        seq: r.2 as u64,
        scope: if r.3 == "me" {
            DeleteScope::Me
        } else {
            DeleteScope::Everyone
        },
        by_user: r.4,
        for_user: r.5,
        ts: r.6,
    }
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
        migrate_session(&session, &u.keyspace, cfg.scylla_replication).await?;
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

    /// The last seq of a conversation: the head, then any later seqs a writer stored before
    /// it could move the head (their idempotency keys are rewritten on the way).
    async fn last_seq(&self, conversation_id: &str, repair: bool) -> StoreResult<u64> {
        let head = self
            .row::<(Option<i64>,)>(&cql::HEAD, (conversation_id,))
            .await?
            .and_then(|r| r.0)
            .unwrap_or(0) as u64;
        let mut last = head;
        let mut b = cql::bucket(head + 1);
        loop {
            let top = self
                .row::<(i64,)>(&cql::LAST_IN_BUCKET, (conversation_id, b))
                .await?;
            match top {
                Some((s,)) if s as u64 > last => last = s as u64,
                _ => break,
            }
            b += 1;
        }
        if repair && last > head {
            for m in self
                .messages(conversation_id, head, last + 1, u32::MAX, Order::Asc)
                .await?
            {
                self.put_idempotency(
                    &m.sender_device_id,
                    &m.client_id,
                    conversation_id,
                    m.seq,
                    &m.message_id,
                    m.ts,
                )
                .await?;
            }
            self.exec(&cql::SET_HEAD, (i(last), conversation_id))
                .await?;
        }
        Ok(last)
    }

    async fn last_event(&self, conversation_id: &str) -> StoreResult<u64> {
        Ok(self
            .row::<(i64,)>(&cql::LAST_RETRACTION, (conversation_id,))
            .await?
            .map(|r| r.0 as u64)
            .unwrap_or(0))
    }

    async fn put_idempotency(
        &self,
        device_id: &str,
        client_id: &str,
        conversation_id: &str,
        seq: u64,
        message_id: &str,
        ts: i64,
    ) -> StoreResult<()> {
        self.exec(
            &cql::INSERT_IDEMPOTENCY,
            (
                device_id,
                client_id,
                conversation_id,
                i(seq),
                message_id,
                ts,
                self.idempotency_ttl,
            ),
        )
        .await
        .map(|_| ())
    }

    async fn member(&self, conversation_id: &str, user_id: &str) -> StoreResult<Option<MemberRow>> {
        Ok(self
            .row::<(
                String,
                Option<String>,
                Option<i64>,
                Option<i64>,
                Option<i64>,
            )>(&cql::MEMBER, (conversation_id, user_id))
            .await?
            .map(member_from))
    }

    /// Gives each device of `user_id` a cursor at `seq` in the conversation.
    async fn set_device_cursors(
        &self,
        conversation_id: &str,
        user_id: &str,
        seq: u64,
    ) -> StoreResult<()> {
        let events = self.last_event(conversation_id).await?;
        for (device,) in self
            .rows::<(String,)>(&cql::DEVICES_OF_USER, (user_id,))
            .await?
        {
            self.exec(
                &cql::SET_DEVICE_CURSOR,
                (device.as_str(), conversation_id, i(seq), i(events)),
            )
            .await?;
        }
        Ok(())
    }
}

fn member_from(
    r: (
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ),
) -> MemberRow {
    MemberRow {
        user_id: r.0,
        role: Role::parse(r.1.as_deref().unwrap_or("member")),
        joined_seq: r.2.unwrap_or(0) as u64,
        delivered_seq: r.3.unwrap_or(0) as u64,
        read_seq: r.4.unwrap_or(0) as u64,
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

/// The schema files as single statements, with the keyspace and replication filled in.
pub fn schema_statements(text: &str, keyspace: &str, rf: u32) -> Vec<String> {
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("{keyspace}", keyspace)
                .replace("{rf}", &rf.to_string())
        })
        .collect()
}

/// Applies `schema/scylla/*.cql` in order, idempotently, keeping the version in
/// `schema_version`. Returns (before, after).
async fn migrate_session(session: &Session, keyspace: &str, rf: u32) -> Result<(i32, i32), String> {
    let version_of = |res: QueryResult| -> Option<i32> {
        res.into_rows_result()
            .ok()?
            .maybe_first_row::<(Option<i32>,)>()
            .ok()?
            .and_then(|r| r.0)
    };
    let before = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_version WHERE id = 'schema'"),
            (),
        )
        .await
        .ok()
        .and_then(version_of)
        .unwrap_or(0);
    let mut after = before;
    for (v, text) in cql::SCHEMA {
        if *v <= before {
            continue;
        }
        for stmt in schema_statements(text, keyspace, rf) {
            session
                .query_unpaged(stmt.clone(), ())
                .await
                .map_err(|e| format!("scylla migration {v}: {e}\n{stmt}"))?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.schema_version (id, version) VALUES ('schema', ?)"),
                (*v,),
            )
            .await
            .map_err(|e| format!("scylla migration {v}: {e}"))?;
        after = *v;
    }
    Ok((before, after))
}

/// `parley migrate --store scylla://...`: applies the schema without starting a node.
pub async fn migrate(url: &str, rf: u32) -> Result<(i32, i32), String> {
    let u = ScyllaUrl::parse(url)?;
    let session = SessionBuilder::new()
        .known_nodes(&u.nodes)
        .build()
        .await
        .map_err(|e| format!("scylla {}: {e}", u.nodes.join(",")))?;
    migrate_session(&session, &u.keyspace, rf).await
}

#[async_trait]
impl Store for ScyllaStore {
    async fn create_user(&self, u: UserRow) -> StoreResult<()> {
        if !self
            .lwt(
                &cql::CLAIM_USERNAME,
                (u.username.as_str(), u.user_id.as_str()),
            )
            .await?
        {
            return Err(StoreError::Conflict("username is taken".into()));
        }
        self.exec(
            &cql::INSERT_USER,
            (
                u.user_id,
                u.username,
                u.display_name,
                u.password_hash,
                u.created_at,
            ),
        )
        .await
        .map(|_| ())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRow>> {
        match self
            .row::<(String,)>(&cql::USER_ID_BY_NAME, (username,))
            .await?
        {
            Some((id,)) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    async fn user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRow>> {
        Ok(self
            .row::<(
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
            )>(&cql::USER_BY_ID, (user_id,))
            .await?
            .map(|r| UserRow {
                user_id: r.0,
                username: r.1.unwrap_or_default(),
                display_name: r.2,
                password_hash: r.3.unwrap_or_default(),
                created_at: r.4.unwrap_or(0),
            }))
    }

    async fn create_device(&self, d: DeviceRow) -> StoreResult<()> {
        self.exec(
            &cql::INSERT_DEVICE,
            (
                d.device_id.as_str(),
                d.user_id.as_str(),
                d.name.as_deref(),
                d.created_at,
            ),
        )
        .await?;
        self.exec(
            &cql::INSERT_DEVICE_BY_USER,
            (d.user_id.as_str(), d.device_id.as_str()),
        )
        .await?;
        // A new device is owed only what is sent after it exists.
        for (conv,) in self
            .rows::<(String,)>(&cql::CONVERSATIONS_OF_USER, (d.user_id.as_str(),))
            .await?
        {
            let joined = self
                .member(&conv, &d.user_id)
                .await?
                .map(|m| m.joined_seq)
                .unwrap_or(0);
            let last = self.last_seq(&conv, false).await?;
            let events = self.last_event(&conv).await?;
            self.exec(
                &cql::SET_DEVICE_CURSOR,
                (
                    d.device_id.as_str(),
                    conv.as_str(),
                    i(last.max(joined)),
                    i(events),
                ),
            )
            .await?;
        }
        Ok(())
    }

    async fn device(&self, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        Ok(self
            .row::<(String, Option<String>, Option<String>, Option<i64>)>(
                &cql::DEVICE_BY_ID,
                (device_id,),
            )
            .await?
            .map(|r| DeviceRow {
                device_id: r.0,
                user_id: r.1.unwrap_or_default(),
                name: r.2,
                created_at: r.3.unwrap_or(0),
            }))
    }

    async fn devices_of_user(&self, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
        let mut out = Vec::new();
        for (id,) in self
            .rows::<(String,)>(&cql::DEVICES_OF_USER, (user_id,))
            .await?
        {
            if let Some(d) = self.device(&id).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn set_push_target(
        &self,
        device_id: &str,
        provider: &str,
        token: Option<String>,
        endpoint: Option<String>,
    ) -> StoreResult<()> {
        if self
            .lwt(
                &cql::SET_PUSH_TARGET,
                (provider, token, endpoint, device_id),
            )
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn create_conversation(
        &self,
        row: ConversationRow,
        members: Vec<(String, Role)>,
        direct_key: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        let id = row.conversation_id.as_str();
        if let Some(key) = &direct_key {
            if !self
                .lwt(&cql::CLAIM_DIRECT_PAIR, (key.as_str(), id))
                .await?
            {
                let existing = self
                    .row::<(Option<String>,)>(&cql::DIRECT_PAIR, (key.as_str(),))
                    .await?
                    .and_then(|r| r.0)
                    .ok_or_else(|| StoreError::Unavailable("direct pair claim vanished".into()))?;
                return Ok(CreateOutcome::Existing(existing));
            }
        }
        self.exec(
            &cql::INSERT_CONVERSATION,
            (
                id,
                row.kind.as_str(),
                row.title.as_deref(),
                row.created_by.as_str(),
                row.created_at,
            ),
        )
        .await?;
        self.exec(&cql::SET_HEAD, (0i64, id)).await?;
        for (user, role) in &members {
            self.exec(
                &cql::INSERT_MEMBER,
                (id, user.as_str(), role.as_str(), 0i64, 0i64, 0i64),
            )
            .await?;
            self.exec(&cql::INSERT_CONVERSATION_BY_USER, (user.as_str(), id))
                .await?;
            self.set_device_cursors(id, user, 0).await?;
        }
        Ok(CreateOutcome::Created)
    }

    async fn load_conversation(
        &self,
        conversation_id: &str,
    ) -> StoreResult<Option<ConversationState>> {
        let Some(r) = self
            .row::<(
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
            )>(&cql::CONVERSATION_BY_ID, (conversation_id,))
            .await?
        else {
            return Ok(None);
        };
        let row = ConversationRow {
            conversation_id: r.0,
            kind: if r.1.as_deref() == Some("direct") {
                ConversationKind::Direct
            } else {
                ConversationKind::Group
            },
            title: r.2,
            created_by: r.3.unwrap_or_default(),
            created_at: r.4.unwrap_or(0),
        };
        let members = self
            .rows::<(
                String,
                Option<String>,
                Option<i64>,
                Option<i64>,
                Option<i64>,
            )>(&cql::MEMBERS, (conversation_id,))
            .await?
            .into_iter()
            .map(member_from)
            .collect();
        // A new owner continues from the stored maximum, repairing what a dead writer left.
        let last_seq = self.last_seq(conversation_id, true).await?;
        let last_event_no = self.last_event(conversation_id).await?;
        Ok(Some(ConversationState {
            row,
            members,
            last_seq,
            last_event_no,
        }))
    }

    async fn conversation_ids_of_user(&self, user_id: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .rows::<(String,)>(&cql::CONVERSATIONS_OF_USER, (user_id,))
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect())
    }

    async fn contacts_of_user(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let mut out = BTreeSet::new();
        for conv in self.conversation_ids_of_user(user_id).await? {
            for (u, ..) in self
                .rows::<(
                    String,
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                    Option<i64>,
                )>(&cql::MEMBERS, (conv.as_str(),))
                .await?
            {
                if u != user_id {
                    out.insert(u);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn add_members(
        &self,
        conversation_id: &str,
        user_ids: Vec<String>,
        joined_seq: u64,
    ) -> StoreResult<()> {
        for u in &user_ids {
            if self.member(conversation_id, u).await?.is_some() {
                continue;
            }
            let j = i(joined_seq);
            self.exec(
                &cql::INSERT_MEMBER,
                (conversation_id, u.as_str(), "member", j, j, j),
            )
            .await?;
            self.exec(
                &cql::INSERT_CONVERSATION_BY_USER,
                (u.as_str(), conversation_id),
            )
            .await?;
            self.set_device_cursors(conversation_id, u, joined_seq)
                .await?;
        }
        Ok(())
    }

    async fn remove_member(&self, conversation_id: &str, user_id: &str) -> StoreResult<()> {
        if self.member(conversation_id, user_id).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        self.exec(&cql::DELETE_MEMBER, (conversation_id, user_id))
            .await?;
        self.exec(
            &cql::DELETE_CONVERSATION_BY_USER,
            (user_id, conversation_id),
        )
        .await?;
        Ok(())
    }

    async fn device_conversations(
        &self,
        device_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<DeviceConversation>> {
        let cursors: HashMap<String, (u64, u64)> = self
            .rows::<(String, Option<i64>, Option<i64>)>(&cql::DEVICE_CURSORS, (device_id,))
            .await?
            .into_iter()
            .map(|(c, d, r)| (c, (d.unwrap_or(0) as u64, r.unwrap_or(0) as u64)))
            .collect();
        let mut out = Vec::new();
        for conv in self.conversation_ids_of_user(user_id).await? {
            let Some(m) = self.member(&conv, user_id).await? else {
                continue;
            };
            let (delivered, retractions) = cursors.get(&conv).copied().unwrap_or((m.joined_seq, 0));
            out.push(DeviceConversation {
                last_seq: self.last_seq(&conv, false).await?,
                conversation_id: conv,
                delivered_seq: delivered,
                read_seq: m.read_seq,
                retraction_cursor: retractions,
                joined_seq: m.joined_seq,
            });
        }
        Ok(out)
    }

    async fn append(
        &self,
        conversation_id: &str,
        first_seq: u64,
        messages: Arc<[NewMessage]>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        // 1. Idempotency: stored keys, and repeats within this batch.
        let mut out: Vec<Option<AppendOutcome>> = Vec::with_capacity(messages.len());
        let mut fresh: Vec<(usize, u64)> = Vec::new();
        // (device, client id) -> (index, seq) of its first occurrence in this batch
        let mut seen: HashMap<(&str, &str), (usize, u64)> = HashMap::new();
        let mut seq = first_seq;
        for (k, m) in messages.iter().enumerate() {
            let key = (m.sender_device_id.as_str(), m.client_id.as_str());
            if let Some(&(first, s)) = seen.get(&key) {
                out.push(Some(AppendOutcome::Duplicate {
                    conversation_id: conversation_id.to_string(),
                    seq: s,
                    message_id: messages[first].message_id.clone(),
                    ts: messages[first].ts,
                }));
                continue;
            }
            let dup = self
                .row::<(String, i64, String, i64)>(&cql::IDEMPOTENCY, key)
                .await?;
            if let Some((c, s, mid, ts)) = dup {
                out.push(Some(AppendOutcome::Duplicate {
                    conversation_id: c,
                    seq: s as u64,
                    message_id: mid,
                    ts,
                }));
                continue;
            }
            seen.insert(key, (k, seq));
            fresh.push((k, seq));
            out.push(None);
            seq += 1;
        }
        // 2-3. One conditional batch per bucket, then that bucket's idempotency keys.
        let mut start = 0;
        while start < fresh.len() {
            let b = cql::bucket(fresh[start].1);
            let end = fresh[start..]
                .iter()
                .position(|(_, s)| cql::bucket(*s) != b)
                .map_or(fresh.len(), |p| start + p);
            let mut batch = Batch::new(BatchType::Unlogged);
            batch.set_consistency(self.consistency.0);
            batch.set_serial_consistency(Some(self.consistency.1));
            let mut values = Vec::new();
            for (k, s) in &fresh[start..end] {
                let m = &messages[*k];
                let attachments = if m.attachments.is_empty() {
                    None
                } else {
                    Some(serde_json::to_string(&m.attachments).map_err(err)?)
                };
                batch.append_statement(self.ps(&cql::INSERT_MESSAGE).clone());
                values.push((
                    conversation_id,
                    b,
                    i(*s),
                    m.message_id.as_str(),
                    m.sender_id.as_str(),
                    m.sender_device_id.as_str(),
                    m.client_id.as_str(),
                    m.ts,
                    m.text.as_deref(),
                    attachments,
                    m.meta.as_deref(),
                    false,
                ));
            }
            let res = self.session.batch(&batch, values).await.map_err(err)?;
            if !applied(res)? {
                return Err(StoreError::Conflict(format!(
                    "seq {} is taken",
                    fresh[start].1
                )));
            }
            for (k, s) in &fresh[start..end] {
                let m = &messages[*k];
                self.put_idempotency(
                    &m.sender_device_id,
                    &m.client_id,
                    conversation_id,
                    *s,
                    &m.message_id,
                    m.ts,
                )
                .await?;
                for a in &m.attachments {
                    self.exec(
                        &cql::INSERT_GRANT,
                        (a.file_id.as_str(), conversation_id, i(*s)),
                    )
                    .await?;
                }
            }
            start = end;
        }
        // 4. The head: a hint for readers, who probe past it anyway.
        if let Some((_, last)) = fresh.last() {
            self.exec(&cql::SET_HEAD, (i(*last), conversation_id))
                .await?;
        }
        let mut fresh_iter = fresh.iter();
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| AppendOutcome::Stored {
                    seq: fresh_iter.next().expect("one per fresh message").1,
                })
            })
            .collect())
    }

    async fn messages(
        &self,
        conversation_id: &str,
        after: u64,
        before: u64,
        limit: u32,
        order: Order,
    ) -> StoreResult<Vec<StoredMessage>> {
        let mut out = Vec::new();
        if before <= after + 1 || limit == 0 {
            return Ok(out);
        }
        let lo = cql::bucket(after + 1);
        let hi = if before == u64::MAX {
            cql::bucket(self.last_seq(conversation_id, false).await?.max(after + 1))
        } else {
            cql::bucket(before - 1)
        };
        let buckets: Vec<i64> = match order {
            Order::Asc => (lo..=hi).collect(),
            Order::Desc => (lo..=hi).rev().collect(),
        };
        let stmt = match order {
            Order::Asc => &cql::MESSAGES_ASC,
            Order::Desc => &cql::MESSAGES_DESC,
        };
        for b in buckets {
            let left = (limit as usize - out.len()).min(i32::MAX as usize) as i32;
            let rows = self
                .rows::<MessageRow>(stmt, (conversation_id, b, i(after), i(before), left))
                .await?;
            out.extend(rows.into_iter().map(message_from));
            if out.len() >= limit as usize {
                break;
            }
        }
        Ok(out)
    }

    async fn message(&self, conversation_id: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        Ok(self
            .row::<MessageRow>(&cql::MESSAGE, (conversation_id, cql::bucket(seq), i(seq)))
            .await?
            .map(message_from))
    }

    async fn senders_between(
        &self,
        conversation_id: &str,
        after: u64,
        upto: u64,
    ) -> StoreResult<Vec<String>> {
        let msgs = self
            .messages(
                conversation_id,
                after,
                upto.saturating_add(1),
                u32::MAX,
                Order::Asc,
            )
            .await?;
        let set: BTreeSet<String> = msgs.into_iter().map(|m| m.sender_id).collect();
        Ok(set.into_iter().collect())
    }

    async fn count_unread(
        &self,
        conversation_id: &str,
        user_id: &str,
        after: u64,
    ) -> StoreResult<u64> {
        let hidden: BTreeSet<u64> = self
            .hidden_seqs(user_id, conversation_id, after, u64::MAX)
            .await?
            .into_iter()
            .collect();
        let msgs = self
            .messages(conversation_id, after, u64::MAX, u32::MAX, Order::Asc)
            .await?;
        Ok(msgs
            .iter()
            .filter(|m| m.sender_id != user_id && !m.deleted && !hidden.contains(&m.seq))
            .count() as u64)
    }

    async fn retract(&self, r: Retraction) -> StoreResult<()> {
        let Some(m) = self.message(&r.conversation_id, r.seq).await? else {
            return Err(StoreError::NotFound);
        };
        let (c, b, s) = (r.conversation_id.as_str(), cql::bucket(r.seq), i(r.seq));
        if !self
            .lwt(&cql::PURGE_MESSAGE, (true, r.by_user.as_str(), c, b, s))
            .await?
        {
            return Err(StoreError::NotFound);
        }
        for a in &m.attachments {
            self.exec(&cql::DELETE_GRANT, (a.file_id.as_str(), c, s))
                .await?;
        }
        self.log_retraction(&r).await
    }

    async fn hide(&self, r: Retraction) -> StoreResult<()> {
        let user = r.for_user.clone().unwrap_or_default();
        self.exec(
            &cql::INSERT_HIDDEN,
            (user.as_str(), r.conversation_id.as_str(), i(r.seq)),
        )
        .await?;
        self.log_retraction(&r).await
    }

    async fn retractions_since(
        &self,
        conversation_id: &str,
        user_id: &str,
        after_event: u64,
        limit: u32,
    ) -> StoreResult<Vec<Retraction>> {
        let mut out = Vec::new();
        let mut after = after_event;
        loop {
            let page = self
                .rows::<RetractionRow>(&cql::RETRACTIONS_SINCE, (conversation_id, i(after), 500i32))
                .await?;
            let n = page.len();
            for r in page.into_iter().map(retraction_from) {
                after = r.event_no;
                if r.for_user.as_deref().is_none_or(|u| u == user_id) {
                    out.push(r);
                    if out.len() >= limit as usize {
                        return Ok(out);
                    }
                }
            }
            if n < 500 {
                return Ok(out);
            }
        }
    }

    async fn hidden_seqs(
        &self,
        user_id: &str,
        conversation_id: &str,
        after: u64,
        before: u64,
    ) -> StoreResult<Vec<u64>> {
        Ok(self
            .rows::<(i64,)>(
                &cql::HIDDEN_BETWEEN,
                (user_id, conversation_id, i(after), i(before)),
            )
            .await?
            .into_iter()
            .map(|r| r.0 as u64)
            .collect())
    }

    async fn advance_cursors(&self, updates: Vec<CursorUpdate>) -> StoreResult<()> {
        // Conditional updates (`IF x < new`): a cursor never moves backwards, even when two
        // nodes write it at once. One Paxos round each; a receipt is not on the send path.
        for u in updates {
            // The statements to run, their two key columns in bind order, and the new value
            // (a read also moves delivered).
            let (stmts, a, b, v): (&[&Stmt], _, _, _) = match u {
                CursorUpdate::DeviceDelivered {
                    device_id,
                    conversation_id,
                    seq,
                } => (
                    &[&cql::ADVANCE_DEVICE_DELIVERED],
                    device_id,
                    conversation_id,
                    seq,
                ),
                CursorUpdate::DeviceRetractions {
                    device_id,
                    conversation_id,
                    event_no,
                } => (
                    &[&cql::ADVANCE_DEVICE_RETRACTIONS],
                    device_id,
                    conversation_id,
                    event_no,
                ),
                CursorUpdate::UserDelivered {
                    user_id,
                    conversation_id,
                    seq,
                } => (
                    &[&cql::ADVANCE_MEMBER_DELIVERED],
                    conversation_id,
                    user_id,
                    seq,
                ),
                CursorUpdate::UserRead {
                    user_id,
                    conversation_id,
                    seq,
                } => (
                    &[&cql::ADVANCE_MEMBER_READ, &cql::ADVANCE_MEMBER_DELIVERED],
                    conversation_id,
                    user_id,
                    seq,
                ),
            };
            for s in stmts {
                self.lwt(s, (i(v), a.as_str(), b.as_str(), i(v))).await?;
            }
        }
        Ok(())
    }

    async fn expire_idempotency(&self, _before_ts: i64) -> StoreResult<u64> {
        Ok(0) // keys carry a TTL (storage.idempotency_ttl_secs): ScyllaDB drops them itself
    }

    fn idempotency_expires_by_ttl(&self) -> bool {
        true
    }

    async fn create_file(&self, f: FileRow) -> StoreResult<()> {
        self.exec(
            &cql::INSERT_FILE,
            (
                f.file_id.as_str(),
                f.uploader_id.as_str(),
                i(f.size),
                f.content_type.as_str(),
                f.sha256.as_str(),
                f.created_at,
            ),
        )
        .await?;
        self.exec(
            &cql::INSERT_FILE_BY_SHA,
            (f.sha256.as_str(), f.file_id.as_str()),
        )
        .await
        .map(|_| ())
    }

    async fn file(&self, file_id: &str) -> StoreResult<Option<FileRow>> {
        Ok(self
            .row::<(
                String,
                Option<String>,
                Option<i64>,
                Option<String>,
                Option<String>,
                Option<i64>,
            )>(&cql::FILE_BY_ID, (file_id,))
            .await?
            .map(|r| FileRow {
                file_id: r.0,
                uploader_id: r.1.unwrap_or_default(),
                size: r.2.unwrap_or(0) as u64,
                content_type: r.3.unwrap_or_default(),
                sha256: r.4.unwrap_or_default(),
                created_at: r.5.unwrap_or(0),
            }))
    }

    async fn file_visible_to(&self, file_id: &str, user_id: &str) -> StoreResult<bool> {
        if self
            .file(file_id)
            .await?
            .is_some_and(|f| f.uploader_id == user_id)
        {
            return Ok(true);
        }
        for (conv, _) in self
            .rows::<(String, i64)>(&cql::GRANTS_OF_FILE, (file_id,))
            .await?
        {
            if self.member(&conv, user_id).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn orphaned_blobs(&self, file_ids: Vec<String>) -> StoreResult<Vec<String>> {
        let mut blobs = Vec::new();
        for f in file_ids {
            let granted = !self
                .rows::<(String, i64)>(&cql::GRANTS_OF_FILE, (f.as_str(),))
                .await?
                .is_empty();
            if granted {
                continue;
            }
            let Some(row) = self.file(&f).await? else {
                continue;
            };
            self.exec(&cql::DELETE_FILE, (f.as_str(),)).await?;
            self.exec(&cql::DELETE_FILE_BY_SHA, (row.sha256.as_str(), f.as_str()))
                .await?;
            let shared = self
                .row::<(String,)>(&cql::FILES_BY_SHA, (row.sha256.as_str(),))
                .await?
                .is_some();
            if !shared {
                blobs.push(row.sha256);
            }
        }
        Ok(blobs)
    }

    async fn check_writable(&self) -> StoreResult<()> {
        let now = crate::actors::now_ms().to_string();
        self.exec(&cql::SET_KV, ("readyz", now.as_str()))
            .await
            .map(|_| ())
    }

    async fn close(&self) {
        // Every write was acknowledged by the cluster before its caller returned; nothing is
        // queued here. The session closes its connections when the store is dropped.
    }
}

impl ScyllaStore {
    async fn log_retraction(&self, r: &Retraction) -> StoreResult<()> {
        let applied = self
            .lwt(
                &cql::INSERT_RETRACTION,
                (
                    r.conversation_id.as_str(),
                    i(r.event_no),
                    i(r.seq),
                    r.scope.as_str(),
                    r.by_user.as_str(),
                    r.for_user.as_deref(),
                    r.ts,
                ),
            )
            .await?;
        if applied {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "retraction event {} is taken",
                r.event_no
            )))
        }
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
