//! SQLite's own page cache, with one cost taken out of the writer's commits.
//!
//! When a page split leaves its new pages out of order, `balance_nonroot` swaps their numbers
//! through a temporary one, the locking page (page 262,145 with 4 KiB pages). The default
//! cache remembers that as the largest page number it has held, so at the end of the
//! transaction `sqlite3PcacheTruncate(dbSize)` believes pages beyond the end of the database
//! may exist and walks every page in the cache. With a database under 1 GiB that walk ran on
//! most commits that split a page: about 1.9 ms with the whole database cached, 6.7% of the
//! writer thread's samples under 1:1 load (`perf probe` on `pcache1TruncateUnsafe` showed
//! `iMaxKey = 0x40001`). No page keeps that number past the split.
//!
//! This wraps the default cache (`SQLITE_CONFIG_GETPCACHE2`) and passes every call through,
//! keeping its own exact bound on the page numbers present: a truncation that cannot drop
//! anything is not passed on. It must be installed before SQLite initializes, so it is done
//! once, before the process's first connection; if SQLite was initialized already (another
//! user of SQLite in the same process), the default cache stays and nothing else changes.

use rusqlite::ffi;
use std::os::raw::{c_int, c_uint};
use std::sync::OnceLock;

/// `PENDING_BYTE` of a default SQLite build: the locking page is the one holding this offset.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// The default cache's methods, kept for the wrappers to call.
static BASE: OnceLock<Methods> = OnceLock::new();

struct Methods(ffi::sqlite3_pcache_methods2);
// SAFETY: function pointers and SQLite's own `pArg`, which SQLite shares between threads
// itself; the struct is written once, before any cache exists, and only read after.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

/// Our cache handle: the default cache's, and what is known of the page numbers in it.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// At least the largest page number present, not counting the locking page.
    max_key: c_uint,
    lock_page: c_uint,
    /// A page holds the locking page's number now (between two rekeys of a split).
    lock_page_held: bool,
}

/// Installs the wrapper once per process; true if it is in use.
pub(super) fn install() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        let mut base = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
        // SAFETY: SQLITE_CONFIG_GETPCACHE2 writes the current methods into the struct.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, base.as_mut_ptr()) };
        if rc != ffi::SQLITE_OK {
            return false;
        }
        // SAFETY: filled by SQLite above.
        let base = unsafe { base.assume_init() };
        if base.xCreate.is_none() || BASE.set(Methods(base)).is_err() {
            return false;
        }
        let ours = ffi::sqlite3_pcache_methods2 {
            iVersion: base.iVersion,
            pArg: base.pArg,
            xInit: base.xInit,
            xShutdown: base.xShutdown,
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        };
        // SAFETY: SQLite copies the struct; it fails (SQLITE_MISUSE) once SQLite is
        // initialized, and then the default cache stays in place.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &ours) };
        rc == ffi::SQLITE_OK
    })
}

fn base() -> &'static ffi::sqlite3_pcache_methods2 {
    &BASE.get().expect("installed before any cache exists").0
}

/// # Safety
/// `p` is a handle returned by `create` and not yet destroyed.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    &mut *(p as *mut Cache)
}

unsafe extern "C" fn create(
    sz_page: c_int,
    sz_extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let inner = (base().xCreate.unwrap())(sz_page, sz_extra, purgeable);
    if inner.is_null() {
        return inner;
    }
    let lock_page = PENDING_BYTE / (sz_page.max(1) as c_uint) + 1;
    Box::into_raw(Box::new(Cache {
        inner,
        max_key: 0,
        lock_page,
        lock_page_held: false,
    })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    (base().xCachesize.unwrap())(cache(p).inner, n)
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    (base().xPagecount.unwrap())(cache(p).inner)
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = cache(p);
    let page = (base().xFetch.unwrap())(c.inner, key, create);
    if !page.is_null() {
        c.max_key = c.max_key.max(key);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    (base().xUnpin.unwrap())(cache(p).inner, page, discard)
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = cache(p);
    (base().xRekey.unwrap())(c.inner, page, old, new);
    if new == c.lock_page {
        c.lock_page_held = true;
    } else {
        c.max_key = c.max_key.max(new);
    }
    if old == c.lock_page {
        c.lock_page_held = false;
    }
}

#[cfg(test)]
static PASSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[cfg(test)]
static SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = cache(p);
    let held = if c.lock_page_held { c.lock_page } else { 0 };
    if limit > c.max_key.max(held) {
        #[cfg(test)]
        SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    #[cfg(test)]
    PASSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (base().xTruncate.unwrap())(c.inner, limit);
    c.max_key = c.max_key.min(limit.saturating_sub(1));
    if c.lock_page >= limit {
        c.lock_page_held = false;
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = Box::from_raw(p as *mut Cache);
    (base().xDestroy.unwrap())(c.inner)
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    if let Some(f) = base().xShrink {
        f(cache(p).inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// Page splits in the middle of a `WITHOUT ROWID` tree (most of the schema's tables),
    /// commits and rollbacks that grow the file: truncations that can drop nothing are
    /// skipped, the others still reach the default cache, and the database stays whole.
    #[test]
    fn truncations_that_drop_nothing_are_skipped_and_the_database_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let c = super::super::open(&dir.path().join("t.db"), 65536, false).unwrap();
        assert!(
            install(),
            "the wrapper is in place before the first connection"
        );
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE m (k TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT,
                             PRIMARY KEY (k, seq)) WITHOUT ROWID;",
        )
        .unwrap();
        let body = "x".repeat(200);
        let insert = |c: &rusqlite::Connection, from: i64, to: i64| {
            for seq in from..to {
                for k in 0..40 {
                    c.execute(
                        "INSERT INTO m VALUES (?1, ?2, ?3)",
                        rusqlite::params![format!("{k:032}"), seq, body],
                    )
                    .unwrap();
                }
            }
        };
        let (passed, skipped) = (PASSED.load(Relaxed), SKIPPED.load(Relaxed));
        for round in 0..20 {
            c.execute_batch("BEGIN").unwrap();
            insert(&c, round * 10, round * 10 + 10);
            c.execute_batch("COMMIT").unwrap();
            // A transaction that grows the file and is rolled back: its new pages must go.
            c.execute_batch("BEGIN").unwrap();
            insert(&c, 100_000 + round * 10, 100_000 + round * 10 + 10);
            c.execute_batch("ROLLBACK").unwrap();
        }
        assert!(SKIPPED.load(Relaxed) > skipped, "commits skip the walk");
        assert!(PASSED.load(Relaxed) > passed, "rollbacks still truncate");
        let n: i64 = c
            .query_row("SELECT count(*) FROM m", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20 * 10 * 40);
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let beyond: i64 = c
            .query_row("SELECT count(*) FROM m WHERE seq >= 100000", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(beyond, 0);
    }
}
