//! `delete`: retraction for everyone (the content is purged from storage, with any blob no
//! one else uses) and hiding for oneself. Each is logged as an event of the conversation's
//! retraction log (the actor owns its counter), which `sync` replays to devices that already
//! hold the message.

use super::{Answer, ConvActor};
use crate::domain::broadcast::Devices;
use crate::domain::{rules, view, AckInfo, Caller, ConvReply};
use crate::error::ApiError;
use crate::ids::now_ms;
use crate::storage::{Retraction, StoreResult, StoredMessage};
use actix::prelude::*;
use parley_protocol::DeleteScope;

impl ConvActor {
    pub(super) fn delete(
        &mut self,
        by: Caller,
        id: String,
        seq: u64,
        scope: DeleteScope,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let last_seq = match self.member(&by.user_id) {
            Ok((st, _)) => st.last_seq,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        if seq == 0 || seq > last_seq {
            return answer.send(&self.core, Err(ApiError::not_found("no such message")));
        }
        let core = self.core.clone();
        let conv = self.id.clone();
        ctx.wait(
            async move { core.store.message(&conv, seq).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Some(msg)) => act.retract_or_hide(by, id, msg, scope, answer, ctx),
                    Ok(None) => answer.send(&act.core, Err(ApiError::not_found("no such message"))),
                    Err(e) => answer.send(&act.core, Err(e.into())),
                }),
        );
    }

    /// Checks the permission, numbers the event and writes it.
    fn retract_or_hide(
        &mut self,
        by: Caller,
        id: String,
        msg: StoredMessage,
        scope: DeleteScope,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let now = now_ms();
        let window = self.core.config.limits.retract_window_secs;
        if scope == DeleteScope::Everyone {
            let allowed = self
                .member(&by.user_id)
                .and_then(|(st, m)| rules::retract_for_everyone(st, m, &msg, now, window));
            if let Err(e) = allowed {
                return answer.send(&self.core, Err(e));
            }
        }
        let ack = AckInfo {
            id,
            conversation_id: self.id.to_string(),
            seq: msg.seq,
            message_id: msg.message_id.clone(),
            ts: now,
            duplicate: scope == DeleteScope::Everyone && msg.deleted,
        };
        if ack.duplicate {
            return answer.send(&self.core, Ok(ConvReply::Ack(ack)));
        }
        let conversation_id = self.id.to_string();
        let Some(state) = self.state_mut() else {
            return answer.send(&self.core, Err(ApiError::unavailable("retry")));
        };
        state.last_event_no += 1;
        let r = Retraction {
            conversation_id,
            event_no: state.last_event_no,
            seq: msg.seq,
            scope,
            by_user: by.user_id.clone(),
            for_user: (scope == DeleteScope::Me).then(|| by.user_id.clone()),
            ts: now,
        };
        let files: Vec<String> = msg.attachments.iter().map(|a| a.file_id.clone()).collect();
        let core = self.core.clone();
        let event = r.clone();
        ctx.spawn(
            async move { write(&core, event, files).await }
                .into_actor(self)
                .map(move |res, act, _| match res {
                    Ok(()) => {
                        act.notify(&r, &by);
                        answer.send(&act.core, Ok(ConvReply::Ack(ack)));
                    }
                    Err(e) => answer.send(&act.core, Err(e.into())),
                }),
        );
    }

    /// Tells every member's devices (a retraction) or the user's other devices (a hide).
    fn notify(&self, r: &Retraction, by: &Caller) {
        let frame = view::deleted(&r.conversation_id, r.seq, r.scope, &r.by_user);
        match r.scope {
            DeleteScope::Everyone => {
                if let Ok(st) = self.state() {
                    let members: Vec<&str> =
                        st.members.iter().map(|m| m.user_id.as_str()).collect();
                    self.core.send_frame(&members, &frame, Devices::All);
                }
            }
            DeleteScope::Me => self.core.send_frame(
                &[&by.user_id],
                &frame,
                Devices::Except(by.device_id.clone()),
            ),
        }
    }
}

/// Stores the event; for a retraction, then unlinks the blobs of its files that nothing else
/// uses. A failed unlink leaves an unreferenced blob (logged), never a broken reference.
async fn write(core: &crate::actors::Core, r: Retraction, files: Vec<String>) -> StoreResult<()> {
    match r.scope {
        DeleteScope::Everyone => core.store.retract(r).await?,
        DeleteScope::Me => return core.store.hide(r).await,
    }
    if files.is_empty() {
        return Ok(());
    }
    match core.store.orphaned_blobs(files).await {
        Ok(blobs) => {
            for sha in blobs {
                if let Err(e) = core.blobs.unlink(&sha).await {
                    tracing::warn!(error = %e, blob = %sha, "could not unlink a purged blob");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "blob cleanup failed"),
    }
    Ok(())
}
