//! Every CQL statement the ScyllaDB store runs, in one place, with the CQL types of its bind
//! markers in order.
//!
//! No ScyllaDB node is reachable where this project is built and tested, so the statements
//! are checked against `schema/scylla/*.cql` by a test instead (see `tests` below): each table
//! and column exists, partition keys (and, for single-row writes, clustering keys) are bound,
//! an INSERT names its whole primary key, and each bind marker's declared type is the type of
//! the column it binds. The driver code prepares these constants and binds values of exactly
//! the declared types.
//!
//! Statements name tables without a keyspace: the session selects the keyspace.

/// A CQL column type, as far as Parley uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqlType {
    Text,
    BigInt,
    Int,
    Boolean,
}

pub struct Stmt {
    pub name: &'static str,
    pub cql: &'static str,
    /// One entry per `?`, in order.
    pub binds: &'static [CqlType],
}

use CqlType::{BigInt, Boolean, Int, Text};

macro_rules! stmts {
    ($( $id:ident = $cql:literal, [$($t:ident),*]; )*) => {
        $( pub const $id: Stmt = Stmt { name: stringify!($id), cql: $cql, binds: &[$($t),*] }; )*
        /// All statements, for the schema check and for preparing them at start-up.
        pub const ALL: &[&Stmt] = &[$(&$id),*];
    };
}

/// Messages live in partitions of this many seqs: `bucket = seq / MESSAGE_BUCKET`.
pub const MESSAGE_BUCKET: u64 = 4096;

pub fn bucket(seq: u64) -> i64 {
    (seq / MESSAGE_BUCKET) as i64
}

