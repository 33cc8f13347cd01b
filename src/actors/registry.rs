//! The `Registry`: conversation id -> its live actor on this node.
//!
//! Actors start on demand (`get`), load their state from the store, and stop after
//! `conversation_idle_secs` idle or when this node no longer owns the conversation; each
//! removes itself only if the registry still maps its id to it (a newer actor may have
//! replaced it).

use super::conversation::ConvActor;
use super::core::Core;
use actix::prelude::*;
use dashmap::DashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Registry {
    map: DashMap<Arc<str>, Addr<ConvActor>>,
}

impl Registry {
    /// The conversation's actor, started (and loaded from storage) if it is not running.
    pub fn get(&self, core: &Arc<Core>, id: &str) -> Addr<ConvActor> {
        if let Some(a) = self.map.get(id) {
            if a.connected() {
                return a.clone();
            }
        }
        let key: Arc<str> = Arc::from(id);
        let mut entry = self
            .map
            .entry(key.clone())
            .or_insert_with(|| ConvActor::new(core.clone(), key.clone()).start());
        if !entry.connected() {
            *entry = ConvActor::new(core.clone(), key).start();
        }
        entry.clone()
    }

    /// Removes `id` only if it still maps to `addr`.
    pub fn remove_if(&self, id: &str, addr: &Addr<ConvActor>) {
        self.map.remove_if(id, |_, a| a == addr);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn entries(&self) -> Vec<(Arc<str>, Addr<ConvActor>)> {
        self.map
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }
}
