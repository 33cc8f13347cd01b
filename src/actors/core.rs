//! `Core`: the services every actor and handler shares, built once at start-up.
//!
//! It is also the one door for side effects that reach other nodes: a frame for some users,
//! a membership event, a commit's fan-out each go to this node's sessions through the `Hub`
//! and, in a cluster, to the other nodes through `Peers`, always together.

use super::access::Access;
use super::admission::Admission;
use super::fanout;
use super::hub::Hub;
use super::peers::Peers;
use super::registry::Registry;
use crate::auth::Auth;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::domain::broadcast::{Broadcast, Committed, Devices, EventRef, QuoteInfo};
use crate::domain::view::CommittedRef;
use crate::metrics::Metrics;
use crate::storage::{MemberRow, NewMessage, Store};
use bytestring::ByteString;
use parley_protocol::{Conversation, ConversationEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One message of a commit batch that was stored: its seq, its index in the batch, and the
/// quote it carries if it is a reply.
pub struct Stored {
    pub seq: u64,
    pub index: usize,
    pub quote: Option<QuoteInfo>,
}

pub struct Core {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    pub hub: Hub,
    pub conversations: Registry,
    pub peers: Arc<dyn Peers>,
    pub blobs: Blobs,
    /// v1.1: the bounded pool of image processing.
    pub media: crate::media::Media,
    pub admission: Arc<Admission>,
    /// v1.1: which devices may use their tokens (revocation), and the rate limits of users
    /// and addresses.
    pub access: Access,
    /// v1.1: when devices' sessions ended, written in batches.
    pub last_seen: Arc<super::last_seen::LastSeen>,
    /// The metrics of the bridge this node runs in-process, if it runs one.
    pub push_metrics: std::sync::OnceLock<Arc<crate::push::metrics::PushMetrics>>,
    shutting_down: AtomicBool,
}

impl Core {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        auth: Auth,
        metrics: Arc<Metrics>,
        peers: Arc<dyn Peers>,
        admission: Arc<Admission>,
        blobs: Blobs,
    ) -> Core {
        let access = Access::new(&config);
        let media = crate::media::Media::new(&config.media);
        Core {
            config,
            store,
            auth,
            metrics,
            hub: Hub::default(),
            conversations: Registry::default(),
            peers,
            blobs,
            media,
            admission,
            access,
            last_seen: Arc::default(),
            push_metrics: std::sync::OnceLock::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Removes the rows of `file_ids` that nothing refers to any more and unlinks every blob
    /// no remaining row uses: the one place a file's bytes are deleted (after a retraction, a
    /// retention purge, or the sweep of unattached uploads). `Store::orphaned_blobs` returns
    /// every blob of the removed rows (the content and any blob derived from it). A failed
    /// unlink leaves an unreferenced blob (logged), never a broken reference.
    pub async fn purge_files(&self, file_ids: Vec<String>) {
        if file_ids.is_empty() {
            return;
        }
        match self.store.orphaned_blobs(file_ids).await {
            Ok(blobs) => {
                for sha in blobs {
                    if let Err(e) = self.blobs.unlink(&sha).await {
                        tracing::warn!(error = %e, blob = %sha, "could not unlink a purged blob");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "blob cleanup failed"),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// From now on readiness is red and new sends get `unavailable`.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// A finished frame for the sessions of `users` (those of `devices`), on every node.
    pub fn send_frame<S: AsRef<str>>(&self, users: &[S], frame: &ByteString, devices: Devices) {
        if users.is_empty() {
            return;
        }
        self.hub.send_frame(users, frame, &devices);
        if self.peers.is_clustered() {
            self.peers.broadcast(Broadcast::Frame {
                users: users.iter().map(|u| u.as_ref().to_string()).collect(),
                devices,
                frame: frame.to_string(),
            });
        }
    }

    /// A `conversation` event for the sessions of `users`, on every node.
    pub fn announce(
        &self,
        users: Vec<String>,
        event: ConversationEvent,
        conversation: Conversation,
    ) {
        let conversation = Arc::new(conversation);
        self.hub.announce(&users, event, &conversation);
        if self.peers.is_clustered() {
            self.peers.broadcast(Broadcast::Conversation {
                users,
                event,
                conversation: (*conversation).clone(),
            });
        }
    }

    /// Hands one commit batch of a conversation to every device of its members, on every
    /// node: one broadcast per batch, not one per recipient.
    pub fn fan_out(
        &self,
        conversation_id: &Arc<str>,
        members: &[MemberRow],
        batch: &[NewMessage],
        stored: &[Stored],
    ) {
        let ids = members.iter().map(|m| m.user_id.as_str());
        let messages = stored.iter().map(|s| {
            let c = CommittedRef {
                message: &batch[s.index],
                quote: s.quote.as_ref(),
            };
            (s.seq, c)
        });
        fanout::messages(&self.hub, conversation_id, ids.clone(), messages);
        if self.peers.is_clustered() {
            self.peers.broadcast(Broadcast::Messages {
                conversation_id: conversation_id.to_string(),
                members: ids.map(str::to_string).collect(),
                messages: stored
                    .iter()
                    .map(|s| Committed {
                        seq: s.seq,
                        message: batch[s.index].clone(),
                        quote: s.quote.clone(),
                    })
                    .collect(),
            });
        }
    }

    /// An event of a conversation's log for the sessions of `users`, on every node.
    pub fn send_event<S: AsRef<str>>(
        &self,
        users: &[S],
        devices: Devices,
        event: EventRef,
        frame: &ByteString,
    ) {
        let event = Arc::new(event);
        self.hub.send_event(users, &devices, &event, frame);
        if self.peers.is_clustered() {
            self.peers.broadcast(Broadcast::Event {
                users: users.iter().map(|u| u.as_ref().to_string()).collect(),
                devices,
                event: (*event).clone(),
                frame: frame.to_string(),
            });
        }
    }

    /// v1.1: these devices were deleted from the store: every node stops accepting their
    /// tokens and closes their sessions with 4401.
    pub fn revoke(&self, user_id: &str, devices: Vec<String>) {
        self.access.forget(&devices);
        self.hub.revoke(user_id, &devices);
        if self.peers.is_clustered() {
            self.peers.broadcast(Broadcast::Revoked {
                user_id: user_id.to_string(),
                devices,
            });
        }
    }

    /// Hands a broadcast from another node to this node's sessions.
    pub fn receive(&self, b: Broadcast) {
        match b {
            Broadcast::Messages {
                conversation_id,
                members,
                messages,
            } => {
                let id: Arc<str> = Arc::from(conversation_id.as_str());
                let items = messages.iter().map(|c| {
                    let r = CommittedRef {
                        message: &c.message,
                        quote: c.quote.as_ref(),
                    };
                    (c.seq, r)
                });
                fanout::messages(&self.hub, &id, members.iter().map(String::as_str), items);
            }
            Broadcast::Frame {
                users,
                devices,
                frame,
            } => self
                .hub
                .send_frame(&users, &ByteString::from(frame), &devices),
            Broadcast::Conversation {
                users,
                event,
                conversation,
            } => self.hub.announce(&users, event, &Arc::new(conversation)),
            Broadcast::Event {
                users,
                devices,
                event,
                frame,
            } => self
                .hub
                .send_event(&users, &devices, &Arc::new(event), &ByteString::from(frame)),
            Broadcast::Revoked { user_id, devices } => {
                self.access.forget(&devices);
                self.hub.revoke(&user_id, &devices);
            }
        }
    }
}

/// An in-process bridge tells the user's devices, on every node, that a target died.
impl crate::push::bridge::TargetEvents for Core {
    fn target_disabled(
        &self,
        user_id: &str,
        device_id: &str,
        target: &crate::storage::PushTargetRow,
    ) {
        let frame = crate::domain::view::push_target(device_id, target);
        self.send_frame(&[user_id], &frame, Devices::All);
    }
}
