//! The `Hub`: user id -> this node's live sessions, and the one way to put something into a
//! session's mailbox.
//!
//! Channel policy: a session's mailbox is bounded (`limits.outbound_queue`) and only ever fed
//! with `try_send`. A full mailbox never blocks the sender: the session is marked `missed`,
//! and as soon as it handles its mailbox again (its heartbeat is the backstop) it re-reads its
//! conversations' ends from storage and repairs the gap. For messages nothing is lost; for
//! ephemeral frames (typing, presence) a drop is what the contract allows.

use crate::domain::broadcast::{Devices, EventRef};
use crate::domain::view;
use actix::prelude::*;
use bytestring::ByteString;
use dashmap::DashMap;
use parley_protocol::{Conversation, ConversationEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What other actors put into a session's mailbox.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToSession {
    /// A message frame, with its coordinates so the session can keep per-conversation order.
    Message {
        conversation_id: Arc<str>,
        seq: u64,
        frame: ByteString,
    },
    /// Any other finished frame (receipt, typing, presence, deleted, error).
    Frame(ByteString),
    /// An event of a conversation's log: forwarded once the device holds its message.
    Event {
        event: Arc<EventRef>,
        frame: ByteString,
    },
    /// A membership change; the session updates its conversation set, then forwards the frame.
    Conversation {
        event: ConversationEvent,
        conversation: Arc<Conversation>,
        frame: ByteString,
    },
    /// The node is shutting down: close with 1012.
    Shutdown,
    /// Frames may have been missed (the cluster bus broke): repair from storage.
    Refresh,
    /// v1.1: the device was revoked: close with 4401 at once.
    Revoked,
}

#[derive(Clone)]
pub struct SessionHandle {
    pub session_id: Arc<str>,
    pub device_id: Arc<str>,
    pub addr: Recipient<ToSession>,
    /// Set when a frame was refused because the mailbox was full (see the module docs).
    pub missed: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Hub {
    users: DashMap<Arc<str>, Vec<SessionHandle>>,
    last_seen: DashMap<String, i64>,
}

impl Hub {
    /// Returns true if this is the user's first live session (the user came online).
    pub fn register(&self, user_id: Arc<str>, h: SessionHandle) -> bool {
        let mut e = self.users.entry(user_id).or_default();
        e.push(h);
        e.len() == 1
    }

    /// Returns true if that was the user's last live session (the user went offline).
    pub fn unregister(&self, user_id: &str, session_id: &str) -> bool {
        let mut last = false;
        self.users.remove_if_mut(user_id, |_, v| {
            v.retain(|h| &*h.session_id != session_id);
            last = v.is_empty();
            last
        });
        if last {
            self.last_seen
                .insert(user_id.to_string(), crate::ids::now_ms());
        }
        last
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    pub fn last_seen(&self, user_id: &str) -> Option<i64> {
        self.last_seen.get(user_id).map(|v| *v)
    }

    /// Offers to every session of `user_id` what `make` returns for it.
    pub fn offer_user(
        &self,
        user_id: &str,
        mut make: impl FnMut(&SessionHandle) -> Option<ToSession>,
    ) {
        if let Some(sessions) = self.users.get(user_id) {
            for h in sessions.iter() {
                if let Some(m) = make(h) {
                    Self::offer(h, m);
                }
            }
        }
    }

    /// Bounded, never blocking: see the module docs.
    pub fn offer(h: &SessionHandle, m: ToSession) {
        if let Err(SendError::Full(_)) = h.addr.try_send(m) {
            h.missed.store(true, Ordering::Release);
        }
    }

    pub fn send_frame<S: AsRef<str>>(&self, users: &[S], frame: &ByteString, devices: &Devices) {
        for u in users {
            self.offer_user(u.as_ref(), |h| {
                devices
                    .includes(&h.device_id)
                    .then(|| ToSession::Frame(frame.clone()))
            });
        }
    }

    pub fn send_event<S: AsRef<str>>(
        &self,
        users: &[S],
        devices: &Devices,
        event: &Arc<EventRef>,
        frame: &ByteString,
    ) {
        for u in users {
            self.offer_user(u.as_ref(), |h| {
                devices.includes(&h.device_id).then(|| ToSession::Event {
                    event: event.clone(),
                    frame: frame.clone(),
                })
            });
        }
    }

    pub fn announce(
        &self,
        users: &[String],
        event: ConversationEvent,
        conversation: &Arc<Conversation>,
    ) {
        let frame = view::conversation_event(event, conversation);
        for u in users {
            self.offer_user(u, |_| {
                Some(ToSession::Conversation {
                    event,
                    conversation: conversation.clone(),
                    frame: frame.clone(),
                })
            });
        }
    }

    /// Closes (4401) every session of these devices of the user on this node.
    pub fn revoke(&self, user_id: &str, devices: &[String]) {
        self.offer_user(user_id, |h| {
            devices
                .iter()
                .any(|d| **d == *h.device_id)
                .then_some(ToSession::Revoked)
        });
    }

    /// The user's devices with a live session on this node.
    pub fn devices_of(&self, user_id: &str) -> Vec<String> {
        self.users
            .get(user_id)
            .map(|v| v.iter().map(|h| h.device_id.to_string()).collect())
            .unwrap_or_default()
    }

    pub fn users(&self) -> Vec<String> {
        self.users.iter().map(|e| e.key().to_string()).collect()
    }

    pub fn all_sessions(&self) -> Vec<SessionHandle> {
        self.users.iter().flat_map(|e| e.value().clone()).collect()
    }

    pub fn session_count(&self) -> usize {
        self.users.iter().map(|e| e.value().len()).sum()
    }
}
