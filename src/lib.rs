//! Parley: a real-time messaging server that never loses an acknowledged message.
//!
//! Module map (dependencies point down; ARCHITECTURE.md has the whole map):
//! - `server`: start-up and shutdown; wires everything below together.
//! - `gateway`: HTTP and WebSocket endpoints; turns wire input into calls on the actors.
//! - `cluster`: the actors' `Peers` over the Redis bus, and handling of other nodes' frames.
//! - `actors`: session actors (one per device connection) and conversation actors (one per
//!   active conversation, the single writer of its seq), and how requests reach them.
//! - `domain`: the contract's operations, rules, reads and frames, without actors or I/O
//!   beyond the `Store`.
//! - `storage`: the `Store` trait and its backends. `bus`: the Redis transport between nodes.
//! - leaves: `ids`, `blobs`, `error`, `config`, `metrics`, `auth`, and `protocol` (the
//!   `parley-protocol` crate: wire types, shared with the load generator).

pub mod actors;
pub mod auth;
pub mod blobs;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod ids;
pub mod media;
pub mod metrics;
pub mod push;
pub mod server;
pub mod storage;

pub use parley_protocol as protocol;
