//! Group receipt summaries (v1.1): who received and read a message, computed from the
//! members' positions this actor owns, never from the history.
//!
//! The endpoint (`ConvRequest::Receipts`) counts in one pass over the members and reads the
//! times of one page of users from their receipt marks (the latest few moves per member, kept
//! by the store). In a large group (`rules::summarised`) a sender gets `receipt_summary`
//! frames instead of one `receipt` per member and move: a cursor move only marks the messages
//! it covers as changed, and one timer sends each changed message's counts at most once per
//! `receipt_summary_interval_ms`, however many members moved meanwhile.

use super::{Answer, ConvActor, Phase};
use crate::domain::broadcast::Devices;
use crate::domain::view::{self, ReceiptCounts};
use crate::domain::{rules, Caller, ConvReply};
use crate::error::ApiError;
use actix::prelude::*;
use parley_protocol::{ReceiptKind, ReceiptPage, ReceiptUser};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Live summaries cover the conversation's latest this many messages (older ones: the
/// endpoint), so that one member catching up on a long history costs a bounded flush.
const SUMMARY_WINDOW: u64 = 256;

/// A page request of the receipts endpoint.
pub(super) struct ReceiptQuery {
    pub by: Caller,
    pub seq: u64,
    pub kind: ReceiptKind,
    pub after: Option<String>,
    pub limit: u32,
}

/// The live summaries' state: what changed since the last flush, and what was sent.
#[derive(Default)]
pub(super) struct Summaries {
    /// Messages whose counts may have changed: seq → sender.
    dirty: BTreeMap<u64, String>,
    /// The counts last sent per message (within the window), so an unchanged one is skipped.
    sent: BTreeMap<u64, ReceiptCounts>,
    armed: bool,
    last_flush: Option<Instant>,
}

impl Summaries {
    pub(super) fn idle(&self) -> bool {
        self.dirty.is_empty()
    }
}

impl ConvActor {
    /// The sender of `seq`, if the recent ring holds it.
    fn recent_sender(&self, seq: u64) -> Option<String> {
        let i = self.recent.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(self.recent[i].1.clone())
    }

    pub(super) fn receipts(&mut self, q: ReceiptQuery, answer: Answer, ctx: &mut Context<Self>) {
        let checked = self
            .member(&q.by.user_id)
            .and_then(|(st, me)| rules::visible_seq(me, q.seq, st.last_seq));
        if let Err(e) = checked {
            return answer.send(&self.core, Err(e));
        }
        if let Some(sender) = self.recent_sender(q.seq) {
            return self.receipt_page(q, sender, answer, ctx);
        }
        let (core, id, seq) = (self.core.clone(), self.id.clone(), q.seq);
        ctx.spawn(
            async move { core.store.message(&id, seq).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Some(m)) => act.receipt_page(q, m.sender_id, answer, ctx),
                    Ok(None) => answer.send(&act.core, Err(ApiError::not_found("no such message"))),
                    Err(e) => answer.send(&act.core, Err(e.into())),
                }),
        );
    }

    /// Counts and one page of users (by user id), then their times from the store.
    fn receipt_page(
        &mut self,
        q: ReceiptQuery,
        sender: String,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let page = self.member(&q.by.user_id).and_then(|(st, me)| {
            rules::see_receipts(me, &sender)?;
            let counts = view::receipt_counts(&st.members, &sender, q.seq);
            let after = q.after.as_deref().unwrap_or("");
            let mut users: Vec<String> = st
                .members
                .iter()
                .filter(|m| rules::receipt_recipient(m, &sender, q.seq))
                .filter(|m| match q.kind {
                    ReceiptKind::Delivered => m.delivered_seq.max(m.read_seq) >= q.seq,
                    ReceiptKind::Read => m.read_seq >= q.seq,
                })
                .filter(|m| m.user_id.as_str() > after)
                .map(|m| m.user_id.clone())
                .collect();
            users.sort_unstable();
            let more = users.len() > q.limit as usize;
            users.truncate(q.limit as usize);
            Ok((counts, users, more))
        });
        let (counts, users, more) = match page {
            Ok(p) => p,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        let (core, id, seq, kind) = (self.core.clone(), self.id.clone(), q.seq, q.kind);
        ctx.spawn(
            async move {
                let times = core.store.receipt_times(&id, kind, seq, users).await?;
                Ok::<_, ApiError>(ConvReply::Receipts(ReceiptPage {
                    conversation_id: id.to_string(),
                    seq,
                    recipients: counts.recipients,
                    delivered: counts.delivered,
                    read: counts.read,
                    users: times
                        .into_iter()
                        .map(|(user_id, at)| ReceiptUser { user_id, at })
                        .collect(),
                    more,
                }))
            }
            .into_actor(self)
            .map(move |res, act, _| answer.send(&act.core, res)),
        );
    }

    /// Whether this conversation's senders get summaries rather than per-member receipts.
    pub(super) fn summarised(&self) -> bool {
        let min = self.core.config.actors.receipt_summary_min_members;
        self.state().is_ok_and(|st| rules::summarised(st, min))
    }

    /// `user`'s position of some kind moved from `old` to `new` (durably): the recent
    /// messages of others in between have new counts.
    pub(super) fn summaries_changed(
        &mut self,
        ctx: &mut Context<Self>,
        user: &str,
        old: u64,
        new: u64,
    ) {
        let Ok(last) = self.state().map(|s| s.last_seq) else {
            return;
        };
        let from = old.max(last.saturating_sub(SUMMARY_WINDOW));
        let start = self.recent.partition_point(|(s, _)| *s <= from);
        for (seq, sender) in self.recent.range(start..) {
            if *seq > new {
                break;
            }
            if sender != user {
                self.summaries.dirty.insert(*seq, sender.clone());
            }
        }
        if self.summaries.dirty.is_empty() || self.summaries.armed {
            return;
        }
        // The first change after a quiet spell goes out at once; later ones wait their turn.
        let interval = Duration::from_millis(self.core.config.actors.receipt_summary_interval_ms);
        let delay = self
            .summaries
            .last_flush
            .map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()));
        self.summaries.armed = true;
        ctx.run_later(delay, |act, _| act.flush_summaries());
    }

    /// Sends the counts of every changed message to its sender's devices.
    fn flush_summaries(&mut self) {
        self.summaries.armed = false;
        self.summaries.last_flush = Some(Instant::now());
        let dirty = std::mem::take(&mut self.summaries.dirty);
        let Phase::Ready(st) = &self.phase else {
            return;
        };
        for (seq, sender) in dirty {
            let counts = view::receipt_counts(&st.members, &sender, seq);
            if self.summaries.sent.get(&seq) == Some(&counts) {
                continue;
            }
            self.summaries.sent.insert(seq, counts);
            let frame = view::receipt_summary(&self.id, seq, counts);
            self.core.send_frame(&[&sender], &frame, Devices::All);
        }
        let floor = st.last_seq.saturating_sub(SUMMARY_WINDOW);
        self.summaries.sent = self.summaries.sent.split_off(&(floor + 1));
    }
}
