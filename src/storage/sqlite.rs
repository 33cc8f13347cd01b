//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to one dedicated writer thread that owns the only write connection and does
//! group commit: it takes every job queued so far (up to `max_batch`), runs each inside its
//! own savepoint, commits once (one fsync with `durability = "fsync"`), and only then answers
//! the callers. An ack therefore never leaves before its commit has returned. Reads run on a
//! fixed pool of reader threads with their own connections; WAL lets them proceed while the
//! writer commits.
//!
//! WAL checkpoints: SQLite's automatic checkpoint runs inside a commit and stalled every send
//! queued behind it for 50-400 ms on this machine. Instead a checkpoint thread copies WAL
//! frames into the database (PASSIVE, every 50 ms) beside the writer, and the writer itself
//! runs a PASSIVE checkpoint at most every 250 ms, right after a commit: little is left to copy
//! by then, and only a checkpoint from the writer's side lets the WAL rewind instead of
//! growing without bound.

use super::*;
use crate::config::{Durability, StorageConfig};
use crate::metrics::Metrics;
use parley_protocol::DeleteScope;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../schema/sqlite/001_init.sql"))];

/// Called with the outcome of the commit that the job's writes went into.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs on the writer thread inside the batch's transaction; `None` means the batch could not
/// start, so the job must not touch the database and only report the failure.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

enum Cmd {
    Job(Job),
    Close(oneshot::Sender<()>),
}

pub struct SqliteStore {
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
    /// Unbounded on purpose: a bounded tokio channel hands send permits to queued futures,
    /// which may sit unpolled (see `ReadPool`). The depth is bounded upstream: one append in
    /// flight per conversation actor, and rate-limited cursor moves.
    writer: mpsc::UnboundedSender<Cmd>,
    readers: ReadPool,
}

/// A fixed set of reader threads, each owning one read connection, taking jobs from one
/// queue. A caller's future holds nothing but the receiver of its answer: futures may sit
/// unpolled for a while (an actor in `ctx.wait` does not poll its other futures), and an
/// earlier design that bounded reads with an async semaphore deadlocked when permits were
/// handed to such futures.
struct ReadPool {
    jobs: Mutex<Option<std::sync::mpsc::Sender<ReadJob>>>,
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

impl ReadPool {
    /// Readers keep a small page cache and read through mmap: in WAL mode a reader drops its
    /// whole cache whenever the database changed since its last read, which under a steady
    /// write load is every read (clearing a 64 MiB cache cost 6% of the server's CPU).
    fn start(path: &Path, threads: usize) -> Result<ReadPool, String> {
        let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let conn = open(path, 2048, true)
                .and_then(|c| c.execute_batch("PRAGMA mmap_size = 268435456;").map(|_| c))
                .map_err(|e| format!("open reader: {e}"))?;
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("parley-sqlite-r{i}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap().recv();
                    match job {
                        Ok(job) => job(&conn),
                        Err(_) => return,
                    }
                })
                .map_err(|e| format!("reader thread: {e}"))?;
        }
        Ok(ReadPool {
            jobs: Mutex::new(Some(tx)),
        })
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
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

fn open(path: &Path, cache_kib: u64, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_handler(Some(busy))?;
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib}; PRAGMA foreign_keys = OFF;"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/parley.db`, applies migrations and starts the writer.
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
        // secure_delete: a retraction overwrites the purged content's bytes instead of leaving
        // them in free space.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA secure_delete = ON;
             PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;
             PRAGMA temp_store = MEMORY;"
        ))
        .map_err(|e| format!("pragmas: {e}"))?;
        migrate(&conn).map_err(|e| format!("migrate: {e}"))?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer =
            open(&path, 1024, false).map_err(|e| format!("open checkpointer: {e}"))?;
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("parley-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stop2))
            .map_err(|e| format!("checkpoint thread: {e}"))?;

        let (tx, rx) = mpsc::unbounded_channel::<Cmd>();
        let max_batch = cfg.max_batch;
        std::thread::Builder::new()
            .name("parley-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch, metrics))
            .map_err(|e| format!("writer thread: {e}"))?;
        Ok(SqliteStore {
            stop_checkpoints: stop,
            writer: tx,
            readers: ReadPool::start(&path, cfg.readers)?,
        })
    }

    /// Runs `f` in the next group commit; resolves once that commit has returned.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
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
                let _ = otx.send(r);
            })
        });
        self.writer
            .send(Cmd::Job(job))
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        orx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    /// Runs `f` on one of the reader threads (see `ReadPool`).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Connection| {
            let _ = otx.send(f(conn));
        });
        let sent = match self.readers.jobs.lock().unwrap().as_ref() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        orx.await
            .map_err(|_| StoreError::Unavailable("store reader stopped".into()))?
    }
}

