//! Admission: how many WebSocket sessions, unauthenticated handshakes and uploads the node
//! takes at once.
//!
//! Each is a counter with a limit and a permit that gives its place back when dropped, so a
//! place is never leaked whatever path a session or an upload ends by. A refusal is an
//! answer in the contract's shape (503 `unavailable` for a full node, 429 `rate_limited` for
//! one user's uploads) and is counted in `/metrics`; everyone already admitted goes on being
//! served.

use crate::error::ApiError;
use crate::metrics::Metrics;
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Admission {
    sessions: AtomicUsize,
    max_sessions: usize,
    pending: AtomicUsize,
    max_pending: usize,
    uploads: DashMap<String, usize>,
    max_uploads: usize,
    metrics: Arc<Metrics>,
}

/// Takes one place of `counter` if fewer than `max` are taken.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Admission {
    pub fn new(
        max_sessions: usize,
        max_pending: usize,
        max_uploads: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            sessions: AtomicUsize::new(0),
            max_sessions,
            pending: AtomicUsize::new(0),
            max_pending,
            uploads: DashMap::new(),
            max_uploads,
            metrics,
        })
    }

    /// A place for a new WebSocket session, not yet authenticated.
    pub fn session(self: &Arc<Self>) -> Result<SessionPermit, ApiError> {
        if !take(&self.sessions, self.max_sessions) {
            self.metrics.connections_refused.inc();
            return Err(ApiError::unavailable(
                "this node holds all the connections it can; retry or use another node",
            ));
        }
        if !take(&self.pending, self.max_pending) {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            self.metrics.connections_refused.inc();
            return Err(ApiError::unavailable(
                "too many connections waiting to authenticate; retry",
            ));
        }
        self.metrics.sessions_pending.inc();
        Ok(SessionPermit {
            admission: self.clone(),
            pending: true,
        })
    }

    /// A place for one more upload of `user`.
    pub fn upload(self: &Arc<Self>, user: &str) -> Result<UploadPermit, ApiError> {
        let mut n = self.uploads.entry(user.to_string()).or_insert(0);
        if *n >= self.max_uploads {
            drop(n);
            self.metrics.uploads_refused.inc();
            return Err(ApiError::rate_limited(format!(
                "at most {} uploads at once",
                self.max_uploads
            )));
        }
        *n += 1;
        Ok(UploadPermit {
            admission: self.clone(),
            user: user.to_string(),
        })
    }
}

/// A WebSocket session's place; pending until `authenticated`.
pub struct SessionPermit {
    admission: Arc<Admission>,
    pending: bool,
}

impl SessionPermit {
    pub fn authenticated(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.admission.pending.fetch_sub(1, Ordering::AcqRel);
            self.admission.metrics.sessions_pending.dec();
        }
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.authenticated();
        self.admission.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct UploadPermit {
    admission: Arc<Admission>,
    user: String,
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        self.admission.uploads.remove_if_mut(&self.user, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}
