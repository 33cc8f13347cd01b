//! Schema migrations (`schema/sqlite/*.sql`), applied on start by `parley serve` and by
//! `parley migrate`.
//!
//! Several processes may migrate one database at the same moment (cluster nodes started
//! together on a fresh data directory, or `parley migrate` racing `parley serve`): the version
//! is read and the pending migrations applied inside one `BEGIN IMMEDIATE` transaction, so one
//! process migrates while the others wait for its lock and then find nothing left to do.

use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../schema/sqlite/001_init.sql")),
    (2, include_str!("../../../schema/sqlite/002_push.sql")),
    (3, include_str!("../../../schema/sqlite/003_v1_1.sql")),
    (
        4,
        include_str!("../../../schema/sqlite/004_conversations.sql"),
    ),
    (5, include_str!("../../../schema/sqlite/005_accounts.sql")),
    (6, include_str!("../../../schema/sqlite/006_receipts.sql")),
    (7, include_str!("../../../schema/sqlite/007_retention.sql")),
    (8, include_str!("../../../schema/sqlite/008_media.sql")),
    (9, include_str!("../../../schema/sqlite/009_blobs.sql")),
    (
        10,
        include_str!("../../../schema/sqlite/010_append_layout.sql"),
    ),
];

/// Puts the database in WAL mode and applies pending migrations; returns the schema version
/// before and after.
pub(super) fn migrate(conn: &Connection) -> Result<(i64, i64), String> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| format!("journal mode: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("could not switch to WAL (journal mode is {mode})"));
    }
    // Up to date (every start after the first): no need for the write lock, which another
    // process may hold for a while.
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("schema version: {e}"))?;
    if version >= latest {
        return Ok((version, version));
    }
    // Version 10 drops the old message tables: their freed pages are zeroed, as a
    // retraction's bytes are, instead of keeping every message's text in free space.
    conn.execute_batch("PRAGMA secure_delete = ON")
        .map_err(|e| format!("secure_delete: {e}"))?;
    begin_after_others(conn)?;
    let applied = apply(conn);
    let end = if applied.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    conn.execute_batch(end).map_err(|e| e.to_string())?;
    if matches!(applied, Ok((before, after)) if after > before) {
        empty_wal(conn);
    }
    applied.map_err(|e| e.to_string())
}

/// The copies passed through the WAL (gigabytes for a big database), and commits only trim it
/// past 1 GiB (writer.rs): empty it now, not when the node is first quiet.
fn empty_wal(conn: &Connection) {
    match super::writer::truncate_wal(conn) {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "a reader held the WAL after the migration: it is emptied once commits stop"
        ),
        Err(e) => tracing::warn!(error = %e, "emptying the WAL after the migration failed"),
    }
}

/// How long a process waits for another one's migration (the busy handler gives up after
/// about 5 s, and version 10 copies about a million messages in 10 s).
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(3600);

