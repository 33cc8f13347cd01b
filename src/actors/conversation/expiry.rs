//! Retention in the conversation actor: setting a conversation's own period, and purging
//! one batch of expired messages at a time when the node's sweep asks (`sweep`). The actor
//! purges, so a purge never interleaves with its other reads and writes of the same
//! messages; the senders of what expired before a device of a recipient got it are told.

use super::{Answer, ConvActor};
use crate::actors::core::Core;
use crate::domain::broadcast::Devices;
use crate::domain::{retention, rules, view, Caller, ConvReply};
use crate::ids::now_ms;
use crate::storage::StoreResult;
use actix::prelude::*;

impl ConvActor {
    pub(super) fn set_retention(
        &mut self,
        by: Caller,
        secs: Option<u64>,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let cfg = &self.core.config.retention;
        let members = match self.state().and_then(|st| {
            rules::set_retention(cfg, st, &by.user_id, secs)?;
            Ok(st
                .members
                .iter()
                .map(|m| m.user_id.clone())
                .collect::<Vec<_>>())
        }) {
            Ok(m) => m,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        let core = self.core.clone();
        let id = self.id.clone();
        ctx.wait(
            async move { core.store.set_retention(&id, secs).await }
                .into_actor(self)
                .map(move |res, act, _| match res {
                    Ok(()) => {
                        let frame = view::retention(&act.id, secs, &by.user_id);
                        act.core.send_frame(&members, &frame, Devices::All);
                        answer.send(&act.core, Ok(ConvReply::Done));
                    }
                    Err(e) => answer.send(&act.core, Err(e.into())),
                }),
        );
    }

    pub(super) fn expire(&mut self, before_ts: i64, answer: Answer, ctx: &mut Context<Self>) {
        if let Err(e) = self.state() {
            return answer.send(&self.core, Err(e));
        }
        let core = self.core.clone();
        let id = self.id.clone();
        ctx.wait(
            async move { purge(&core, &id, before_ts).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    answer.send(&act.core, res.map(ConvReply::Purged).map_err(Into::into))
                }),
        );
    }
}

/// One batch: the purge (one transaction), then who lost what, then the orphaned blobs.
async fn purge(core: &Core, id: &str, before_ts: i64) -> StoreResult<u64> {
    let expired = core
        .store
        .expire(id, before_ts, core.config.retention.batch)
        .await?;
    if expired.messages.is_empty() {
        return Ok(0);
    }
    core.metrics
        .messages_expired
        .inc_by(expired.messages.len() as u64);
    let tell = async {
        let devices = core.store.member_devices(id).await?;
        let rows = retention::undeliverable(id, &expired, &devices, now_ms());
        if !rows.is_empty() {
            core.store.add_undeliverable(rows.clone()).await?;
        }
        StoreResult::Ok(rows)
    };
    match tell.await {
        Ok(rows) => {
            for u in &rows {
                core.send_frame(&[&u.user_id], &view::undeliverable_frame(u), Devices::All);
            }
        }
        // The messages are gone either way; only the senders' notice is missing.
        Err(e) => {
            tracing::warn!(conversation = %id, error = %e, "expired messages: senders not told")
        }
    }
    super::retraction::unlink_orphans(core, expired.file_ids).await;
    Ok(expired.messages.len() as u64)
}
