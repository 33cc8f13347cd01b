//! The actors: one `SessionActor` per connected device, one `ConvActor` per active
//! conversation, and the indexes that let them find each other.
//!
//! Ownership: a conversation's seq counter, member list and receipt positions belong to its
//! `ConvActor` (the single writer). A session's outbound queue and per-conversation delivery
//! positions belong to its `SessionActor`. The `Hub` owns only the index "user -> live
//! sessions"; the `Registry` only "conversation id -> actor address". Whether other nodes
//! exist is behind the `Peers` trait (`routing`): the actors look the same on one node and in
//! a cluster.

pub mod conversation;
pub mod core;
pub mod create;
mod fanout;
pub mod hub;
pub mod registry;
pub mod routing;
pub mod session;

pub use self::core::Core;
pub use conversation::ConvActor;
pub use hub::{Hub, SessionHandle, ToSession};
pub use registry::Registry;
pub use routing::{Peers, SingleNode};
pub use session::SessionActor;