stmts! {
    // users
    CLAIM_USERNAME = "INSERT INTO users_by_name (username, user_id) VALUES (?, ?) IF NOT EXISTS", [Text, Text];
    INSERT_USER = "INSERT INTO users (user_id, username, display_name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)", [Text, Text, Text, Text, BigInt];
    USER_ID_BY_NAME = "SELECT user_id FROM users_by_name WHERE username = ?", [Text];
    SET_PASSWORD_HASH = "UPDATE users SET password_hash = ? WHERE user_id = ? IF EXISTS", [Text, Text];
    DELETE_USER = "DELETE FROM users WHERE user_id = ?", [Text];
    FREE_USERNAME = "DELETE FROM users_by_name WHERE username = ?", [Text];
    USER_BY_ID = "SELECT user_id, username, display_name, password_hash, created_at FROM users WHERE user_id = ?", [Text];

    // devices
    INSERT_DEVICE = "INSERT INTO devices (device_id, user_id, name, created_at) VALUES (?, ?, ?, ?)", [Text, Text, Text, BigInt];
    INSERT_DEVICE_BY_USER = "INSERT INTO devices_by_user (user_id, device_id) VALUES (?, ?)", [Text, Text];
    DEVICE_BY_ID = "SELECT device_id, user_id, name, created_at, refresh_hash, last_seen_at FROM devices WHERE device_id = ?", [Text];
    SET_REFRESH_HASH = "UPDATE devices SET refresh_hash = ? WHERE device_id = ? IF EXISTS", [Text, Text];
    ROTATE_REFRESH_HASH = "UPDATE devices SET refresh_hash = ? WHERE device_id = ? IF refresh_hash = ?", [Text, Text, Text];
    TOUCH_DEVICE = "UPDATE devices SET last_seen_at = ? WHERE device_id = ? IF EXISTS", [BigInt, Text];
    DEVICES_OF_USER = "SELECT device_id FROM devices_by_user WHERE user_id = ?", [Text];
    DELETE_DEVICE = "DELETE FROM devices WHERE device_id = ?", [Text];
    DELETE_DEVICE_BY_USER = "DELETE FROM devices_by_user WHERE user_id = ? AND device_id = ?", [Text, Text];
    DELETE_DEVICE_CURSORS = "DELETE FROM device_cursors WHERE device_id = ?", [Text];
    DELETE_PUSH_TARGET = "DELETE FROM push_targets WHERE device_id = ?", [Text];

    // conversations and members
    CLAIM_DIRECT_PAIR = "INSERT INTO direct_pairs (direct_key, conversation_id) VALUES (?, ?) IF NOT EXISTS", [Text, Text];
    DIRECT_PAIR = "SELECT conversation_id FROM direct_pairs WHERE direct_key = ?", [Text];
    INSERT_CONVERSATION = "INSERT INTO conversations (conversation_id, kind, title, created_by, created_at) VALUES (?, ?, ?, ?, ?)", [Text, Text, Text, Text, BigInt];
    CONVERSATION_BY_ID = "SELECT conversation_id, kind, title, created_by, created_at, avatar FROM conversations WHERE conversation_id = ?", [Text];
    UPDATE_CONVERSATION = "UPDATE conversations SET title = ?, avatar = ? WHERE conversation_id = ?", [Text, Text, Text];
    SET_ROLE = "UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?", [Text, Text, Text];
    INSERT_MEMBER = "INSERT INTO members (conversation_id, user_id, role, joined_seq, delivered_seq, read_seq) VALUES (?, ?, ?, ?, ?, ?)", [Text, Text, Text, BigInt, BigInt, BigInt];
    INSERT_CONVERSATION_BY_USER = "INSERT INTO conversations_by_user (user_id, conversation_id) VALUES (?, ?)", [Text, Text];
    MEMBERS = "SELECT user_id, role, joined_seq, delivered_seq, read_seq FROM members WHERE conversation_id = ?", [Text];
    MEMBER = "SELECT user_id, role, joined_seq, delivered_seq, read_seq FROM members WHERE conversation_id = ? AND user_id = ?", [Text, Text];
    DELETE_MEMBER = "DELETE FROM members WHERE conversation_id = ? AND user_id = ?", [Text, Text];
    DELETE_CONVERSATION_BY_USER = "DELETE FROM conversations_by_user WHERE user_id = ? AND conversation_id = ?", [Text, Text];
    CONVERSATIONS_OF_USER = "SELECT conversation_id FROM conversations_by_user WHERE user_id = ?", [Text];

    // the head of a conversation: a hint of its last seq (the truth is the messages table:
    // readers probe past the head, see storage/scylla.rs)
    SET_HEAD = "UPDATE conversation_heads SET last_seq = ? WHERE conversation_id = ?", [BigInt, Text];
    HEAD = "SELECT last_seq FROM conversation_heads WHERE conversation_id = ?", [Text];

    // messages
    // conditional: (conversation, seq) is unique whoever writes; one Paxos round per bucket
    INSERT_MESSAGE = "INSERT INTO messages (conversation_id, bucket, seq, message_id, sender_id, sender_device_id, client_id, ts, text, attachments, meta, deleted, reply_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS", [Text, BigInt, BigInt, Text, Text, Text, Text, BigInt, Text, Text, Text, Boolean, BigInt];
    LAST_IN_BUCKET = "SELECT seq FROM messages WHERE conversation_id = ? AND bucket = ? ORDER BY seq DESC LIMIT 1", [Text, BigInt];
    MESSAGES_ASC = "SELECT conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, attachments, meta, deleted, deleted_by, edited_at, reply_to FROM messages WHERE conversation_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?", [Text, BigInt, BigInt, BigInt, Int];
    MESSAGES_DESC = "SELECT conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, attachments, meta, deleted, deleted_by, edited_at, reply_to FROM messages WHERE conversation_id = ? AND bucket = ? AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?", [Text, BigInt, BigInt, BigInt, Int];
    MESSAGE = "SELECT conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, attachments, meta, deleted, deleted_by, edited_at, reply_to FROM messages WHERE conversation_id = ? AND bucket = ? AND seq = ?", [Text, BigInt, BigInt];
    // conditional too: the row was written by an LWT, and a plain write mixed with LWTs on the
    // same row can be ordered before it (its timestamp is not a Paxos ballot) and be lost
    PURGE_MESSAGE = "UPDATE messages SET text = null, attachments = null, meta = null, deleted = ?, deleted_by = ? WHERE conversation_id = ? AND bucket = ? AND seq = ? IF EXISTS", [Boolean, Text, Text, BigInt, BigInt];

    // idempotency (expired by TTL)
    IDEMPOTENCY = "SELECT conversation_id, seq, message_id, ts, payload_hash FROM idempotency WHERE device_id = ? AND client_id = ?", [Text, Text];
    INSERT_IDEMPOTENCY = "INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts, payload_hash) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?", [Text, Text, Text, BigInt, Text, BigInt, Text, Int];


    // cursors: conditional so that they never move backwards
    DEVICE_CURSORS = "SELECT conversation_id, delivered_seq, retraction_cursor FROM device_cursors WHERE device_id = ?", [Text];
    DEVICE_CURSOR = "SELECT delivered_seq FROM device_cursors WHERE device_id = ? AND conversation_id = ?", [Text, Text];
    SET_DEVICE_CURSOR = "INSERT INTO device_cursors (device_id, conversation_id, delivered_seq, retraction_cursor) VALUES (?, ?, ?, ?)", [Text, Text, BigInt, BigInt];
    ADVANCE_DEVICE_DELIVERED = "UPDATE device_cursors SET delivered_seq = ? WHERE device_id = ? AND conversation_id = ? IF delivered_seq < ?", [BigInt, Text, Text, BigInt];
    ADVANCE_DEVICE_EVENTS = "UPDATE device_cursors SET retraction_cursor = ? WHERE device_id = ? AND conversation_id = ? IF retraction_cursor < ?", [BigInt, Text, Text, BigInt];
    ADVANCE_MEMBER_DELIVERED = "UPDATE members SET delivered_seq = ? WHERE conversation_id = ? AND user_id = ? IF delivered_seq < ?", [BigInt, Text, Text, BigInt];
    ADVANCE_MEMBER_READ = "UPDATE members SET read_seq = ? WHERE conversation_id = ? AND user_id = ? IF read_seq < ?", [BigInt, Text, Text, BigInt];

    // the event log (table `retractions`: see schema 004), hides, versions, reactions
    INSERT_EVENT = "INSERT INTO retractions (conversation_id, event_no, seq, kind, scope, data, by_user, for_user, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS", [Text, BigInt, BigInt, Text, Text, Text, Text, Text, BigInt];
    LAST_EVENT = "SELECT event_no FROM retractions WHERE conversation_id = ? ORDER BY event_no DESC LIMIT 1", [Text];
    EVENTS_SINCE = "SELECT conversation_id, event_no, seq, kind, scope, data, by_user, for_user, ts FROM retractions WHERE conversation_id = ? AND event_no > ? LIMIT ?", [Text, BigInt, Int];
    INSERT_HIDDEN = "INSERT INTO hidden (user_id, conversation_id, seq) VALUES (?, ?, ?)", [Text, Text, BigInt];
    HIDDEN_BETWEEN = "SELECT seq FROM hidden WHERE user_id = ? AND conversation_id = ? AND seq > ? AND seq < ?", [Text, Text, BigInt, BigInt];
    EDIT_MESSAGE = "UPDATE messages SET text = ?, meta = ?, edited_at = ? WHERE conversation_id = ? AND bucket = ? AND seq = ? IF deleted = ?", [Text, Text, BigInt, Text, BigInt, BigInt, Boolean];
    INSERT_VERSION = "INSERT INTO message_versions (conversation_id, seq, version, text, meta, replaced_at) VALUES (?, ?, ?, ?, ?, ?)", [Text, BigInt, BigInt, Text, Text, BigInt];
    VERSIONS = "SELECT text, meta, replaced_at FROM message_versions WHERE conversation_id = ? AND seq = ?", [Text, BigInt];
    DELETE_VERSIONS = "DELETE FROM message_versions WHERE conversation_id = ? AND seq = ?", [Text, BigInt];
    INSERT_REACTION = "INSERT INTO reactions (conversation_id, bucket, seq, emoji, user_id, ts) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS", [Text, BigInt, BigInt, Text, Text, BigInt];
    DELETE_REACTION = "DELETE FROM reactions WHERE conversation_id = ? AND bucket = ? AND seq = ? AND emoji = ? AND user_id = ? IF EXISTS", [Text, BigInt, BigInt, Text, Text];
    DELETE_REACTIONS_OF = "DELETE FROM reactions WHERE conversation_id = ? AND bucket = ? AND seq = ?", [Text, BigInt, BigInt];
    REACTIONS_BETWEEN = "SELECT seq, emoji, user_id, ts FROM reactions WHERE conversation_id = ? AND bucket = ? AND seq >= ? AND seq <= ?", [Text, BigInt, BigInt, BigInt];

    // files
    INSERT_FILE = "INSERT INTO files (file_id, uploader_id, size, content_type, sha256, created_at, width, height, thumb_sha256, thumb_content_type, placeholder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [Text, Text, BigInt, Text, Text, BigInt, Int, Int, Text, Text, Text];
    FILE_BY_ID = "SELECT file_id, uploader_id, size, content_type, sha256, created_at, width, height, thumb_sha256, thumb_content_type, placeholder FROM files WHERE file_id = ?", [Text];
    DELETE_FILE = "DELETE FROM files WHERE file_id = ?", [Text];
    INSERT_GRANT = "INSERT INTO file_grants (file_id, conversation_id, seq) VALUES (?, ?, ?)", [Text, Text, BigInt];
    GRANTS_OF_FILE = "SELECT conversation_id FROM file_grants WHERE file_id = ?", [Text];
    DELETE_GRANT = "DELETE FROM file_grants WHERE file_id = ? AND conversation_id = ? AND seq = ?", [Text, Text, BigInt];
    INSERT_FILE_BY_SHA = "INSERT INTO files_by_sha (sha256, file_id) VALUES (?, ?)", [Text, Text];
    FILES_BY_SHA = "SELECT file_id FROM files_by_sha WHERE sha256 = ? LIMIT 1", [Text];
    DELETE_FILE_BY_SHA = "DELETE FROM files_by_sha WHERE sha256 = ? AND file_id = ?", [Text, Text];
    INSERT_FILE_BY_UPLOADER = "INSERT INTO files_by_uploader (uploader_id, file_id, size) VALUES (?, ?, ?)", [Text, Text, BigInt];
    FILE_SIZES_OF = "SELECT size FROM files_by_uploader WHERE uploader_id = ?", [Text];
    DELETE_FILE_BY_UPLOADER = "DELETE FROM files_by_uploader WHERE uploader_id = ? AND file_id = ?", [Text, Text];
    INSERT_FILE_BY_DAY = "INSERT INTO files_by_day (day, file_id) VALUES (?, ?)", [BigInt, Text];
    FILES_OF_DAY = "SELECT file_id FROM files_by_day WHERE day = ? AND file_id > ? LIMIT ?", [BigInt, Text, Int];
    DELETE_FILE_BY_DAY = "DELETE FROM files_by_day WHERE day = ? AND file_id = ?", [BigInt, Text];

    // v1.1: resumable uploads
    INSERT_UPLOAD = "INSERT INTO uploads (upload_id, user_id, device_id, length, content_type, metadata, created_at, expires_at, file_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [Text, Text, Text, BigInt, Text, Text, BigInt, BigInt, Text];
    UPLOAD_BY_ID = "SELECT upload_id, user_id, device_id, length, content_type, metadata, created_at, expires_at, file_id FROM uploads WHERE upload_id = ?", [Text];
    COMPLETE_UPLOAD = "UPDATE uploads SET file_id = ? WHERE upload_id = ?", [Text, Text];
    DELETE_UPLOAD = "DELETE FROM uploads WHERE upload_id = ?", [Text];
    INSERT_UPLOAD_BY_DAY = "INSERT INTO uploads_by_day (day, upload_id) VALUES (?, ?)", [BigInt, Text];
    UPLOADS_OF_DAY = "SELECT upload_id FROM uploads_by_day WHERE day = ?", [BigInt];
    DELETE_UPLOAD_BY_DAY = "DELETE FROM uploads_by_day WHERE day = ? AND upload_id = ?", [BigInt, Text];

    // push targets (plain writes: registration and disabling touch different cells)
    SET_PUSH_TARGET_ROW = "INSERT INTO push_targets (device_id, user_id, provider, token, endpoint, p256dh, auth, payload, registered_at, disabled_at, disabled_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, null, null)", [Text, Text, Text, Text, Text, Text, Text, Text, BigInt];
    PUSH_TARGET = "SELECT provider, token, endpoint, p256dh, auth, payload, registered_at, disabled_at, disabled_reason FROM push_targets WHERE device_id = ?", [Text];
    DISABLE_PUSH_TARGET = "UPDATE push_targets SET disabled_at = ?, disabled_reason = ? WHERE device_id = ?", [BigInt, Text, Text];

    // push pending marks: cleared only up to the write that was seen (USING TIMESTAMP)
    MARK_PUSH_PENDING = "UPDATE push_pending SET upto_seq = ? WHERE shard = ? AND conversation_id = ?", [BigInt, Int, Text];
    PUSH_PENDING = "SELECT conversation_id, upto_seq, WRITETIME(upto_seq) FROM push_pending WHERE shard = ? LIMIT ?", [Int, Int];
    PUSH_PENDING_ONE = "SELECT upto_seq, WRITETIME(upto_seq) FROM push_pending WHERE shard = ? AND conversation_id = ?", [Int, Text];
    CLEAR_PUSH_PENDING = "DELETE FROM push_pending USING TIMESTAMP ? WHERE shard = ? AND conversation_id = ?", [BigInt, Int, Text];

    // push jobs: every change is conditional on the row's version
    INSERT_PUSH_JOB = "INSERT INTO push_jobs (shard, device_id, conversation_id, user_id, kind, seq, version, due_at, created_at, attempts, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS", [Int, Text, Text, Text, Text, BigInt, BigInt, BigInt, BigInt, Int, BigInt];
    PUSH_JOB = "SELECT device_id, conversation_id, user_id, kind, seq, version, due_at, created_at, attempts, lease_until FROM push_jobs WHERE shard = ? AND device_id = ? AND conversation_id = ?", [Int, Text, Text];
    PUSH_JOBS_OF_SHARD = "SELECT device_id, conversation_id, user_id, kind, seq, version, due_at, created_at, attempts, lease_until FROM push_jobs WHERE shard = ?", [Int];
    UPDATE_PUSH_JOB = "UPDATE push_jobs SET kind = ?, seq = ?, version = ?, due_at = ?, created_at = ?, attempts = ? WHERE shard = ? AND device_id = ? AND conversation_id = ? IF version = ?", [Text, BigInt, BigInt, BigInt, BigInt, Int, Int, Text, Text, BigInt];
    LEASE_PUSH_JOB = "UPDATE push_jobs SET lease_owner = ?, lease_until = ? WHERE shard = ? AND device_id = ? AND conversation_id = ? IF version = ? AND lease_until = ?", [Text, BigInt, Int, Text, Text, BigInt, BigInt];
    RETRY_PUSH_JOB = "UPDATE push_jobs SET attempts = ?, due_at = ?, last_error = ?, lease_owner = null, lease_until = ? WHERE shard = ? AND device_id = ? AND conversation_id = ? IF EXISTS", [Int, BigInt, Text, BigInt, Int, Text, Text];
    RELEASE_PUSH_JOB = "UPDATE push_jobs SET lease_owner = null, lease_until = ? WHERE shard = ? AND device_id = ? AND conversation_id = ? IF EXISTS", [BigInt, Int, Text, Text];
    DELETE_PUSH_JOB = "DELETE FROM push_jobs WHERE shard = ? AND device_id = ? AND conversation_id = ? IF version = ?", [Int, Text, Text, BigInt];
    DROP_PUSH_JOB = "DELETE FROM push_jobs WHERE shard = ? AND device_id = ? AND conversation_id = ? IF EXISTS", [Int, Text, Text];

    // what each device was notified of
    PUSH_SHOWN = "SELECT device_id, seq FROM push_shown WHERE user_id = ? AND conversation_id = ?", [Text, Text];
    SET_PUSH_SHOWN = "INSERT INTO push_shown (user_id, conversation_id, device_id, seq) VALUES (?, ?, ?, ?)", [Text, Text, Text, BigInt];
    DELETE_PUSH_SHOWN = "DELETE FROM push_shown WHERE user_id = ? AND conversation_id = ? AND device_id = ?", [Text, Text, Text];

    // per-user conversation settings
    SET_MUTED_UNTIL = "INSERT INTO conversation_settings (user_id, conversation_id, muted_until) VALUES (?, ?, ?)", [Text, Text, BigInt];
    SET_ARCHIVED = "UPDATE conversation_settings SET archived = ? WHERE user_id = ? AND conversation_id = ?", [Boolean, Text, Text];
    SET_PINNED_AT = "UPDATE conversation_settings SET pinned_at = ? WHERE user_id = ? AND conversation_id = ?", [BigInt, Text, Text];
    SETTINGS_OF_USER = "SELECT conversation_id, muted_until, archived, pinned_at FROM conversation_settings WHERE user_id = ?", [Text];

    // blocking
    INSERT_BLOCK = "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?) IF NOT EXISTS", [Text, Text, BigInt];
    DELETE_BLOCK = "DELETE FROM blocks WHERE user_id = ? AND blocked_id = ? IF EXISTS", [Text, Text];
    INSERT_BLOCKED_BY = "INSERT INTO blocks_by_blocked (blocked_id, user_id) VALUES (?, ?)", [Text, Text];
    DELETE_BLOCKED_BY = "DELETE FROM blocks_by_blocked WHERE blocked_id = ? AND user_id = ?", [Text, Text];
    BLOCKED_BY = "SELECT user_id FROM blocks_by_blocked WHERE blocked_id = ?", [Text];
    BLOCKS = "SELECT blocked_id, created_at FROM blocks WHERE user_id = ?", [Text];
    MUTED_UNTIL = "SELECT muted_until FROM conversation_settings WHERE user_id = ? AND conversation_id = ?", [Text, Text];

    // retention
    RETENTION = "SELECT retention_secs, expired_through FROM retention WHERE conversation_id = ?", [Text];
    SET_RETENTION_SECS = "UPDATE retention SET retention_secs = ? WHERE conversation_id = ?", [BigInt, Text];
    SET_EXPIRED_THROUGH = "UPDATE retention SET expired_through = ? WHERE conversation_id = ?", [BigInt, Text];
    // conditional: message rows are written by LWTs
    DELETE_MESSAGE = "DELETE FROM messages WHERE conversation_id = ? AND bucket = ? AND seq = ? IF EXISTS", [Text, BigInt, BigInt];
    UNDELIVERABLE_ONE = "SELECT from_seq, to_seq, lost FROM undeliverable WHERE user_id = ? AND conversation_id = ? AND device_id = ?", [Text, Text, Text];
    SET_UNDELIVERABLE = "INSERT INTO undeliverable (user_id, conversation_id, device_id, to_seq, from_seq, recipient_id, lost, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [Text, Text, Text, BigInt, BigInt, Text, BigInt, BigInt];
    UNDELIVERABLE_OF_USER = "SELECT user_id, conversation_id, device_id, recipient_id, from_seq, to_seq, lost, ts FROM undeliverable WHERE user_id = ?", [Text];
    DELETE_UNDELIVERABLE = "DELETE FROM undeliverable WHERE user_id = ? AND conversation_id = ? AND device_id = ?", [Text, Text, Text];
    INDEX_CONVERSATION = "INSERT INTO conversation_index (shard, conversation_id) VALUES (?, ?)", [Int, Text];
    INDEXED_CONVERSATIONS = "SELECT conversation_id FROM conversation_index WHERE shard = ? AND conversation_id > ? LIMIT ?", [Int, Text, Int];

    // operations
    SET_KV = "INSERT INTO kv (key, value) VALUES (?, ?)", [Text, Text];

    // receipt marks (schema 007): the latest RECEIPT_MARKS_KEPT per (conversation, user, kind)
    INSERT_RECEIPT_MARK = "INSERT INTO receipt_marks (conversation_id, user_id, kind, seq, ts) VALUES (?, ?, ?, ?, ?)", [Text, Text, Text, BigInt, BigInt];
    RECEIPT_MARK_SEQS = "SELECT seq FROM receipt_marks WHERE conversation_id = ? AND user_id = ? AND kind = ? ORDER BY seq DESC LIMIT ?", [Text, Text, Text, Int];
    DROP_RECEIPT_MARKS_BELOW = "DELETE FROM receipt_marks WHERE conversation_id = ? AND user_id = ? AND kind = ? AND seq < ?", [Text, Text, Text, BigInt];
    RECEIPT_MARK_FROM = "SELECT seq, ts FROM receipt_marks WHERE conversation_id = ? AND user_id = ? AND kind = ? AND seq >= ? LIMIT 1", [Text, Text, Text, BigInt];

    // migrations
    SCHEMA_VERSION = "SELECT version FROM schema_version WHERE id = ?", [Text];
    SET_SCHEMA_VERSION = "INSERT INTO schema_version (id, version) VALUES (?, ?)", [Text, Int];
}

