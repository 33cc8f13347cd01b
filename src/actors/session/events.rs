//! Live events of a conversation's log (retractions, hides, edits, reactions) on their way to
//! the device.
//!
//! An event is forwarded only once the device holds its message: a device that is behind
//! (catching up, or not synced yet) could otherwise get "seq 7 was edited" before seq 7, or
//! get seq 7 from a read made before the edit and then never hear of it. Such an event waits
//! here until the device has been sent the message (`release_events`), at most
//! `MAX_HELD` per conversation; past that the oldest are dropped (counted), and the device
//! has them from `sync`, which replays every event of a message it holds after its event
//! cursor. An event also advances the position in the log the device is known to have
//! (`event_sent`) when it is the next one, so `sync` does not send it again.

use super::SessionActor;
use crate::domain::broadcast::EventRef;
use actix::prelude::*;
use bytestring::ByteString;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Events held per conversation for a device that does not hold their message yet.
const MAX_HELD: usize = 256;

/// Events waiting for their message, per conversation.
#[derive(Default)]
pub(super) struct HeldEvents(HashMap<Arc<str>, VecDeque<(Arc<EventRef>, ByteString)>>);

impl SessionActor {
    pub(super) fn on_event(
        &mut self,
        event: Arc<EventRef>,
        frame: ByteString,
        ctx: &mut Context<Self>,
    ) {
        let Some((key, pos)) = self.convs.get_key_value(event.conversation_id.as_str()) else {
            // A conversation this session does not know yet: once it does, it reads the
            // message in its current state.
            return self.refresh(ctx);
        };
        if event.seq <= pos.pushed {
            return self.forward_event(&event, frame, ctx);
        }
        let held = self.held.0.entry(key.clone()).or_default();
        if held.len() >= MAX_HELD {
            held.pop_front();
            self.core.metrics.events_dropped.inc();
        }
        held.push_back((event, frame));
    }

    fn forward_event(&mut self, event: &EventRef, frame: ByteString, ctx: &mut Context<Self>) {
        if let Some(pos) = self.convs.get_mut(event.conversation_id.as_str()) {
            if event.event_no == pos.event_sent + 1 {
                pos.event_sent = event.event_no;
            }
        }
        self.enqueue(frame, ctx);
    }

    /// The device was sent more of `conversation_id`: events waiting for those messages go.
    pub(super) fn release_events(&mut self, conversation_id: &str, ctx: &mut Context<Self>) {
        let Some(pushed) = self.convs.get(conversation_id).map(|p| p.pushed) else {
            self.held.0.remove(conversation_id);
            return;
        };
        let Some(held) = self.held.0.get_mut(conversation_id) else {
            return;
        };
        let mut ready = Vec::new();
        held.retain(|(e, f)| {
            if e.seq <= pushed {
                ready.push((e.clone(), f.clone()));
                false
            } else {
                true
            }
        });
        if held.is_empty() {
            self.held.0.remove(conversation_id);
        }
        for (e, f) in ready {
            self.forward_event(&e, f, ctx);
        }
    }
}