/// `BEGIN IMMEDIATE`, waiting while another process holds the write lock (most likely its
/// own migration). Each failed try has waited about 5 s in the busy handler.
fn begin_after_others(conn: &Connection) -> Result<(), String> {
    let started = Instant::now();
    let mut said = Duration::ZERO;
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < WAIT_FOR_OTHERS =>
            {
                let waited = started.elapsed();
                if waited >= said {
                    tracing::info!(
                        waited_secs = waited.as_secs(),
                        "waiting for the database's write lock to migrate (another process holds it)"
                    );
                    said = waited + Duration::from_secs(30);
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn apply(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let before: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut version = before;
    for (v, sql) in MIGRATIONS {
        if *v > version {
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!("PRAGMA user_version = {v}"))?;
            version = *v;
            tracing::info!(version = v, "applied SQLite migration");
        }
    }
    Ok((before, version))
}

/// Applies pending migrations to `<dir>/parley.db` (creating it) without starting a store:
/// `parley migrate`. Running it again is a no-op.
pub fn migrate_dir(dir: &Path) -> Result<(i64, i64), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    let path = dir.join("parley.db");
    let conn =
        super::open(&path, 2048, false).map_err(|e| format!("open {}: {e}", path.display()))?;
    migrate(&conn)
}

#[cfg(test)]
mod tests {
    use super::super::{cursors, messages};
    use super::*;
    use crate::storage::{AppendOutcome, NewMessage, Order, StoreError};

    fn message(client_id: &str, ts: i64) -> NewMessage {
        NewMessage {
            message_id: format!("m-{client_id}"),
            sender_id: "u".into(),
            sender_device_id: "d".into(),
            client_id: client_id.into(),
            ts,
            text: Some("hi".into()),
            attachments: vec![],
            meta: None,
            reply_to: None,
        }
    }

    fn schema_at(conn: &Connection, version: i64) {
        for (_, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version}"))
            .unwrap();
    }

    fn indexes(conn: &Connection, table: &str) -> Vec<(String, bool)> {
        let mut s = conn
            .prepare("SELECT name, \"unique\" FROM pragma_index_list(?1) ORDER BY name")
            .unwrap();
        s.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn columns(conn: &Connection, table: &str) -> Vec<(String, String, bool, Option<String>)> {
        let mut s = conn
            .prepare("SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info(?1) ORDER BY name")
            .unwrap();
        s.query_map([table], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Version 10 rebuilds the two busiest tables: the same columns, unique keys, what version
    /// 9 stored read the same afterwards, a retry of a key it stored is still a duplicate, a
    /// taken seq still a conflict, and a new message lands after the moved rows.
    #[test]
    fn version_10_keeps_messages_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("parley.db"), 2048, false).unwrap();
        schema_at(&conn, 9);
        let before = (columns(&conn, "messages"), columns(&conn, "idempotency"));
        // Keys written out of their stamps' order: the copy puts them in order.
        conn.execute_batch(
            "INSERT INTO messages (conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, reply_to)
                 VALUES ('k', 2, 'm2', 'u', 'd', 'c2', 9000, 'two', 1), ('k', 1, 'm1', 'u', 'd', 'c1', 1000, 'one', NULL);
             INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts, payload_hash)
                 VALUES ('d', 'c2', 'k', 2, 'm2', 9000, NULL), ('d', 'c1', 'k', 1, 'm1', 1000, NULL);",
        )
        .unwrap();
        let latest = MIGRATIONS.last().unwrap().0;
        assert_eq!(migrate(&conn).unwrap(), (9, latest));
        let wal = std::fs::metadata(dir.path().join("parley.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the copies do not stay in the WAL");
        assert_eq!(
            (columns(&conn, "messages"), columns(&conn, "idempotency")),
            before
        );
        assert_eq!(
            indexes(&conn, "messages"),
            [("messages_by_seq".into(), true)]
        );
        assert_eq!(
            indexes(&conn, "idempotency"),
            [("idempotency_by_key".into(), true)]
        );

        let page = messages::page(&conn, "k", 0, 100, 10, Order::Asc).unwrap();
        let texts: Vec<_> = page.iter().map(|m| (m.seq, m.text.clone())).collect();
        assert_eq!(texts, [(1, Some("one".into())), (2, Some("two".into()))]);
        assert_eq!(page[1].reply_to, Some(1));

        let out = messages::append(
            &conn,
            "k",
            3,
            &[message("c1", 10_000), message("c3", 10_000)],
        )
        .unwrap();
        assert!(
            matches!(out[0], AppendOutcome::Duplicate { seq: 1, .. }),
            "{:?}",
            out[0]
        );
        assert_eq!(out[1], AppendOutcome::Stored { seq: 3 });
        let taken = messages::append(&conn, "k", 3, &[message("c4", 10_000)]);
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
        let last: i64 = conn
            .query_row(
                "SELECT seq FROM messages ORDER BY rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(last, 3, "appended at the table's edge");
        // The copy ordered the keys by their stamps: the oldest expires first.
        assert_eq!(
            cursors::expire_idempotency(&conn, 5_000, i64::MAX).unwrap(),
            1
        );
        let kept = messages::append(&conn, "k", 4, &[message("c2", 10_000)]).unwrap();
        assert!(matches!(kept[0], AppendOutcome::Duplicate { seq: 2, .. }));
    }

    /// Expiry drops the written-first keys up to the first one still young, and a key stamped
    /// past the horizon (a clock that ran ahead) does not hold up the ones after it.
    #[test]
    fn keys_expire_as_a_prefix_that_a_clock_error_cannot_stall() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("parley.db"), 2048, false).unwrap();
        migrate(&conn).unwrap();
        // A TTL of 10 s: the horizon is 20 s past `before`.
        assert_eq!(cursors::expiry_horizon(5_000, 10_000), 25_000);
        assert_eq!(cursors::expiry_horizon(i64::MAX - 1, 10_000), i64::MAX);
        let expire = |before| {
            let horizon = cursors::expiry_horizon(before, 10_000);
            cursors::expire_idempotency(&conn, before, horizon).unwrap()
        };
        assert_eq!(expire(5_000), 0, "an empty table");
        for (client_id, ts) in [
            ("a", 1_000),
            ("far", 900_000),
            ("b", 2_000),
            ("c", 9_000),
            ("d", 8_000),
        ] {
            conn.execute(
                "INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts) VALUES ('d', ?1, 'k', 1, 'm', ?2)",
                rusqlite::params![client_id, ts],
            )
            .unwrap();
        }
        assert_eq!(expire(500), 0, "none expired");
        // a, far (past the horizon of 25,000) and b go; c is young and holds d behind it.
        assert_eq!(expire(5_000), 3);
        assert_eq!(expire(8_500), 0, "d waits for c, written before it");
        assert_eq!(expire(9_500), 2);
        assert_eq!(expire(9_500), 0);
    }
}
