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
