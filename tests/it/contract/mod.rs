//! The client contract (docs/protocol.md), end to end: a real server process, real sockets.
//! `scripts/test` runs this module once on one node and once on 3 nodes over Redis
//! (`PARLEY_TEST_NODES=3`), where every client and HTTP call goes round-robin to the nodes.

mod accounts;
mod blocks;
mod connection;
mod conversations;
mod devices;
mod edits;
mod files;
mod groups;
pub mod media;
mod messaging;
mod push;
mod receipts;
mod retention;
mod retraction;

mod rough_edges;

mod sync;
