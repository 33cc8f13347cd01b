//! The actors: one `SessionActor` per connected device, one `ConvActor` per active
//! conversation, and the two registries that let them find each other.
//!
//! Ownership: a conversation's seq counter, member list and receipt positions belong to its
//! `ConvActor` (the single writer). A session's outbound queue and per-conversation delivery
//! positions belong to its `SessionActor`. The `Hub` owns only the index "user -> live
//! sessions"; `Conversations` owns only the index "conversation id -> actor address".

pub mod cluster;
pub mod conversation;
pub mod session;

use crate::auth::Auth;
use crate::bus::frame::NodeFrame;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::storage::{ConversationRow, ConversationState, CreateOutcome, Role, Store};
use actix::prelude::*;
use bytestring::ByteString;
use dashmap::DashMap;
use parley_protocol::{Conversation, ConversationEvent, ConversationKind, ServerFrame};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use conversation::ConvActor;
pub use session::SessionActor;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The services every actor and handler shares. Built once at start-up.
pub struct Core {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    pub hub: Hub,
    pub conversations: Conversations,
    pub cluster: cluster::Cluster,
    pub blob_dir: PathBuf,
    pub shutting_down: AtomicBool,
    /// Held for the life of the node: see `server::lock_data_dir`.
    pub data_lock: std::fs::File,
}

impl Core {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The direct conversation of `a` and `b`, created (and announced) if the pair has none.
    pub async fn ensure_direct(self: &Arc<Self>, a: &str, b: &str) -> ApiResult<(String, bool)> {
        if a == b {
            return Err(ApiError::bad_request(
                "a direct conversation needs another user",
            ));
        }
        if self.store.user_by_id(b).await?.is_none() {
            return Err(ApiError::not_found("no such user"));
        }
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        let key = format!("{x}:{y}");
        let row = ConversationRow {
            conversation_id: new_id(),
            kind: ConversationKind::Direct,
            title: None,
            created_by: a.to_string(),
            created_at: now_ms(),
        };
        let id = row.conversation_id.clone();
        let members = vec![(a.to_string(), Role::Member), (b.to_string(), Role::Member)];
        match self
            .store
            .create_conversation(row, members, Some(key))
            .await?
        {
            CreateOutcome::Existing(existing) => Ok((existing, false)),
            CreateOutcome::Created => {
                self.announce_created(&id).await;
                Ok((id, true))
            }
        }
    }

    /// Creates a group with `creator` as its admin.
    pub async fn create_group(
        self: &Arc<Self>,
        creator: &str,
        title: Option<String>,
        members: Vec<String>,
    ) -> ApiResult<String> {
        let mut all: Vec<String> = vec![creator.to_string()];
        for m in members {
            if !all.contains(&m) {
                all.push(m);
            }
        }
        if all.len() > self.config.limits.max_group_members {
            return Err(ApiError::too_large(format!(
                "a group has at most {} members",
                self.config.limits.max_group_members
            )));
        }
        for m in &all[1..] {
            if self.store.user_by_id(m).await?.is_none() {
                return Err(ApiError::not_found(format!("no such user: {m}")));
            }
        }
        let row = ConversationRow {
            conversation_id: new_id(),
            kind: ConversationKind::Group,
            title,
            created_by: creator.to_string(),
            created_at: now_ms(),
        };
        let id = row.conversation_id.clone();
        let members = all
            .into_iter()
            .map(|u| {
                let role = if u == creator {
                    Role::Admin
                } else {
                    Role::Member
                };
                (u, role)
            })
            .collect();
        self.store.create_conversation(row, members, None).await?;
        self.announce_created(&id).await;
        Ok(id)
    }

    /// Pushes a finished frame to every session of `users`, on this node and the others.
    pub fn push_frame<S: AsRef<str>>(
        &self,
        users: &[S],
        frame: &ByteString,
        except_device: Option<&str>,
    ) {
        if users.is_empty() {
            return;
        }
        for u in users {
            self.hub.push_frame(u.as_ref(), frame, except_device);
        }
        self.cluster.broadcast(|| NodeFrame::Frame {
            users: users.iter().map(|u| u.as_ref().to_string()).collect(),
            except_device: except_device.map(str::to_string),
            frame: frame.to_string(),
        });
    }

    /// Sends a `conversation` event to `users` and `extra` (e.g. one just removed), on every
    /// node.
    pub fn announce(
        &self,
        users: &[String],
        event: ConversationEvent,
        conversation: Arc<Conversation>,
        extra: &[String],
    ) {
        self.cluster.broadcast(|| NodeFrame::Announce {
            users: users.iter().chain(extra).cloned().collect(),
            frame: ServerFrame::Conversation {
                event,
                conversation: (*conversation).clone(),
            }
            .to_json(),
        });
        self.hub.announce(users, event, conversation, extra);
    }

