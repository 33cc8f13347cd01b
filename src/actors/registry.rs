//! The `Registry`: conversation id -> its live actor on this node.
//!
//! It holds handles, not actors: it does not know how to start one (`routing` passes the
//! starter), so it sits below the conversation actor, which removes itself when it stops
//! (`conversation_idle_secs` idle, or this node no longer owns the conversation). An actor
//! removes its entry only if the entry is still its own (a newer actor may have replaced it).

use super::envelope::{Envelope, Relinquish};
use actix::prelude::*;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// One conversation actor, as others reach it.
#[derive(Clone)]
pub struct ConvHandle {
    /// Unique per actor started on this node.
    pub generation: u64,
    pub mailbox: Recipient<Envelope>,
    pub relinquish: Recipient<Relinquish>,
}

/// A number for a new actor's `ConvHandle::generation`.
pub fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

#[derive(Default)]
pub struct Registry {
    map: DashMap<Arc<str>, ConvHandle>,
}

impl Registry {
    /// The conversation's actor, started with `start` if none is running.
    pub fn get(&self, id: &str, start: impl FnOnce() -> ConvHandle) -> ConvHandle {
        if let Some(h) = self.map.get(id) {
            if h.mailbox.connected() {
                return h.clone();
            }
        }
        match self.map.entry(Arc::from(id)) {
            Entry::Occupied(mut e) => {
                if !e.get().mailbox.connected() {
                    e.insert(start());
                }
                e.get().clone()
            }
            Entry::Vacant(e) => e.insert(start()).clone(),
        }
    }

    /// Removes `id` only if it still maps to the actor of `generation`.
    pub fn remove_if(&self, id: &str, generation: u64) {
        self.map.remove_if(id, |_, h| h.generation == generation);
    }

    pub fn entries(&self) -> Vec<(Arc<str>, ConvHandle)> {
        self.map
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }
}
