//! A fixed set of reader threads, each owning one read connection, taking jobs from one queue.
//!
//! A caller's future holds nothing but the receiver of its answer: futures may sit unpolled
//! for a while (an actor in `ctx.wait` does not poll its other futures), and an earlier design
//! that bounded reads with an async semaphore deadlocked when permits were handed to such
//! futures (ARCHITECTURE.md, invariant 7). The queue is unbounded for the same reason; its
//! depth is bounded by the callers (one read per request in flight).

use super::{open, StoreError, StoreResult};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub(super) struct ReadPool {
    jobs: Mutex<Option<std::sync::mpsc::Sender<ReadJob>>>,
}

impl ReadPool {
    /// Readers keep a small page cache and read through mmap: in WAL mode a reader drops its
    /// whole cache whenever the database changed since its last read, which under a steady
    /// write load is every read (clearing a 64 MiB cache cost 6% of the server's CPU).
    pub(super) fn start(path: &Path, threads: usize) -> Result<ReadPool, String> {
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

    pub(super) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Connection| {
            let _ = otx.send(f(conn));
        });
        let sent = match self.jobs.lock().unwrap().as_ref() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        orx.await
            .map_err(|_| StoreError::Unavailable("store reader stopped".into()))?
    }

    /// Dropping the queue lets the reader threads finish their jobs and exit.
    pub(super) fn close(&self) {
        self.jobs.lock().unwrap().take();
    }
}