    async fn announce_created(&self, id: &str) {
        match self.store.load_conversation(id).await {
            Ok(Some(state)) => {
                let conv = Arc::new(describe(&state));
                self.announce(&conv.members.clone(), ConversationEvent::Created, conv, &[]);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not announce a new conversation"),
        }
    }
}

/// The client view of a conversation.
pub fn describe(state: &ConversationState) -> Conversation {
    Conversation {
        conversation_id: state.row.conversation_id.clone(),
        kind: state.row.kind,
        title: state.row.title.clone(),
        members: state.members.iter().map(|m| m.user_id.clone()).collect(),
        admins: state
            .members
            .iter()
            .filter(|m| m.role == Role::Admin)
            .map(|m| m.user_id.clone())
            .collect(),
        created_at: state.row.created_at,
        last_seq: state.last_seq,
    }
}

/// What other actors push into a session. Every push goes through the session's bounded
/// mailbox with `try_send`; see `Hub::push` for what happens when it is full.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum Push {
    /// A message frame, with its coordinates so the session can keep per-conversation order.
    Message {
        conversation_id: Arc<str>,
        seq: u64,
        frame: ByteString,
    },
    /// Any other frame (receipt, typing, presence, deleted).
    Frame(ByteString),
    /// A membership change; the session updates its conversation set, then forwards the frame.
    Conversation {
        event: ConversationEvent,
        conversation: Arc<Conversation>,
        frame: ByteString,
    },
    /// The node is shutting down: close with 1012.
    Shutdown,
    /// Pushes may have been missed (the cluster bus broke): repair from storage.
    Refresh,
}

#[derive(Clone)]
pub struct SessionHandle {
    pub session_id: Arc<str>,
    pub device_id: Arc<str>,
    pub addr: Addr<SessionActor>,
    /// Set when a push was refused because the mailbox was full: the session repairs the gap
    /// from storage when it next handles its mailbox (or, failing that, on its heartbeat).
    pub missed: Arc<AtomicBool>,
}

/// user id -> live sessions on this node.
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
                .insert(user_id.to_string(), crate::actors::now_ms());
        }
        last
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    pub fn last_seen(&self, user_id: &str) -> Option<i64> {
        self.last_seen.get(user_id).map(|v| *v)
    }

    /// Pushes to every session of `user_id` for which `make` returns a push.
    pub fn push_user(&self, user_id: &str, mut make: impl FnMut(&SessionHandle) -> Option<Push>) {
        if let Some(sessions) = self.users.get(user_id) {
            for h in sessions.iter() {
                if let Some(p) = make(h) {
                    Self::push(h, p);
                }
            }
        }
    }

    /// Bounded, never blocking: a full mailbox marks the session as having missed a push. For
    /// messages that is repaired from storage (nothing is lost); for ephemeral frames (typing,
    /// presence) it is a drop, which the contract allows.
    pub fn push(h: &SessionHandle, p: Push) {
        if let Err(SendError::Full(_)) = h.addr.try_send(p) {
            h.missed.store(true, Ordering::Release);
        }
    }

    pub fn push_frame(&self, user_id: &str, frame: &ByteString, except_device: Option<&str>) {
        self.push_user(user_id, |h| {
            if Some(&*h.device_id) == except_device {
                None
            } else {
                Some(Push::Frame(frame.clone()))
            }
        });
    }

    /// Sends a `conversation` event to `users` (and `extra` users, e.g. one just removed).
    pub fn announce(
        &self,
        users: &[String],
        event: ConversationEvent,
        conversation: Arc<Conversation>,
        extra: &[String],
    ) {
        let frame: ByteString = ServerFrame::Conversation {
            event,
            conversation: (*conversation).clone(),
        }
        .to_json()
        .into();
        for u in users.iter().chain(extra.iter()) {
            self.push_user(u, |_| {
                Some(Push::Conversation {
                    event,
                    conversation: conversation.clone(),
                    frame: frame.clone(),
                })
            });
        }
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

/// conversation id -> its live actor on this node.
#[derive(Default)]
pub struct Conversations {
    map: DashMap<Arc<str>, Addr<ConvActor>>,
}

impl Conversations {
    /// The conversation's actor, started (and loaded from storage) if it is not running.
    pub fn get(&self, core: &Arc<Core>, id: &str) -> Addr<ConvActor> {
        if let Some(a) = self.map.get(id) {
            if a.connected() {
                return a.clone();
            }
        }
        let key: Arc<str> = Arc::from(id);
        let mut entry = self
            .map
            .entry(key.clone())
            .or_insert_with(|| ConvActor::new(core.clone(), key.clone()).start());
        if !entry.connected() {
            *entry = ConvActor::new(core.clone(), key).start();
        }
        entry.clone()
    }

    /// Removes `id` only if it still maps to `addr` (a newer actor may have replaced it).
    pub fn remove_if(&self, id: &str, addr: &Addr<ConvActor>) {
        self.map.remove_if(id, |_, a| a == addr);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn all(&self) -> Vec<Addr<ConvActor>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    pub fn entries(&self) -> Vec<(Arc<str>, Addr<ConvActor>)> {
        self.map
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }
}
