//! The writer thread: group commit.
//!
//! It takes every job queued so far (up to `max_batch`), runs each inside its own savepoint
//! within one `BEGIN IMMEDIATE` transaction, commits once (one fsync with `durability =
//! "fsync"`), and only then answers the callers: an ack never leaves before its commit.
//!
//! WAL checkpoints: SQLite's automatic checkpoint runs inside a commit and stalled every send
//! queued behind it for 50-400 ms on this machine. Instead a checkpoint thread copies WAL
//! frames into the database (PASSIVE, every 500 ms) beside the writer, and the writer itself
//! runs a PASSIVE checkpoint about once a second, right after one of the thread's passes: little
//! is left to copy by then, and only a checkpoint from the writer's side lets the WAL rewind
//! instead of growing without bound. The interval is what dedupes pages: a conversation's tail
//! leaf is rewritten in the WAL by every commit but copied once per pass. Every 50 ms, the
//! checkpointer took 3.4-3.8 µs of CPU per 1:1 message at saturation; every 500 ms, 1.1-1.2 µs,
//! and the node wrote 13% fewer bytes to disk (`load-tests/README.md`, 2026-12-07). The WAL
//! holds about a second of commits (about 140 MB at 10k msgs/s here). The file is reused in
//! place while commits come and emptied once they stop (`checkpoint_loop`).

use super::{open, sql, StoreError, StoreResult};
use crate::metrics::Metrics;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Called with the outcome of the commit that the job's writes went into.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs on the writer thread inside the batch's transaction; `None` means the batch could not
/// start, so the job must not touch the database and only report the failure.
pub(super) type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// How often the checkpoint thread copies frames into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// The writer's own checkpoint: at most this often, right after a pass of the thread...
const WRITER_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// ...or after this long whatever the thread does, so that the WAL still rewinds.
const WRITER_CHECKPOINT_LATEST: Duration = Duration::from_secs(5);

/// What the checkpoint thread shares with the writer and the store.
pub(super) struct Checkpoints {
    stop: AtomicBool,
    /// Passes completed so far.
    passes: AtomicU64,
}