/// The schema files, in order, with `{keyspace}` and `{rf}` to fill in.
pub const SCHEMA: &[(i32, &str)] = &[
    (1, include_str!("../../../schema/scylla/001_init.cql")),
    (
        2,
        include_str!("../../../schema/scylla/002_files_by_sha_and_kv.cql"),
    ),
    (3, include_str!("../../../schema/scylla/003_push.cql")),
    (4, include_str!("../../../schema/scylla/004_v1_1.cql")),
    (
        5,
        include_str!("../../../schema/scylla/005_conversations.cql"),
    ),
    (6, include_str!("../../../schema/scylla/006_accounts.cql")),
    (7, include_str!("../../../schema/scylla/007_receipts.cql")),
    (8, include_str!("../../../schema/scylla/008_retention.cql")),
    (9, include_str!("../../../schema/scylla/009_media.cql")),
    (10, include_str!("../../../schema/scylla/010_blobs.cql")),
];

/// The CQL type of `table.column` in the schema files (for the row-struct check in `rows`).
#[cfg(test)]
pub(super) fn column_type(table: &str, column: &str) -> Option<CqlType> {
    tests::schema().get(table)?.columns.get(column).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) struct Table {
        pub(super) columns: HashMap<String, CqlType>,
        partition: Vec<String>,
        clustering: Vec<String>,
    }

    fn cql_type(t: &str) -> CqlType {
        match t {
            "text" => Text,
            "bigint" => BigInt,
            "int" => Int,
            "boolean" => Boolean,
            other => panic!("schema uses a type the code does not map: {other}"),
        }
    }

    fn split_list(s: &str) -> Vec<String> {
        s.split(',')
            .map(|c| c.trim().trim_matches(|c| c == '(' || c == ')').to_string())
            .filter(|c| !c.is_empty())
            .collect()
    }

    /// Parses the CREATE TABLE statements of the schema files.
    pub(super) fn schema() -> HashMap<String, Table> {
        let mut tables = HashMap::new();
        for (_, text) in SCHEMA {
            let text: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            for stmt in text.split(';') {
                let stmt = stmt.trim();
                if let Some(rest) = stmt.strip_prefix("ALTER TABLE {keyspace}.") {
                    let (name, add) = rest.split_once(" ADD ").unwrap();
                    let (col, ty) = add.trim().split_once(' ').unwrap();
                    let t: &mut Table = tables.get_mut(name.trim()).expect("altered table exists");
                    t.columns.insert(col.to_string(), cql_type(ty.trim()));
                    continue;
                }
                let Some(rest) = stmt.strip_prefix("CREATE TABLE IF NOT EXISTS {keyspace}.") else {
                    continue;
                };

                let (name, body) = rest.split_once('(').unwrap();
                // The column list ends at the parenthesis that closes the first one (a WITH
                // clause may follow with parentheses of its own).
                let mut depth = 1;
                let end = body
                    .char_indices()
                    .find(|(_, ch)| {
                        match ch {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map(|(i, _)| i)
                    .unwrap();
                let body = &body[..end];
                let mut t = Table {
                    columns: HashMap::new(),
                    partition: vec![],
                    clustering: vec![],
                };
                for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let line = line.trim_end_matches(',');
                    if let Some(pk) = line.strip_prefix("PRIMARY KEY (") {
                        let pk = pk.strip_suffix(')').unwrap();
                        if let Some(inner) = pk.strip_prefix('(') {
                            let (part, rest) = inner.split_once(')').unwrap();
                            t.partition = split_list(part);
                            t.clustering = split_list(rest);
                        } else {
                            let cols = split_list(pk);
                            t.partition = vec![cols[0].clone()];
                            t.clustering = cols[1..].to_vec();
                        }
                        continue;
                    }
                    let mut parts = line.split_whitespace();
                    let (col, ty) = (parts.next().unwrap(), parts.next().unwrap());
                    t.columns.insert(col.to_string(), cql_type(ty));
                    if line.ends_with("PRIMARY KEY") {
                        t.partition = vec![col.to_string()];
                    }
                }
                tables.insert(name.trim().to_string(), t);
            }
        }
        tables
    }

    /// The columns a WHERE or IF clause binds, each with its operator and value.
    fn conditions(clause: &str) -> Vec<(String, String, String)> {
        clause
            .split(" AND ")
            .map(|c| {
                let mut p = c.split_whitespace();
                (
                    p.next().unwrap().to_string(),
                    p.next().unwrap().to_string(),
                    p.next().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn col_type(s: &Stmt, t: &Table, c: &str) -> CqlType {
        *t.columns
            .get(c)
            .unwrap_or_else(|| panic!("{}: no column {c}", s.name))
    }

    fn table_of<'a>(s: &Stmt, tables: &'a HashMap<String, Table>, name: &str) -> &'a Table {
        tables
            .get(name)
            .unwrap_or_else(|| panic!("{}: no table {name}", s.name))
    }

    /// The partition key (and, for a single-row write, the clustering key) must be bound
    /// with `= ?`.
    fn require_keys(s: &Stmt, t: &Table, bound: &[(String, String, String)], whole_row: bool) {
        let keys = t
            .partition
            .iter()
            .chain(t.clustering.iter().filter(|_| whole_row));
        for k in keys {
            assert!(
                bound
                    .iter()
                    .any(|(c, op, v)| c == k && op == "=" && v == "?"),
                "{}: key column {k} not bound",
                s.name
            );
        }
    }

    /// The types of the `?`s of a WHERE or IF clause, in order.
    fn bound_types(s: &Stmt, t: &Table, conds: &[(String, String, String)]) -> Vec<CqlType> {
        conds
            .iter()
            .filter(|(_, _, v)| v == "?")
            .map(|(c, _, _)| col_type(s, t, c))
            .collect()
    }

    fn check_select(s: &Stmt, tables: &HashMap<String, Table>, rest: &str) -> Vec<CqlType> {
        let (cols, rest) = rest.split_once(" FROM ").unwrap();
        let (table, rest) = rest.split_once(" WHERE ").unwrap();
        let t = table_of(s, tables, table);
        for c in cols.split(',').map(str::trim) {
            // WRITETIME(col) is the write time of a column (a bigint).
            let c = c
                .strip_prefix("WRITETIME(")
                .and_then(|x| x.strip_suffix(')'))
                .unwrap_or(c);
            col_type(s, t, c);
        }
        let (clause, tail) = match rest.find(" ORDER BY ").or_else(|| rest.find(" LIMIT ")) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let conds = conditions(clause);
        require_keys(s, t, &conds, false);
        let mut binds = bound_types(s, t, &conds);
        if let Some(order) = tail.trim().strip_prefix("ORDER BY ") {
            let col = order.split_whitespace().next().unwrap();
            assert!(
                t.clustering.first().map(String::as_str) == Some(col),
                "{}: ORDER BY {col} is not the clustering key",
                s.name
            );
        }
        if tail.ends_with("LIMIT ?") {
            binds.push(Int);
        }
        binds
    }

    fn check_insert(s: &Stmt, tables: &HashMap<String, Table>, rest: &str) -> Vec<CqlType> {
        let (table, rest) = rest.split_once(" (").unwrap();
        let (cols, rest) = rest.split_once(") VALUES (").unwrap();
        let (values, tail) = rest.split_once(')').unwrap();
        let t = table_of(s, tables, table);
        let cols = split_list(cols);
        let values = split_list(values);
        assert_eq!(
            cols.len(),
            values.len(),
            "{}: columns and values differ in number",
            s.name
        );
        for k in t.partition.iter().chain(&t.clustering) {
            assert!(
                cols.contains(k),
                "{}: INSERT without key column {k}",
                s.name
            );
        }
        let mut binds: Vec<CqlType> = cols
            .iter()
            .zip(&values)
            .map(|(c, v)| (col_type(s, t, c), v))
            .filter(|(_, v)| *v == "?")
            .map(|(ty, _)| ty)
            .collect();
        if tail.contains("USING TTL ?") {
            binds.push(Int);
        }
        binds
    }

    fn check_update(s: &Stmt, tables: &HashMap<String, Table>, rest: &str) -> Vec<CqlType> {
        let (table, rest) = rest.split_once(" SET ").unwrap();
        let (sets, rest) = rest.split_once(" WHERE ").unwrap();
        let t = table_of(s, tables, table);
        let mut binds = Vec::new();
        for set in sets.split(", ") {
            let (c, v) = set.split_once(" = ").unwrap();
            let ty = col_type(s, t, c);
            let is_key = t.partition.iter().chain(&t.clustering).any(|k| k == c);
            assert!(!is_key, "{}: SET of a key column", s.name);
            if v == "?" {
                binds.push(ty);
            }
        }
        let (clause, cond) = match rest.split_once(" IF ") {
            Some((w, c)) => (w, Some(c)),
            None => (rest, None),
        };
        let conds = conditions(clause);
        require_keys(s, t, &conds, true);
        binds.extend(bound_types(s, t, &conds));
        if let Some(cond) = cond.filter(|c| *c != "EXISTS") {
            binds.extend(bound_types(s, t, &conditions(cond)));
        }
        binds
    }

    fn check_delete(s: &Stmt, tables: &HashMap<String, Table>, rest: &str) -> Vec<CqlType> {
        let (table, rest) = rest.split_once(" WHERE ").unwrap();
        let mut binds = Vec::new();
        let table = match table.strip_suffix(" USING TIMESTAMP ?") {
            Some(t) => {
                binds.push(BigInt);
                t
            }
            None => table,
        };
        let t = table_of(s, tables, table);
        let (clause, cond) = match rest.split_once(" IF ") {
            Some((w, c)) => (w, Some(c)),
            None => (rest, None),
        };
        let conds = conditions(clause);
        // A DELETE may name a whole partition or a clustering prefix (a range).
        require_keys(s, t, &conds, false);
        binds.extend(bound_types(s, t, &conds));
        if let Some(cond) = cond.filter(|c| *c != "EXISTS") {
            binds.extend(bound_types(s, t, &conditions(cond)));
        }
        binds
    }

    /// Checks one statement; returns the column (or pseudo-column) each `?` binds, in order.
    fn check(s: &Stmt, tables: &HashMap<String, Table>) -> Vec<CqlType> {
        let cql = s.cql;
        if let Some(rest) = cql.strip_prefix("SELECT ") {
            check_select(s, tables, rest)
        } else if let Some(rest) = cql.strip_prefix("INSERT INTO ") {
            check_insert(s, tables, rest)
        } else if let Some(rest) = cql.strip_prefix("UPDATE ") {
            check_update(s, tables, rest)
        } else if let Some(rest) = cql.strip_prefix("DELETE FROM ") {
            check_delete(s, tables, rest)
        } else {
            panic!("{}: unrecognised statement", s.name);
        }
    }

    #[test]
    fn every_statement_matches_the_schema() {
        let tables = schema();
        assert!(
            tables.len() >= 15,
            "schema parse found {} tables",
            tables.len()
        );
        for s in ALL {
            assert_eq!(
                s.cql.matches('?').count(),
                s.binds.len(),
                "{}: declared binds",
                s.name
            );
            let found = check(s, &tables);
            assert_eq!(
                found, s.binds,
                "{}: bind types differ from the schema's column types",
                s.name
            );
        }
    }

    #[test]
    fn every_table_is_used() {
        let tables = schema();
        for name in tables.keys() {
            assert!(
                ALL.iter().any(|s| s.cql.contains(&format!(" {name} "))
                    || s.cql.contains(&format!(" {name} ("))),
                "table {name} is never queried"
            );
        }
    }

    #[test]
    fn the_checker_catches_mistakes() {
        let tables = schema();
        let bad_col = Stmt {
            name: "bad",
            cql: "SELECT nope FROM users WHERE user_id = ?",
            binds: &[Text],
        };
        assert!(std::panic::catch_unwind(|| check(&bad_col, &tables)).is_err());
        let unbound = Stmt {
            name: "bad",
            cql: "SELECT seq FROM messages WHERE conversation_id = ? AND seq > ?",
            binds: &[Text, BigInt],
        };
        assert!(
            std::panic::catch_unwind(|| check(&unbound, &tables)).is_err(),
            "missing bucket must be caught"
        );
        let wrong_type = Stmt {
            name: "bad",
            cql: "SELECT seq FROM hidden WHERE user_id = ? AND conversation_id = ?",
            binds: &[Text, BigInt],
        };
        assert_ne!(check(&wrong_type, &tables), wrong_type.binds.to_vec());
    }

    #[test]
    fn buckets_bound_partitions() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(MESSAGE_BUCKET - 1), 0);
        assert_eq!(bucket(MESSAGE_BUCKET), 1);
    }
}
