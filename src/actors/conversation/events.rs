//! The conversation's event log, as the actor writes it: retractions, hides, edits and
//! reactions are written one at a time, each numbered (`event_no`) when its turn comes.
//!
//! One at a time because two events on one message must land in the order they were
//! numbered (an edit after an edit, a reaction taken back after it was added) on every
//! backend, and ScyllaDB does not order concurrent writes. Numbered at its turn so that a
//! write that turns out to change nothing (a retried edit, a reaction already there) gives
//! its number back and the log has no gaps. The queue is bounded by the conversation's
//! mailbox. Sends never wait for it: messages commit on their own path.

use super::ConvActor;
use crate::domain::broadcast::{Devices, EventRef};
use crate::storage::MessageEvent;
use actix::prelude::*;
use bytestring::ByteString;
use std::future::Future;
use std::pin::Pin;

/// What to do once an event's write returned.
pub(super) type Then = Box<dyn FnOnce(&mut ConvActor, &mut Context<ConvActor>)>;

/// An event's store write, made when its turn comes from the event number it is given.
pub(super) type EventWrite = Box<dyn FnOnce(u64) -> Pin<Box<dyn Future<Output = Then>>>>;

/// Who an event's frame is for.
pub(super) enum Audience {
    /// Every device of every member, the one that caused it too (it also gets its ack).
    Members,
    /// The user's own other devices (a hide).
    OwnDevices { user: String, except: String },
}

impl ConvActor {
    /// Queues an event write behind the ones already queued.
    pub(super) fn queue_event(&mut self, write: EventWrite, ctx: &mut Context<Self>) {
        self.events.push_back(write);
        self.next_event(ctx);
    }

    pub(super) fn next_event(&mut self, ctx: &mut Context<Self>) {
        if self.event_writing {
            return;
        }
        if self.events.is_empty() {
            return;
        }
        let Some(state) = self.state_mut() else {
            return; // loading: `load` calls this again
        };
        state.last_event_no += 1;
        let event_no = state.last_event_no;
        let Some(write) = self.events.pop_front() else {
            return;
        };
        let fut = write(event_no);
        self.event_writing = true;
        ctx.spawn(fut.into_actor(self).map(|then, act, ctx| {
            act.event_writing = false;
            then(act, ctx);
            act.next_event(ctx);
        }));
    }

    /// The write numbered `event_no` stored nothing: the number is free again.
    pub(super) fn release_event_no(&mut self, event_no: u64) {
        if let Some(state) = self.state_mut() {
            if state.last_event_no == event_no {
                state.last_event_no -= 1;
            }
        }
    }

    /// Hands an event's frame to its audience, with its place in the log.
    pub(super) fn tell_event(&self, e: &MessageEvent, frame: &ByteString, to: Audience) {
        let event = EventRef {
            conversation_id: e.conversation_id.clone(),
            event_no: e.event_no,
            seq: e.seq,
        };
        match to {
            Audience::Members => {
                if let Ok(st) = self.state() {
                    let members: Vec<&str> =
                        st.members.iter().map(|m| m.user_id.as_str()).collect();
                    self.core.send_event(&members, Devices::All, event, frame);
                }
            }
            Audience::OwnDevices { user, except } => {
                self.core
                    .send_event(&[user], Devices::Except(except), event, frame)
            }
        }
    }

    /// Whether the events still queued or being written are done (an actor stops only then).
    pub(super) fn events_idle(&self) -> bool {
        !self.event_writing && self.events.is_empty()
    }
}
