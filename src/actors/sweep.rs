//! The retention sweep: every `retention.sweep_interval_ms`, each node walks the
//! conversations, and for each one it owns whose oldest retained message is past its
//! retention period, asks the conversation's actor to purge (`ConvRequest::Expire`), one
//! bounded batch at a time, so sends and reads of the conversation go on in between.
//!
//! It lives beside the actors rather than in them because it only reads the store to decide
//! and then goes through `routing`, the one door to a conversation: a conversation with
//! nothing due is never woken.

use super::routing;
use super::Core;
use crate::domain::{retention, ConvReply, ConvRequest};
use crate::ids::now_ms;
use crate::storage::{Order, StoreResult};
use std::sync::Arc;
use std::time::Duration;

/// Conversations read per page of the walk.
const PAGE: u32 = 500;
/// Batches one conversation may take per sweep; the rest waits for the next sweep.
const MAX_STEPS: usize = 1000;

pub async fn run(core: Arc<Core>) {
    let every = Duration::from_millis(core.config.retention.sweep_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&core).await {
            tracing::warn!(error = %e, "retention sweep stopped early; the next one goes on");
        }
    }
}

/// One walk over every conversation this node owns.
pub async fn sweep_once(core: &Arc<Core>) -> StoreResult<()> {
    let mut after = String::new();
    loop {
        let ids = core.store.conversation_ids(&after, PAGE).await?;
        for id in &ids {
            if core.peers.remote_owner(id).is_none() {
                expire_conversation(core, id).await?;
            }
        }
        match ids.last() {
            Some(last) if ids.len() == PAGE as usize => after = last.clone(),
            _ => return Ok(()),
        }
    }
}

async fn expire_conversation(core: &Arc<Core>, id: &str) -> StoreResult<()> {
    let r = core.store.retention(id).await?;
    let Some(period) = retention::period(&core.config.retention, &r) else {
        return Ok(());
    };
    let cutoff = retention::cutoff(period, now_ms());
    let oldest = core
        .store
        .messages(id, r.expired_through, u64::MAX, 1, Order::Asc)
        .await?;
    if oldest.first().is_none_or(|m| m.ts >= cutoff) {
        return Ok(());
    }
    let batch = core.config.retention.batch as u64;
    for _ in 0..MAX_STEPS {
        match routing::ask(core, id, ConvRequest::Expire { before_ts: cutoff }).await {
            Ok(ConvReply::Purged(n)) if n == batch => continue,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(conversation = %id, error = %e, "retention: purge refused, retried next sweep");
                break;
            }
        }
    }
    Ok(())
}
