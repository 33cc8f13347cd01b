//! Schema migrations (`schema/sqlite/*.sql`), applied on start by `parley serve` and by
//! `parley migrate`.
//!
//! Several processes may migrate one database at the same moment (cluster nodes started
//! together on a fresh data directory, or `parley migrate` racing `parley serve`): the version
//! is read and the pending migrations applied inside one `BEGIN IMMEDIATE` transaction, so one
//! process migrates while the others wait for its lock and then find nothing left to do.

use rusqlite::Connection;
use std::path::Path;

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
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    let applied = apply(conn);
    let end = if applied.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    conn.execute_batch(end).map_err(|e| e.to_string())?;
    applied.map_err(|e| e.to_string())
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
    use super::*;
    use crate::storage::{AppendOutcome, NewMessage, Order};

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

    /// Version 10 rebuilds the two busiest tables: what version 9 stored must read the same
    /// afterwards, a retry of a key it stored must still be a duplicate, and a new message must
    /// land after the moved rows.
    #[test]
    fn version_10_keeps_messages_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("parley.db"), 2048, false).unwrap();
        for (_, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 9) {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 9;
             INSERT INTO messages (conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, reply_to)
                 VALUES ('k', 1, 'm1', 'u', 'd', 'c1', 1000, 'one', NULL), ('k', 2, 'm2', 'u', 'd', 'c2', 9000, 'two', 1);
             INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts, payload_hash)
                 VALUES ('d', 'c1', 'k', 1, 'm1', 1000, NULL), ('d', 'c2', 'k', 2, 'm2', 9000, NULL);",
        )
        .unwrap();
        let latest = MIGRATIONS.last().unwrap().0;
        assert_eq!(migrate(&conn).unwrap(), (9, latest));

        let page = super::super::messages::page(&conn, "k", 0, 100, 10, Order::Asc).unwrap();
        let texts: Vec<_> = page.iter().map(|m| (m.seq, m.text.clone())).collect();
        assert_eq!(texts, [(1, Some("one".into())), (2, Some("two".into()))]);
        assert_eq!(page[1].reply_to, Some(1));

        let out = super::super::messages::append(
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
        let last: i64 = conn
            .query_row(
                "SELECT seq FROM messages ORDER BY rowid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(last, 3, "appended at the table's edge");
        // Expiry takes the oldest keys only, up to the first that is still young.
        assert_eq!(
            super::super::cursors::expire_idempotency(&conn, 5_000).unwrap(),
            1
        );
        assert_eq!(
            super::super::cursors::expire_idempotency(&conn, 5_000).unwrap(),
            0
        );
        assert_eq!(
            super::super::cursors::expire_idempotency(&conn, 99_999).unwrap(),
            2
        );
    }
}
