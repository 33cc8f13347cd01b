//! The rules of the messaging contract, apart from any actor, socket or node.
//!
//! It exists so that every rule and every frame has one home that both the actors and the HTTP
//! gateway use: `ops` is the set of conversation operations (one serde enum, which also travels
//! as-is between nodes), `view` builds every server frame, `reads` answers the read-only
//! queries (history, message pages, what a device is owed), and `rules` checks input,
//! limits and membership. Nothing here uses actix; I/O goes through the `Store` only.

pub mod broadcast;
pub mod ops;
pub mod reads;
pub mod retention;

pub mod rules;
pub mod view;

pub use ops::{AckInfo, Caller, ConvReply, ConvRequest, ConvResult, Submit};
