//! Gap repair: what a device is owed, from storage, in order.
//!
//! A live message that is not the next one (the device is behind, a frame was dropped) starts
//! a `catch_up` of that conversation; a `refresh` re-reads every conversation's end (after a
//! full mailbox, or when the cluster bus may have lost frames); `sync` serves the client's own
//! paging. Each reads through `domain::reads`.

use super::SessionActor;
use crate::domain::reads::{self, Position};
use crate::domain::{view, Caller};
use crate::storage::CursorUpdate;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client that said `more` may take to ask for its next page before the server
/// repairs gaps itself again.
const PAGING_GRACE: Duration = Duration::from_secs(30);

impl SessionActor {
    /// Fetches what follows `pushed` in one conversation and pushes it in order.
    /// Not while the client pages: its pages bring what storage holds, and they are the
    /// bound it asked for (a catch-up begun before its first page stops at its next page).
    pub(super) fn catch_up(&mut self, conv: Arc<str>, ctx: &mut Context<Self>) {
        if self.paging() {
            return;
        }
        let Some(user) = self.ident.as_ref().map(|i| i.user_id.clone()) else {
            return;
        };
        let Some(pos) = self.convs.get_mut(&conv) else {
            return;
        };
        if pos.catching_up || pos.latest <= pos.pushed {
            return;
        }
        pos.catching_up = true;
        let after = pos.pushed;
        let page = self.core.config.limits.default_page;
        let core = self.core.clone();
        let c = conv.clone();
        ctx.spawn(
            async move { reads::owed_frames(&*core.store, &user, &c, after, page).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let paging = act.paging();
                    let Some(pos) = act.convs.get_mut(&conv) else {
                        return;
                    };
                    pos.catching_up = false;
                    if paging {
                        return; // the client began paging meanwhile: its pages bring these
                    }
                    let items = match res {
                        Ok(items) => items,
                        Err(e) => {
                            tracing::warn!(error = %e, "catch-up failed");
                            return;
                        }
                    };
                    let progressed = !items.is_empty();
                    let mut frames = Vec::new();
                    for item in items {
                        if item.first == pos.pushed + 1 {
                            pos.pushed = item.last;
                            frames.extend(item.frame);
                        }
                    }

                    for f in frames {
                        act.enqueue(f, ctx);
                    }
                    act.release_events(&conv, ctx);
                    // One page at a time: the next once the socket has taken this one, so a
                    // device on a slow link gets bounded bursts (and the slow-consumer rule
                    // judges it on what it was actually sent).
                    if progressed && !act.repair_after_drain.contains(&conv) {
                        act.repair_after_drain.push(conv);
                        act.drained(ctx);
                    }
                }),
        );
    }

    /// Re-reads every conversation's end from storage and repairs any gap (after a dropped
    /// frame, or a frame for a conversation this session did not know yet).
    pub(super) fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(ident) = &self.ident else { return };
        if self.refreshing {
            // The read in flight may predate what made this refresh necessary.
            self.refresh_again = true;
            return;
        }
        self.refreshing = true;
        let (user, device) = (ident.user_id.clone(), ident.device_id.clone());
        let core = self.core.clone();
        ctx.spawn(
            async move { core.store.device_conversations(&device, &user).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.refreshing = false;
                    if std::mem::take(&mut act.refresh_again) {
                        act.refresh(ctx);
                    }
                    let dcs = match res {
                        Ok(dcs) => dcs,
                        Err(e) => {
                            tracing::warn!(error = %e, "refresh failed");
                            return;
                        }
                    };
                    let mut behind = Vec::new();
                    for dc in dcs {
                        let key: Arc<str> = Arc::from(dc.conversation_id.as_str());
                        let pos = act
                            .convs
                            .entry(key.clone())
                            .or_insert_with(|| Position::from_device(&dc));
                        pos.latest = pos.latest.max(dc.last_seq);
                        if pos.latest > pos.pushed {
                            behind.push(key);
                        }
                    }
                    for k in behind {
                        act.catch_up(k, ctx);
                    }
                }),
        );
    }

    /// Whether the client is paging with `sync` (see `paging_until`).
    pub(super) fn paging(&mut self) -> bool {
        match self.paging_until {
            Some(t) if t > Instant::now() => true,
            Some(_) => {
                self.paging_until = None;
                false
            }
            None => false,
        }
    }

    /// The outbound queue is empty: catch-ups waiting for that take their next page.
    pub(super) fn drained(&mut self, ctx: &mut Context<Self>) {
        if !self.out.is_empty() {
            return;
        }
        for conv in std::mem::take(&mut self.repair_after_drain) {
            self.catch_up(conv, ctx);
        }
    }

    /// One `sync` page, then `synced`.
    pub(super) fn sync(
        &mut self,
        id: String,
        limit: Option<u32>,
        by: Caller,
        ctx: &mut Context<Self>,
    ) {
        self.commit_events(None, &by.device_id);
        let l = &self.core.config.limits;
        let limit = limit.unwrap_or(l.default_page).clamp(1, l.max_page);
        let known: HashMap<Arc<str>, Position> = self.convs.clone();
        let core = self.core.clone();
        // `wait`: no live push interleaves with a page, so `pushed` stays exact.
        ctx.wait(
            async move {
                reads::sync_page(&*core.store, &by.user_id, &by.device_id, &known, limit).await
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(page) => {
                    let mut convs = Vec::with_capacity(page.positions.len());
                    for (conv, pos) in page.positions {
                        let e = act.convs.entry(conv.clone()).or_default();
                        let catching_up = e.catching_up;
                        *e = Position { catching_up, ..pos };
                        convs.push(conv);
                    }
                    for f in page.frames {
                        act.enqueue(f, ctx);
                    }
                    for conv in convs {
                        act.release_events(&conv, ctx);
                    }
                    // A client with more to page is left to page: 30 s without its next
                    // request, and the heartbeat's refresh repairs what is still owed.
                    act.paging_until = page.more.then(|| Instant::now() + PAGING_GRACE);
                    act.enqueue(view::synced(id, page.more), ctx);
                }
                Err(e) => act.send_error(Some(id), e, ctx),
            }),
        );
    }

    /// Stores the event-log position that the device was sent up to (the client has moved
    /// on, so it processed those events).
    pub(super) fn commit_events(&mut self, only: Option<&str>, device: &str) {
        let mut updates = Vec::new();
        for (conv, pos) in self.convs.iter_mut() {
            if only.is_some_and(|o| o != &**conv) || pos.event_sent <= pos.event_cursor {
                continue;
            }
            pos.event_cursor = pos.event_sent;
            updates.push(CursorUpdate::DeviceEvents {
                device_id: device.to_string(),
                conversation_id: conv.to_string(),
                event_no: pos.event_sent,
            });
        }
        if !updates.is_empty() {
            let core = self.core.clone();
            actix::spawn(async move {
                if let Err(e) = core.store.advance_cursors(updates).await {
                    tracing::warn!(error = %e, "event cursor update failed");
                }
            });
        }
    }
}
