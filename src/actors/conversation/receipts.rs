//! Cursor moves and the receipts they cause.
//!
//! A device's `received` / `read` moves its own cursor and its user's delivered / read
//! position (each stored as `max(old, new)`). Once the move is durable, the senders of the
//! newly covered messages get a `receipt` (and, for `read`, the reader's other devices), at
//! most once per position: receipts never go backwards. In a large group the senders get
//! coalesced `receipt_summary` frames instead (`summaries`). Each move is also stored as a
//! receipt mark (seq, time), which times the receipts endpoint's users.

use super::{Answer, ConvActor};
use crate::domain::broadcast::Devices;
use crate::domain::{view, Caller, ConvReply};
use crate::storage::CursorUpdate;
use actix::prelude::*;
use parley_protocol::ReceiptKind;

/// A position that moved: its kind, from, to.
type Move = (ReceiptKind, u64, u64);

impl ConvActor {
    pub(super) fn cursor(
        &mut self,
        by: Caller,
        kind: ReceiptKind,
        seq: u64,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let seq = match self.member(&by.user_id) {
            Ok((st, _)) => seq.min(st.last_seq),
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        let Some((updates, moves)) = self.move_positions(&by, kind, seq) else {
            return;
        };
        answer.send(&self.core, Ok(ConvReply::Done));
        let read_moved = moves.iter().any(|m| m.0 == ReceiptKind::Read);
        let core = self.core.clone();
        let (conv, clear_by) = (self.id.clone(), by.clone());
        ctx.spawn(
            async move {
                core.store.advance_cursors(updates).await?;
                if read_moved {
                    // Devices of this user that show a notification for what was just read
                    // are owed a "clear". (A failure here costs a stale notification on a
                    // phone, not a receipt: logged, and the receipts still go.)
                    let now = crate::ids::now_ms();
                    let (u, d) = (&clear_by.user_id, &clear_by.device_id);
                    if let Err(e) = core.store.push_clear(u, &conv, seq, d, now).await {
                        tracing::warn!(error = %e, "push: clear not scheduled");
                    }
                }
                Ok::<(), crate::storage::StoreError>(())
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(()) => {
                    for (kind, old, new) in moves {
                        act.send_receipts(ctx, &by, kind, old, new);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cursor update failed"),
            }),
        );
    }

    /// Moves `by`'s device and user positions to `seq` (at most the last seq; never
    /// backwards) in the state this actor owns. Returns what to store (with a receipt mark
    /// per move, which times the receipts endpoint's users) and the moves as (kind, old, new).
    fn move_positions(
        &mut self,
        by: &Caller,
        kind: ReceiptKind,
        seq: u64,
    ) -> Option<(Vec<CursorUpdate>, Vec<Move>)> {
        let conv = self.id.to_string();
        let state = self.state_mut()?;
        let member = state.members.iter_mut().find(|m| m.user_id == by.user_id)?;
        let mut updates = vec![CursorUpdate::DeviceDelivered {
            device_id: by.device_id.clone(),
            conversation_id: conv.clone(),
            seq,
        }];
        let mut moves = Vec::new();
        if seq > member.delivered_seq {
            moves.push((ReceiptKind::Delivered, member.delivered_seq, seq));
            member.delivered_seq = seq;
            updates.push(CursorUpdate::UserDelivered {
                user_id: by.user_id.clone(),
                conversation_id: conv.clone(),
                seq,
            });
        }
        if kind == ReceiptKind::Read && seq > member.read_seq {
            moves.push((ReceiptKind::Read, member.read_seq, seq));
            member.read_seq = seq;
            updates.push(CursorUpdate::UserRead {
                user_id: by.user_id.clone(),
                conversation_id: conv.clone(),
                seq,
            });
        }
        let ts = crate::ids::now_ms();
        for (kind, _, seq) in &moves {
            updates.push(CursorUpdate::Mark {
                conversation_id: conv.clone(),
                user_id: by.user_id.clone(),
                kind: *kind,
                seq: *seq,
                ts,
            });
        }
        Some((updates, moves))
    }

    /// Sends receipts for `by`'s user moving from `old` to `new` (after the move is durable).
    fn send_receipts(
        &mut self,
        ctx: &mut Context<Self>,
        by: &Caller,
        kind: ReceiptKind,
        old: u64,
        new: u64,
    ) {
        let user = by.user_id.clone();
        let key = (user.clone(), kind);
        if self.receipts_sent.get(&key).is_some_and(|s| *s >= new) {
            return;
        }
        self.receipts_sent.insert(key, new);
        let frame = view::receipt(&self.id, &user, kind, new);
        if kind == ReceiptKind::Read {
            self.core
                .send_frame(&[&user], &frame, Devices::Except(by.device_id.clone()));
        }
        // A large group's senders get coalesced counts instead (`summaries`).
        if self.summarised() {
            return self.summaries_changed(ctx, &user, old, new);
        }
        // Senders of (old, new]: from the recent ring if it covers the range, else storage.
        let covered = self.recent.front().is_some_and(|(s, _)| *s <= old + 1);
        if covered {
            let mut senders: Vec<&String> = self
                .recent
                .iter()
                .filter(|(s, _)| *s > old && *s <= new)
                .map(|(_, u)| u)
                .collect();
            senders.sort();
            senders.dedup();
            senders.retain(|s| **s != user);
            self.core.send_frame(&senders, &frame, Devices::All);
            return;
        }
        let core = self.core.clone();
        let id = self.id.clone();
        ctx.spawn(
            async move {
                match core.store.senders_between(&id, old, new).await {
                    Ok(mut senders) => {
                        senders.retain(|s| *s != user);
                        core.send_frame(&senders, &frame, Devices::All);
                    }
                    Err(e) => tracing::warn!(error = %e, "receipt routing failed"),
                }
            }
            .into_actor(self),
        );
    }
}
