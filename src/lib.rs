//! Parley: a real-time messaging server that never loses an acknowledged message.
//!
//! Module map (dependencies point down):
//! - `gateway`: HTTP and WebSocket endpoints; turns wire input into calls on the actors.
//! - `actors`: session actors (one per device connection) and conversation actors (one per
//!   active conversation, the single writer of its seq).
//! - `storage`: the `Store` trait and its backends.
//! - `bus`: the Redis bus between the nodes of a cluster (membership, frames, presence).
//! - `protocol` (the `parley-protocol` crate): wire types, shared with the load generator.
//!
//! See ARCHITECTURE.md for the invariants and one send traced end to end.

pub mod actors;
pub mod auth;
pub mod bus;
pub mod config;
pub mod error;
pub mod gateway;
pub mod metrics;
pub mod server;
pub mod storage;

pub use parley_protocol as protocol;
