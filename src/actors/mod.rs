//! The actors: one `SessionActor` per connected device, one `ConvActor` per active
//! conversation, and the indexes that let them find each other.
//!
//! Ownership: a conversation's seq counter, member list and receipt positions belong to its
//! `ConvActor` (the single writer). A session's outbound queue and per-conversation delivery
//! positions belong to its `SessionActor`. The `Hub` owns only the index "user -> live
//! sessions"; the `Registry` only "conversation id -> actor". Whether other nodes exist is
//! behind the `Peers` trait: the actors look the same on one node and in a cluster.
//!
//! Within `actors`, dependencies point one way too: `envelope`, `peers`, `hub` and `admission` at the
//! bottom; `registry` (holds handles, starts nothing); `core` (the shared services, with the
//! hub, the peers and the registry); the conversation actor on `core`; `routing` (starts
//! conversation actors and sends to them); `create`, `sweep` and the session actor on top.

pub mod access;
pub mod admission;
pub mod conversation;
pub mod core;
pub mod create;
pub mod envelope;
mod fanout;
pub mod housekeeping;
pub mod hub;
pub mod last_seen;
pub mod peers;
pub mod presence;
pub mod registry;
pub mod routing;
pub mod session;
pub mod sweep;

pub use self::core::Core;
pub use hub::{Hub, ToSession};
pub use peers::{Peers, SingleNode};
pub use session::SessionActor;
