//! Handing committed messages to this node's sessions: the same code on the conversation's
//! owner (right after the commit) and on every other node (from the bus).
//!
//! Each message's frame is serialised at most once per node, when the first session for it is
//! found, and shared by every session it goes to. The sending device gets its ack instead;
//! the sender's other devices get the carbon (the frame with `client_id`).

use super::hub::{Hub, ToSession};
use crate::domain::view;
use crate::domain::view::CommittedRef;
use bytestring::ByteString;
use std::sync::Arc;

pub(super) fn messages<'a, 'm>(
    hub: &Hub,
    conversation_id: &Arc<str>,
    members: impl Iterator<Item = &'a str> + Clone,
    messages: impl Iterator<Item = (u64, CommittedRef<'m>)>,
) {
    for (seq, c) in messages {
        let m = c.message;
        // Built on first use: a node may hold no session of these members at all.
        let mut plain: Option<ByteString> = None;
        let mut carbon: Option<ByteString> = None;
        for member in members.clone() {
            let own = member == m.sender_id;
            hub.offer_user(member, |h| {
                if own && *h.device_id == *m.sender_device_id {
                    return None;
                }
                let slot = if own { &mut carbon } else { &mut plain };
                let frame = slot
                    .get_or_insert_with(|| view::committed_message(conversation_id, seq, &c, own))
                    .clone();
                Some(ToSession::Message {
                    conversation_id: conversation_id.clone(),
                    seq,
                    frame,
                })
            });
        }
    }
}
