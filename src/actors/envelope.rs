//! What goes into a conversation actor's mailbox, and the reply channel of a request.
//!
//! Defined apart from the actor so that the registry, the routing and the cluster can hold
//! and send to conversation actors without depending on the actor itself.

use crate::domain::{ConvRequest, ConvResult};
use actix::prelude::*;
use std::time::Instant;
use tokio::sync::oneshot;

/// Requests a conversation actor holds before refusing more.
pub const MAILBOX: usize = 4096;

pub type Reply = oneshot::Sender<ConvResult>;

/// A request in a conversation actor's mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Envelope {
    pub request: ConvRequest,
    /// `None` for fire-and-forget requests (see `ConvRequest::expects_reply`).
    pub reply: Option<Reply>,
    /// When the request reached this node (for the ack latency metric).
    pub arrived: Instant,
}

/// This node no longer owns the conversation: finish what was accepted, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinquish;
