//! Node-to-node frames: the only bytes nodes exchange over the bus.
//!
//! Encoded with postcard behind a one-byte version, so that a node can refuse (and count) a
//! frame from a newer release instead of misreading it during a rolling upgrade. Fields that
//! carry client-facing JSON (message frames, attachments) stay JSON text: it is built once by
//! the owner and forwarded byte for byte, and postcard cannot encode arbitrary JSON values.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of `NodeFrame`.
pub const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeFrame {
    /// Committed messages of one conversation, for every node to hand to its local sessions of
    /// `members`. One frame per commit batch, broadcast once: not one per recipient.
    Deliver {
        conversation_id: String,
        members: Vec<String>,
        messages: Vec<Delivery>,
    },
    /// A finished client frame (receipt, typing, presence, deleted) for the sessions of `users`.
    Frame {
        users: Vec<String>,
        except_device: Option<String>,
        frame: String,
    },
    /// A `conversation` event (JSON of the client frame) for the sessions of `users`.
    Announce {
        users: Vec<String>,
        frame: String,
    },
    /// A request for the conversation's owner node; answered with `Reply` to the sender's
    /// node channel when `req_id` is not 0.
    Request {
        req_id: u64,
        conversation_id: String,
        body: Request,
    },
    Reply {
        req_id: u64,
        result: ReplyResult,
    },
    /// The sender could not publish for a while: every node re-reads its sessions' positions.
    Resync,
    /// The sender is leaving the cluster (graceful shutdown): take over its conversations now.
    Left,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub sender_id: String,
    pub sender_device_id: String,
    pub client_id: String,
    /// The `message` client frame as JSON, without `client_id`.
    pub frame: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Submit {
        user_id: String,
        device_id: String,
        client_id: String,
        text: Option<String>,
        /// JSON array of attachments, already resolved by the receiving node.
        attachments: String,
        meta: Option<String>,
    },
    Cursor {
        user_id: String,
        device_id: String,
        read: bool,
        seq: u64,
    },
    Delete {
        user_id: String,
        device_id: String,
        id: String,
        seq: u64,
        everyone: bool,
    },
    Typing {
        user_id: String,
    },
    AddMembers {
        by: String,
        user_ids: Vec<String>,
    },
    RemoveMember {
        by: String,
        user_id: String,
    },
}

/// Ok: the reply as JSON (an ack, a conversation, or `null`). Err: (error code, message).
pub type ReplyResult = Result<String, (String, String)>;

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    from: &'a str,
    frame: NodeFrame,
}

pub fn encode(from: &str, frame: NodeFrame) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Encoding into a Vec cannot fail for these types.
    out.extend(postcard::to_stdvec(&Envelope { from, frame }).expect("postcard encode"));
    out
}

#[derive(Debug, PartialEq)]
pub enum DecodeError {
    Empty,
    Version(u8),
    Malformed,
}

pub fn decode(bytes: &[u8]) -> Result<(String, NodeFrame), DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&VERSION, rest)) => postcard::from_bytes::<Envelope>(rest)
            .map(|e| (e.from.to_string(), e.frame))
            .map_err(|_| DecodeError::Malformed),
        Some((v, _)) => Err(DecodeError::Version(*v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = NodeFrame::Request {
            req_id: 7,
            conversation_id: "c".into(),
            body: Request::Submit {
                user_id: "u".into(),
                device_id: "d".into(),
                client_id: "m1".into(),
                text: Some("hi".into()),
                attachments: "[]".into(),
                meta: None,
            },
        };
        let bytes = encode("node-a", f.clone());
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode(&bytes), Ok(("node-a".to_string(), f)));
        let reply = NodeFrame::Reply {
            req_id: 7,
            result: Err(("forbidden".into(), "no".into())),
        };
        assert_eq!(decode(&encode("b", reply.clone())).unwrap().1, reply);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut bytes = encode("a", NodeFrame::Resync);
        bytes[0] = VERSION + 1;
        assert_eq!(decode(&bytes), Err(DecodeError::Version(VERSION + 1)));
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[VERSION, 0xff, 0xff]), Err(DecodeError::Malformed));
    }
}
