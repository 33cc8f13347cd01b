//! v1.1: the device list's "last seen", recorded when a session ends.
//!
//! One write per ended session put 10k jobs in the store writer's queue beside the sends when
//! a reconnect storm ended 10k sessions at once. Ends are collected here instead and written
//! as one batch every `FLUSH_EVERY`, and once more at shutdown, after the sessions closed and
//! before the store does. "Last seen" is a hint shown in a device list: a batch that fails is
//! logged and dropped, never retried.
//!
//! Bound: one entry per device (a later end replaces an earlier one), so the map holds at
//! most the devices whose sessions ended within one interval, which the node's connection
//! limit bounds.

use crate::storage::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct LastSeen {
    pending: Mutex<HashMap<Arc<str>, i64>>,
}

impl LastSeen {
    pub fn record(&self, device_id: Arc<str>, at: i64) {
        let mut pending = self.pending.lock().unwrap();
        let e = pending.entry(device_id).or_insert(at);
        *e = (*e).max(at);
    }

    /// Writes what was recorded since the last flush.
    pub async fn flush(&self, store: &dyn Store) {
        let seen: Vec<(String, i64)> = std::mem::take(&mut *self.pending.lock().unwrap())
            .into_iter()
            .map(|(d, at)| (d.to_string(), at))
            .collect();
        if seen.is_empty() {
            return;
        }
        let n = seen.len();
        if let Err(e) = store.touch_devices(seen).await {
            tracing::warn!(error = %e, devices = n, "last seen not recorded");
        }
    }

    /// Flushes every `FLUSH_EVERY`, forever.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush(&*store).await;
        }
    }
}