/// Applies pending migrations to `<dir>/parley.db` (creating it) without starting a store:
/// `parley migrate`. Returns the schema version before and after; running it again is a no-op.
pub fn migrate_dir(dir: &Path) -> Result<(i64, i64), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    let path = dir.join("parley.db");
    let conn = open(&path, 2048, false).map_err(|e| format!("open {}: {e}", path.display()))?;
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .map_err(|e| format!("pragmas: {e}"))?;
    let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let before = version(&conn).map_err(|e| e.to_string())?;
    migrate(&conn).map_err(|e| format!("migrate: {e}"))?;
    let after = version(&conn).map_err(|e| e.to_string())?;
    Ok((before, after))
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (v, sql) in MIGRATIONS {
        if *v > version {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {v}"))?;
            tx.commit()?;
            tracing::info!(version = v, "applied SQLite migration");
        }
    }
    Ok(())
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.execute_batch("SAVEPOINT job").map_err(internal)?;
    let r = f(conn);
    let end = if r.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    if let Err(e) = conn.execute_batch(end) {
        return Err(internal(e));
    }
    r
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    max_batch: usize,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Cmd> = Vec::with_capacity(max_batch);
    let mut last_checkpoint = Instant::now();
    loop {
        batch.clear();
        if rx.blocking_recv_many(&mut batch, max_batch) == 0 {
            break;
        }
        let started = Instant::now();
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = &began {
            tracing::error!(error = %e, "store writer could not begin a transaction");
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let mut close: Vec<oneshot::Sender<()>> = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                Cmd::Job(job) => replies.push(job(began.as_ref().ok().map(|_| &conn))),
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
        if last_checkpoint.elapsed() >= std::time::Duration::from_millis(250) {
            last_checkpoint = Instant::now();
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
        if !close.is_empty() {
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
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

fn checkpoint_loop(conn: Connection, stop: Arc<std::sync::atomic::AtomicBool>) {
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

fn to_i(v: u64) -> i64 {
    v as i64
}

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let attachments: Option<String> = r.get(8)?;
    Ok(StoredMessage {
        conversation_id: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        message_id: r.get(2)?,
        sender_id: r.get(3)?,
        sender_device_id: r.get(4)?,
        client_id: r.get(5)?,
        ts: r.get(6)?,
        text: r.get(7)?,
        attachments: attachments
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
        meta: r.get(9)?,
        deleted: r.get::<_, i64>(10)? != 0,
        deleted_by: r.get(11)?,
    })
}

const MESSAGE_COLS: &str =
    "conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, attachments, meta, deleted, deleted_by";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        user_id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        password_hash: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device_id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn retraction_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Retraction> {
    let scope: String = r.get(3)?;
    Ok(Retraction {
        conversation_id: r.get(0)?,
        event_no: r.get::<_, i64>(1)? as u64,
        seq: r.get::<_, i64>(2)? as u64,
        scope: if scope == "me" {
            DeleteScope::Me
        } else {
            DeleteScope::Everyone
        },
        by_user: r.get(4)?,
        for_user: r.get(5)?,
        ts: r.get(6)?,
    })
}

/// Gives every device of `user_id` a cursor at `seq` in the conversation (if it has none).
fn init_device_cursors(
    conn: &Connection,
    conversation_id: &str,
    user_id: &str,
    seq: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO device_cursors (device_id, conversation_id, delivered_seq, retraction_cursor)
         SELECT device_id, ?1, ?2,
                COALESCE((SELECT MAX(event_no) FROM retractions WHERE conversation_id = ?1), 0)
         FROM devices WHERE user_id = ?3",
    )?
    .execute(params![conversation_id, to_i(seq), user_id])?;
    Ok(())
}

fn log_retraction(conn: &Connection, r: &Retraction) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO retractions (conversation_id, event_no, seq, scope, by_user, for_user, ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        r.conversation_id,
        to_i(r.event_no),
        to_i(r.seq),
        r.scope.as_str(),
        r.by_user,
        r.for_user,
        r.ts
    ])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, u: UserRow) -> StoreResult<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO users (user_id, username, display_name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![u.user_id, u.username, u.display_name, u.password_hash, u.created_at]))
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("username is taken".into())
                } else {
                    internal(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRow>> {
        let username = username.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT user_id, username, display_name, password_hash, created_at FROM users WHERE username = ?1")
                .and_then(|mut s| s.query_row([username], user_from_row).optional())
                .map_err(internal)
        })
        .await
    }

    async fn user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT user_id, username, display_name, password_hash, created_at FROM users WHERE user_id = ?1")
                .and_then(|mut s| s.query_row([user_id], user_from_row).optional())
                .map_err(internal)
        })
        .await
    }

    async fn create_device(&self, d: DeviceRow) -> StoreResult<()> {
        self.write(move |c| {
            c.prepare_cached("INSERT INTO devices (device_id, user_id, name, created_at) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![d.device_id, d.user_id, d.name, d.created_at]))
                .map_err(internal)?;
            c.prepare_cached(
                "INSERT OR IGNORE INTO device_cursors (device_id, conversation_id, delivered_seq, retraction_cursor)
                 SELECT ?1, m.conversation_id,
                        MAX(m.joined_seq, COALESCE((SELECT MAX(seq) FROM messages g WHERE g.conversation_id = m.conversation_id), 0)),
                        COALESCE((SELECT MAX(event_no) FROM retractions r WHERE r.conversation_id = m.conversation_id), 0)
                 FROM members m WHERE m.user_id = ?2",
            )
            .and_then(|mut s| s.execute(params![d.device_id, d.user_id]))
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn device(&self, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        let device_id = device_id.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT device_id, user_id, name, created_at FROM devices WHERE device_id = ?1",
            )
            .and_then(|mut s| s.query_row([device_id], device_from_row).optional())
            .map_err(internal)
        })
        .await
    }

    async fn devices_of_user(&self, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT device_id, user_id, name, created_at FROM devices WHERE user_id = ?1",
                )
                .map_err(internal)?;
            let rows = s.query_map([user_id], device_from_row).map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn set_push_target(
        &self,
        device_id: &str,
        provider: &str,
        token: Option<String>,
        endpoint: Option<String>,
    ) -> StoreResult<()> {
        let (device_id, provider) = (device_id.to_string(), provider.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached("UPDATE devices SET push_provider = ?2, push_token = ?3, push_endpoint = ?4 WHERE device_id = ?1")
                .and_then(|mut s| s.execute(params![device_id, provider, token, endpoint]))
                .map_err(internal)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn create_conversation(
        &self,
        row: ConversationRow,
        members: Vec<(String, Role)>,
        direct_key: Option<String>,
    ) -> StoreResult<CreateOutcome> {
        self.write(move |c| {
            if let Some(key) = &direct_key {
                let existing: Option<String> = c
                    .prepare_cached("SELECT conversation_id FROM conversations WHERE direct_key = ?1")
                    .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                    .map_err(internal)?;
                if let Some(id) = existing {
                    return Ok(CreateOutcome::Existing(id));
                }
            }
            c.prepare_cached(
                "INSERT INTO conversations (conversation_id, kind, title, created_by, created_at, direct_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![row.conversation_id, row.kind.as_str(), row.title, row.created_by, row.created_at, direct_key])
            })
            .map_err(internal)?;
            for (user_id, role) in &members {
                c.prepare_cached("INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?1, ?2, ?3, 0)")
                    .and_then(|mut s| s.execute(params![row.conversation_id, user_id, role.as_str()]))
                    .map_err(internal)?;
                init_device_cursors(c, &row.conversation_id, user_id, 0).map_err(internal)?;
            }
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn load_conversation(
        &self,
        conversation_id: &str,
    ) -> StoreResult<Option<ConversationState>> {
        let id = conversation_id.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT conversation_id, kind, title, created_by, created_at FROM conversations WHERE conversation_id = ?1")
                .and_then(|mut s| {
                    s.query_row([&id], |r| {
                        let kind: String = r.get(1)?;
                        Ok(ConversationRow {
                            conversation_id: r.get(0)?,
                            kind: if kind == "direct" { ConversationKind::Direct } else { ConversationKind::Group },
                            title: r.get(2)?,
                            created_by: r.get(3)?,
                            created_at: r.get(4)?,
                        })
                    })
                    .optional()
                })
                .map_err(internal)?;
            let Some(row) = row else { return Ok(None) };
            let mut s = c
                .prepare_cached("SELECT user_id, role, joined_seq, delivered_seq, read_seq FROM members WHERE conversation_id = ?1")
                .map_err(internal)?;
            let members = s
                .query_map([&id], |r| {
                    let role: String = r.get(1)?;
                    Ok(MemberRow {
                        user_id: r.get(0)?,
                        role: Role::parse(&role),
                        joined_seq: r.get::<_, i64>(2)? as u64,
                        delivered_seq: r.get::<_, i64>(3)? as u64,
                        read_seq: r.get::<_, i64>(4)? as u64,
                    })
                })
                .map_err(internal)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(internal)?;
            let last_seq: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?1")
                .and_then(|mut s| s.query_row([&id], |r| r.get(0)))
                .map_err(internal)?;
            let last_event: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(event_no), 0) FROM retractions WHERE conversation_id = ?1")
                .and_then(|mut s| s.query_row([&id], |r| r.get(0)))
                .map_err(internal)?;
            Ok(Some(ConversationState {
                row,
                members,
                last_seq: last_seq as u64,
                last_event_no: last_event as u64,
            }))
        })
        .await
    }

    async fn conversation_ids_of_user(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT conversation_id FROM members WHERE user_id = ?1 ORDER BY conversation_id")
                .map_err(internal)?;
            let rows = s.query_map([user_id], |r| r.get(0)).map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn contacts_of_user(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT DISTINCT m2.user_id FROM members m1 JOIN members m2 ON m2.conversation_id = m1.conversation_id
                     WHERE m1.user_id = ?1 AND m2.user_id != ?1",
                )
                .map_err(internal)?;
            let rows = s.query_map([user_id], |r| r.get(0)).map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn add_members(
        &self,
        conversation_id: &str,
        user_ids: Vec<String>,
        joined_seq: u64,
    ) -> StoreResult<()> {
        let id = conversation_id.to_string();
        self.write(move |c| {
            for u in &user_ids {
                c.prepare_cached(
                    "INSERT INTO members (conversation_id, user_id, role, joined_seq, delivered_seq, read_seq)
                     VALUES (?1, ?2, 'member', ?3, ?3, ?3)
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![id, u, to_i(joined_seq)]))
                .map_err(internal)?;
                c.prepare_cached("DELETE FROM device_cursors WHERE conversation_id = ?1 AND device_id IN (SELECT device_id FROM devices WHERE user_id = ?2)")
                    .and_then(|mut s| s.execute(params![id, u]))
                    .map_err(internal)?;
                init_device_cursors(c, &id, u, joined_seq).map_err(internal)?;
            }
            Ok(())
        })
        .await
    }

    async fn remove_member(&self, conversation_id: &str, user_id: &str) -> StoreResult<()> {
        let (id, u) = (conversation_id.to_string(), user_id.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")
                .and_then(|mut s| s.execute(params![id, u]))
                .map_err(internal)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn device_conversations(
        &self,
        device_id: &str,
        user_id: &str,
    ) -> StoreResult<Vec<DeviceConversation>> {
        let (d, u) = (device_id.to_string(), user_id.to_string());
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT m.conversation_id,
                            COALESCE((SELECT MAX(seq) FROM messages g WHERE g.conversation_id = m.conversation_id), 0),
                            COALESCE(dc.delivered_seq, m.joined_seq),
                            m.read_seq,
                            COALESCE(dc.retraction_cursor, 0),
                            m.joined_seq
                     FROM members m
                     LEFT JOIN device_cursors dc ON dc.device_id = ?1 AND dc.conversation_id = m.conversation_id
                     WHERE m.user_id = ?2
                     ORDER BY m.conversation_id",
                )
                .map_err(internal)?;
            let rows = s
                .query_map(params![d, u], |r| {
                    Ok(DeviceConversation {
                        conversation_id: r.get(0)?,
                        last_seq: r.get::<_, i64>(1)? as u64,
                        delivered_seq: r.get::<_, i64>(2)? as u64,
                        read_seq: r.get::<_, i64>(3)? as u64,
                        retraction_cursor: r.get::<_, i64>(4)? as u64,
                        joined_seq: r.get::<_, i64>(5)? as u64,
                    })
                })
                .map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn append(
        &self,
        conversation_id: &str,
        first_seq: u64,
        messages: Arc<[NewMessage]>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        let id = conversation_id.to_string();
        self.write(move |c| {
            let mut out = Vec::with_capacity(messages.len());
            let mut seq = first_seq;
            for m in messages.iter() {
                let dup = c
                    .prepare_cached(
                        "SELECT conversation_id, seq, message_id, ts FROM idempotency WHERE device_id = ?1 AND client_id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![m.sender_device_id, m.client_id], |r| {
                            Ok(AppendOutcome::Duplicate {
                                conversation_id: r.get(0)?,
                                seq: r.get::<_, i64>(1)? as u64,
                                message_id: r.get(2)?,
                                ts: r.get(3)?,
                            })
                        })
                        .optional()
                    })
                    .map_err(internal)?;
                if let Some(d) = dup {
                    out.push(d);
                    continue;
                }
                let attachments = if m.attachments.is_empty() {
                    None
                } else {
                    Some(serde_json::to_string(&m.attachments).map_err(internal)?)
                };
                c.prepare_cached(&format!(
                    "INSERT INTO messages ({MESSAGE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, NULL)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        to_i(seq),
                        m.message_id,
                        m.sender_id,
                        m.sender_device_id,
                        m.client_id,
                        m.ts,
                        m.text,
                        attachments,
                        m.meta
                    ])
                })
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict(format!("seq {seq} is taken"))
                    } else {
                        internal(e)
                    }
                })?;
                c.prepare_cached(
                    "INSERT INTO idempotency (device_id, client_id, conversation_id, seq, message_id, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| s.execute(params![m.sender_device_id, m.client_id, id, to_i(seq), m.message_id, m.ts]))
                .map_err(internal)?;
                for a in &m.attachments {
                    c.prepare_cached("INSERT OR IGNORE INTO file_grants (file_id, conversation_id, seq) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![a.file_id, id, to_i(seq)]))
                        .map_err(internal)?;
                }
                out.push(AppendOutcome::Stored { seq });
                seq += 1;
            }
            Ok(out)
        })
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
        self.read(move |c| {
            let dir = if order == Order::Asc { "ASC" } else { "DESC" };
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq {dir} LIMIT ?4"
                ))
                .map_err(internal)?;
            let rows = s
                .query_map(params![id, to_i(after), to_i(before.min(i64::MAX as u64)), limit], message_from_row)
                .map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn message(&self, conversation_id: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        let id = conversation_id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ?1 AND seq = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![id, to_i(seq)], message_from_row)
                    .optional()
            })
            .map_err(internal)
        })
        .await
    }

    async fn senders_between(
        &self,
        conversation_id: &str,
        after: u64,
        upto: u64,
    ) -> StoreResult<Vec<String>> {
        let id = conversation_id.to_string();
        self.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT DISTINCT sender_id FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND seq <= ?3")
                .map_err(internal)?;
            let rows = s.query_map(params![id, to_i(after), to_i(upto)], |r| r.get(0)).map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn count_unread(
        &self,
        conversation_id: &str,
        user_id: &str,
        after: u64,
    ) -> StoreResult<u64> {
        let (id, u) = (conversation_id.to_string(), user_id.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND sender_id != ?3 AND deleted = 0
                 AND seq NOT IN (SELECT seq FROM hidden WHERE user_id = ?3 AND conversation_id = ?1)",
            )
            .and_then(|mut s| s.query_row(params![id, to_i(after), u], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(internal)
        })
        .await
    }

    async fn retract(&self, r: Retraction) -> StoreResult<()> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE messages SET text = NULL, attachments = NULL, meta = NULL, deleted = 1, deleted_by = ?3 WHERE conversation_id = ?1 AND seq = ?2",
                )
                .and_then(|mut s| s.execute(params![r.conversation_id, to_i(r.seq), r.by_user]))
                .map_err(internal)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            c.prepare_cached("DELETE FROM file_grants WHERE conversation_id = ?1 AND seq = ?2")
                .and_then(|mut s| s.execute(params![r.conversation_id, to_i(r.seq)]))
                .map_err(internal)?;
            log_retraction(c, &r).map_err(internal)
        })
        .await
    }

    async fn hide(&self, r: Retraction) -> StoreResult<()> {
        self.write(move |c| {
            let user = r.for_user.clone().unwrap_or_default();
            c.prepare_cached(
                "INSERT OR IGNORE INTO hidden (user_id, conversation_id, seq) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![user, r.conversation_id, to_i(r.seq)]))
            .map_err(internal)?;
            log_retraction(c, &r).map_err(internal)
        })
        .await
    }

    async fn retractions_since(
        &self,
        conversation_id: &str,
        user_id: &str,
        after_event: u64,
        limit: u32,
    ) -> StoreResult<Vec<Retraction>> {
        let (id, u) = (conversation_id.to_string(), user_id.to_string());
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT conversation_id, event_no, seq, scope, by_user, for_user, ts FROM retractions
                     WHERE conversation_id = ?1 AND event_no > ?2 AND (for_user IS NULL OR for_user = ?3)
                     ORDER BY event_no LIMIT ?4",
                )
                .map_err(internal)?;
            let rows = s
                .query_map(params![id, to_i(after_event), u, limit], retraction_from_row)
                .map_err(internal)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(internal)
        })
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
        self.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT seq FROM hidden WHERE user_id = ?1 AND conversation_id = ?2 AND seq > ?3 AND seq < ?4")
                .map_err(internal)?;
            let rows = s
                .query_map(params![u, id, to_i(after), to_i(before.min(i64::MAX as u64))], |r| r.get::<_, i64>(0))
                .map_err(internal)?;
            rows.map(|r| r.map(|v| v as u64)).collect::<Result<Vec<_>, _>>().map_err(internal)
        })
        .await
    }

    async fn advance_cursors(&self, updates: Vec<CursorUpdate>) -> StoreResult<()> {
        self.write(move |c| {
            for u in &updates {
                let r = match u {
                    CursorUpdate::DeviceDelivered { device_id, conversation_id, seq } => c
                        .prepare_cached(
                            "UPDATE device_cursors SET delivered_seq = MAX(delivered_seq, ?3) WHERE device_id = ?1 AND conversation_id = ?2",
                        )
                        .and_then(|mut s| s.execute(params![device_id, conversation_id, to_i(*seq)])),
                    CursorUpdate::DeviceRetractions { device_id, conversation_id, event_no } => c
                        .prepare_cached(
                            "UPDATE device_cursors SET retraction_cursor = MAX(retraction_cursor, ?3) WHERE device_id = ?1 AND conversation_id = ?2",
                        )
                        .and_then(|mut s| s.execute(params![device_id, conversation_id, to_i(*event_no)])),
                    CursorUpdate::UserDelivered { user_id, conversation_id, seq } => c
                        .prepare_cached(
                            "UPDATE members SET delivered_seq = MAX(delivered_seq, ?3) WHERE conversation_id = ?2 AND user_id = ?1",
                        )
                        .and_then(|mut s| s.execute(params![user_id, conversation_id, to_i(*seq)])),
                    CursorUpdate::UserRead { user_id, conversation_id, seq } => c
                        .prepare_cached(
                            "UPDATE members SET read_seq = MAX(read_seq, ?3), delivered_seq = MAX(delivered_seq, ?3) WHERE conversation_id = ?2 AND user_id = ?1",
                        )
                        .and_then(|mut s| s.execute(params![user_id, conversation_id, to_i(*seq)])),
                };
                r.map_err(internal)?;
            }
            Ok(())
        })
        .await
    }

    async fn expire_idempotency(&self, before_ts: i64) -> StoreResult<u64> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM idempotency WHERE ts < ?1")
                .and_then(|mut s| s.execute([before_ts]))
                .map(|n| n as u64)
                .map_err(internal)
        })
        .await
    }

    async fn create_file(&self, f: FileRow) -> StoreResult<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO files (file_id, uploader_id, size, content_type, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![f.file_id, f.uploader_id, to_i(f.size), f.content_type, f.sha256, f.created_at]))
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn file(&self, file_id: &str) -> StoreResult<Option<FileRow>> {
        let id = file_id.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT file_id, uploader_id, size, content_type, sha256, created_at FROM files WHERE file_id = ?1")
                .and_then(|mut s| {
                    s.query_row([id], |r| {
                        Ok(FileRow {
                            file_id: r.get(0)?,
                            uploader_id: r.get(1)?,
                            size: r.get::<_, i64>(2)? as u64,
                            content_type: r.get(3)?,
                            sha256: r.get(4)?,
                            created_at: r.get(5)?,
                        })
                    })
                    .optional()
                })
                .map_err(internal)
        })
        .await
    }

    async fn file_visible_to(&self, file_id: &str, user_id: &str) -> StoreResult<bool> {
        let (f, u) = (file_id.to_string(), user_id.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM files WHERE file_id = ?1 AND uploader_id = ?2)
                     OR EXISTS (SELECT 1 FROM file_grants g JOIN members m
                                ON m.conversation_id = g.conversation_id AND m.user_id = ?2
                                WHERE g.file_id = ?1)",
            )
            .and_then(|mut s| s.query_row(params![f, u], |r| r.get::<_, bool>(0)))
            .map_err(internal)
        })
        .await
    }

    async fn orphaned_blobs(&self, file_ids: Vec<String>) -> StoreResult<Vec<String>> {
        self.write(move |c| {
            let mut blobs = Vec::new();
            for f in file_ids {
                let granted: bool = c
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM file_grants WHERE file_id = ?1)")
                    .and_then(|mut s| s.query_row([&f], |r| r.get(0)))
                    .map_err(internal)?;
                if granted {
                    continue;
                }
                let sha: Option<String> = c
                    .prepare_cached("DELETE FROM files WHERE file_id = ?1 RETURNING sha256")
                    .and_then(|mut s| s.query_row([&f], |r| r.get(0)).optional())
                    .map_err(internal)?;
                if let Some(sha) = sha {
                    let shared: bool = c
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = ?1)")
                        .and_then(|mut s| s.query_row([&sha], |r| r.get(0)))
                        .map_err(internal)?;
                    if !shared {
                        blobs.push(sha);
                    }
                }
            }
            Ok(blobs)
        })
        .await
    }

    async fn check_writable(&self) -> StoreResult<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.write(move |c| {
            c.prepare_cached("INSERT INTO kv (key, value) VALUES ('readyz', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .and_then(|mut s| s.execute([now.to_string()]))
                .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        self.stop_checkpoints
            .store(true, std::sync::atomic::Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        // Dropping the queue lets the reader threads finish their jobs and exit.
        self.readers.jobs.lock().unwrap().take();
    }
}
