//! v1.1: the upload housekeeping sweep, every `uploads.sweep_interval_ms` on each node:
//! resumable uploads past their expiry go (row and partial bytes), partial files this node
//! holds for no live upload go, and files no message or avatar refers to
//! `uploads.unattached_secs` after their upload are deleted with their blobs (through
//! `Core::purge_files`, like a retraction).
//!
//! Every node runs it; the store's operations are idempotent (a row two nodes both delete is
//! simply gone), and a file's grant is checked in the same transaction that deletes it, so a
//! file attached while the sweep runs is kept.

use super::Core;
use crate::ids::now_ms;
use crate::storage::StoreResult;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Rows read per step.
const PAGE: u32 = 200;
/// Steps per sweep for each kind of work; the rest waits for the next sweep.
const MAX_STEPS: usize = 1000;

pub async fn run(core: Arc<Core>) {
    let every = Duration::from_millis(core.config.uploads.sweep_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&core).await {
            tracing::warn!(error = %e, "upload sweep stopped early; the next one goes on");
        }
    }
}

pub async fn sweep_once(core: &Core) -> StoreResult<()> {
    expired_uploads(core).await?;
    stale_partials(core).await;
    unattached_files(core).await
}

async fn expired_uploads(core: &Core) -> StoreResult<()> {
    for _ in 0..MAX_STEPS {
        let rows = core.store.expired_uploads(now_ms(), PAGE).await?;
        for u in &rows {
            let _ = tokio::fs::remove_file(core.blobs.partial_dir().join(&u.upload_id)).await;
            core.store.delete_upload(&u.upload_id).await?;
        }
        if rows.len() < PAGE as usize {
            break;
        }
    }
    Ok(())
}

/// Partial files older than any upload may live (their row was swept by another node, or
/// lost): nothing can resume them.
async fn stale_partials(core: &Core) {
    let ttl = Duration::from_secs(core.config.uploads.resumable_expire_secs);
    let Ok(mut dir) = tokio::fs::read_dir(core.blobs.partial_dir()).await else {
        return;
    };
    while let Ok(Some(e)) = dir.next_entry().await {
        let old = e
            .metadata()
            .await
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > ttl);
        if old {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

async fn unattached_files(core: &Core) -> StoreResult<()> {
    let secs = core.config.uploads.unattached_secs;
    if secs == 0 {
        return Ok(());
    }
    let before = now_ms() - (secs as i64).saturating_mul(1000);
    let mut after = String::new();
    for _ in 0..MAX_STEPS {
        let (ids, next) = core.store.old_files(before, &after, PAGE).await?;
        core.purge_files(ids).await;
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(())
}
