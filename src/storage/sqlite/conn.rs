//! Connections: how each one is opened (flags, busy handler, cache, statement cache), and
//! what SQLite's errors mean to the store's callers.

use crate::storage::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Runs a statement without parameters through the statement cache (transaction control:
/// parsing `BEGIN` or `SAVEPOINT` for every job showed in the profiles).
pub(super) fn exec_cached(c: &Connection, stmt: &str) -> rusqlite::Result<usize> {
    c.prepare_cached(stmt).and_then(|mut s| s.execute([]))
}

pub(super) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A SQLite error as a store error: the conditions of the machine (a full disk, an I/O error,
/// a lock held too long) are `Unavailable`, which callers retry; anything else is a fault.
pub(super) fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(
            C::DiskFull
            | C::SystemIoFailure
            | C::DatabaseBusy
            | C::DatabaseLocked
            | C::CannotOpen
            | C::ReadOnly
            | C::OutOfMemory,
        ) => StoreError::Unavailable(e.to_string()),
        _ => internal(e),
    }
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Waits for a lock held by another connection (another node's writer, in a cluster sharing
/// the file) for up to about 5 s. SQLite's own busy timeout sleeps 10-100 ms between tries,
/// which is 10-50 commits of another node: polling every 0.2-1 ms took the 3-node ack latency
/// p99.9 from 3.0-3.4 s to about 0.57 s on the 2-core project machine (`load-tests/cluster`).
fn busy(attempt: i32) -> bool {
    let pause = if attempt < 50 { 200 } else { 1000 };
    std::thread::sleep(std::time::Duration::from_micros(pause));
    attempt < 5000
}

pub(super) fn open(path: &Path, cache_kib: u64, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    if !super::pcache::install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::debug!("SQLite was initialized before the store: its default page cache stays")
        });
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_handler(Some(busy))?;
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib}; PRAGMA foreign_keys = OFF;"
    ))?;
    // Above the number of distinct statements (about 120 with v1.1): a statement evicted
    // from the cache is parsed again on its next use, which showed in the storm's profile.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}
