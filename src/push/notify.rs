//! Who is notified: turns a conversation's new messages into one job per device that has a
//! push target and does not hold them yet.
//!
//! `append` marks the conversation pending in the same commit as its messages (durable: a
//! crash after the commit loses no push); the conversation actor runs `schedule` right after
//! each commit that marked (one run at a time per conversation, coalesced), and every node
//! runs `sweep` for the pending marks of the conversations it owns (what a crash or a hand-off
//! left). SQLite marks only conversations where someone can be notified (`Appended`).
//! A job is due after `confirm_delay_ms`: a device in the foreground confirms the message
//! (`received`) before that, and the bridge then skips it.

use crate::ids::now_ms;
use crate::storage::{Order, PushSchedule, Store, StoreResult};
use std::time::Duration;

/// How many of the newest messages are read to tell who sent what: a device is notified of
/// the newest message among them that its own user did not send.
const RECENT: u32 = 200;

pub async fn schedule(
    store: &dyn Store,
    conversation_id: &str,
    upto: u64,
    confirm_delay_ms: u64,
) -> StoreResult<()> {
    let behind: Vec<_> = store
        .push_recipients(conversation_id)
        .await?
        .into_iter()
        .filter(|r| r.delivered_seq < upto)
        .collect();
    let mut jobs = Vec::new();
    if let Some(lowest) = behind.iter().map(|r| r.delivered_seq).min() {
        let recent = store
            .messages(conversation_id, lowest, upto + 1, RECENT, Order::Desc)
            .await?;
        let now = now_ms();
        for r in behind {
            let newest = recent
                .iter()
                .find(|m| m.seq > r.delivered_seq && m.sender_id != r.user_id && !m.deleted);
            if let Some(m) = newest {
                jobs.push(PushSchedule {
                    device_id: r.device_id,
                    user_id: r.user_id,
                    seq: m.seq,
                    due_at: now + confirm_delay_ms as i64,
                    now,
                });
            }
        }
    }
    store.push_schedule(conversation_id, upto, jobs).await
}

/// Schedules what pending marks are left, for the conversations `owns` says are this node's;
/// every `every`, forever.
pub async fn sweep(
    store: std::sync::Arc<dyn Store>,
    owns: impl Fn(&str) -> bool,
    confirm_delay_ms: u64,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let pending = match store.push_pending(500).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "push sweep: pending marks unreadable");
                continue;
            }
        };
        for (conv, upto) in pending.into_iter().filter(|(c, _)| owns(c)) {
            if let Err(e) = schedule(&*store, &conv, upto, confirm_delay_ms).await {
                tracing::warn!(error = %e, conversation = %conv, "push sweep: scheduling failed");
            }
        }
    }
}