impl Checkpoints {
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

pub(super) enum Cmd {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// Wraps `f` as a job whose result reaches `tx` once its commit returned.
pub(super) fn job<T, F>(f: F, tx: oneshot::Sender<StoreResult<T>>) -> Job
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
{
    Box::new(move |conn: Option<&Connection>| {
        let result = match conn {
            None => Err(StoreError::Unavailable(
                "write transaction could not start".into(),
            )),
            Some(conn) => in_savepoint(conn, f),
        };
        Box::new(move |commit: Result<(), String>| {
            let r = match commit {
                Ok(()) => result,
                Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            };
            let _ = tx.send(r);
        })
    })
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    // A job is often a single small write: the savepoint statements go through the cache.
    let run = |stmt: &str| super::exec_cached(conn, stmt);
    run("SAVEPOINT job").map_err(sql)?;
    let r = f(conn);
    let end = if r.is_ok() {
        run("RELEASE job")
    } else {
        run("ROLLBACK TO job").and_then(|_| run("RELEASE job"))
    };
    if let Err(e) = end {
        return Err(sql(e));
    }
    r
}

/// Starts the writer thread on `conn`; returns its queue.
pub(super) fn start(
    conn: Connection,
    max_batch: usize,
    metrics: Arc<Metrics>,
    checkpoints: Arc<Checkpoints>,
) -> Result<mpsc::UnboundedSender<Cmd>, String> {
    let (tx, rx) = mpsc::unbounded_channel::<Cmd>();
    std::thread::Builder::new()
        .name("parley-sqlite-writer".into())
        .spawn(move || writer_loop(conn, rx, max_batch, metrics, &checkpoints))
        .map_err(|e| format!("writer thread: {e}"))?;
    Ok(tx)
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    max_batch: usize,
    metrics: Arc<Metrics>,
    checkpoints: &Checkpoints,
) {
    let mut batch: Vec<Cmd> = Vec::with_capacity(max_batch);
    let mut last_checkpoint = Instant::now();
    let mut passes_seen = checkpoints.passes.load(Ordering::Acquire);
    loop {
        batch.clear();
        if rx.blocking_recv_many(&mut batch, max_batch) == 0 {
            break;
        }
        let close = commit_batch(&conn, &mut batch, &metrics);
        let passes = checkpoints.passes.load(Ordering::Acquire);
        let since = last_checkpoint.elapsed();
        if (since >= WRITER_CHECKPOINT_EVERY && passes != passes_seen)
            || since >= WRITER_CHECKPOINT_LATEST
        {
            last_checkpoint = Instant::now();
            passes_seen = passes;
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
        if !close.is_empty() {
            if let Err(e) = truncate_wal(&conn) {
                tracing::warn!(error = %e, "final WAL checkpoint failed (the WAL is replayed on open)");
            }
            drop(conn);
            for done in close {
                let _ = done.send(());
            }
            // Refuse what is still queued: the store is closed.
            rx.close();
            while let Ok(Cmd::Job(job)) = rx.try_recv() {
                job(None)(Err("store is closed".into()));
            }
            return;
        }
    }
}

/// Runs one batch in one transaction and answers its jobs; returns the close requests in it.
fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Cmd>,
    metrics: &Metrics,
) -> Vec<oneshot::Sender<()>> {
    let started = Instant::now();
    let began = conn.execute_batch("BEGIN IMMEDIATE");
    if let Err(e) = &began {
        tracing::error!(error = %e, "store writer could not begin a transaction");
    }
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut close = Vec::new();
    for cmd in batch.drain(..) {
        match cmd {
            Cmd::Job(job) => replies.push(job(began.as_ref().ok().map(|_| conn))),
            Cmd::Close(done) => close.push(done),
        }
    }
    let outcome = match began {
        Ok(()) => conn.execute_batch("COMMIT").map_err(|e| {
            tracing::error!(error = %e, "store commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        }),
        Err(e) => Err(e.to_string()),
    };
    metrics
        .commit_latency
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_size.observe(replies.len() as f64);
    for reply in replies {
        reply(outcome.clone());
    }
    close
}

/// Starts the checkpoint thread; returns what it shares (its stop flag, its passes).
pub(super) fn start_checkpoints(path: &Path) -> Result<Arc<Checkpoints>, String> {
    let conn = open(path, 1024, false).map_err(|e| format!("open checkpointer: {e}"))?;
    // PASSIVE never calls the busy handler. Without one, TRUNCATE gives up at once when a
    // reader or a writer holds the WAL, instead of waiting for them with the write lock held.
    conn.busy_handler(None)
        .map_err(|e| format!("checkpointer busy handler: {e}"))?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let shared = Arc::new(Checkpoints {
        stop: AtomicBool::new(false),
        passes: AtomicU64::new(0),
    });
    let ours = shared.clone();
    std::thread::Builder::new()
        .name("parley-sqlite-checkpoint".into())
        .spawn(move || checkpoint_loop(&conn, &ours, &wal))
        .map_err(|e| format!("checkpoint thread: {e}"))?;
    Ok(shared)
}

/// Passes in a row without a commit from any connection before the WAL file is emptied (2 s).
const QUIET_PASSES: u32 = 4;

/// Every pass copies frames into the database (PASSIVE). Once `QUIET_PASSES` went by without
/// a commit from any connection (this node's writer, another node's on a shared file, the
/// push bridge's), the thread empties the WAL file (TRUNCATE), once per quiet spell.
///
/// Why not let commits trim it: `journal_size_limit` trims the file inside the first commit
/// after each rewind, and at 10k msgs/s the WAL grows by about 140 MB a second here. With the
/// 64 MiB limit of before, that commit freed the blocks past the limit and the commits after
/// it allocated them again: the commit after each rewind took 20-35 ms, once a second, and
/// every send queued behind it waited (ack p99 31-101 ms beside 10k idle connections, 6.6-8.6
/// ms with the file reused in place: `load-tests/README.md`, 2026-12-08). The limit is now
/// 1 GiB (`SqliteStore::open`): it bounds what a long reader can leave behind, and a steady
/// load stays under it.
fn checkpoint_loop(conn: &Connection, shared: &Checkpoints, wal: &Path) {
    let version = |c: &Connection| c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0));
    let mut seen = version(conn).ok();
    let mut quiet = 0u32;
    let mut emptied = false;
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let now = version(conn).ok();
        if now.is_some() && now == seen {
            quiet = quiet.saturating_add(1);
        } else {
            (quiet, emptied) = (0, false);
        }
        seen = now;
        let copied_all = passive(conn);
        if quiet >= QUIET_PASSES && !emptied {
            // An empty file is left alone: a TRUNCATE still writes a new WAL header, which
            // every other connection on the file counts as a change, and they would empty it
            // in turn.
            let has_frames = std::fs::metadata(wal).is_ok_and(|m| m.len() > 0);
            emptied = !has_frames || (copied_all && empty(conn));
        }
        shared.passes.fetch_add(1, Ordering::Release);
    }
}

/// A PASSIVE checkpoint; true if it copied every frame in the WAL.
fn passive(conn: &Connection) -> bool {
    let counts = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match counts {
        Ok((busy, frames, copied)) => busy == 0 && frames == copied,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed");
            false
        }
    }
}

/// A TRUNCATE checkpoint: copies what is left and empties the WAL file; `Ok(false)` if a
/// reader, a writer or another checkpointer held the WAL.
pub(super) fn truncate_wal(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|busy| busy == 0)
}

/// Empties the WAL file, every frame of which is already copied (so the write lock is held
/// only to truncate it); false if a reader, a writer or another checkpointer held the WAL.
fn empty(conn: &Connection) -> bool {
    match truncate_wal(conn) {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, "emptying the WAL failed");
            true // not tried again before the next quiet spell
        }
    }
}
