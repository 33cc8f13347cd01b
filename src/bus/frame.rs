//! Node-to-node frames: the only bytes nodes exchange over the bus.
//!
//! Encoded with postcard behind a one-byte version, so that a node can refuse (and count) a
//! frame from a newer release instead of misreading it during a rolling upgrade. Requests and
//! broadcasts are the domain's own types (`domain::ops`, `domain::broadcast`), so a forwarded
//! request is decoded into exactly what a local caller would have built. Client-facing JSON
//! that a frame carries whole (receipts, typing) stays JSON text.

use crate::domain::broadcast::Broadcast;
use crate::domain::{ConvRequest, ConvResult};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of `NodeFrame` or of the domain types it carries.
pub const VERSION: u8 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeFrame {
    /// Something every node hands to its local sessions (committed messages, a frame, a
    /// membership event): one frame per commit batch or event, not one per recipient.
    Broadcast(Broadcast),
    /// A request for the conversation's owner node; answered with `Reply` to the asking node's
    /// channel when `req_id` is not 0.
    Request {
        req_id: u64,
        conversation_id: String,
        request: ConvRequest,
    },
    Reply {
        req_id: u64,
        result: ConvResult,
    },
    /// The sender could not publish for a while: every node re-reads its sessions' positions.
    Resync,
    /// The sender is leaving the cluster (graceful shutdown): take over its conversations now.
    Left,
}

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
        // Bytes after the envelope are refused: one frame has one encoding.
        Some((&VERSION, rest)) => match postcard::take_from_bytes::<Envelope>(rest) {
            Ok((e, [])) => Ok((e.from.to_string(), e.frame)),
            _ => Err(DecodeError::Malformed),
        },
        Some((v, _)) => Err(DecodeError::Version(*v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::broadcast::{Committed, Devices, EventRef, QuoteInfo};
    use crate::domain::{Caller, ConvReply, Submit};
    use crate::error::ApiError;
    use crate::storage::NewMessage;

    #[test]
    fn round_trip() {
        let f = NodeFrame::Request {
            req_id: 7,
            conversation_id: "c".into(),
            request: ConvRequest::Submit(Submit {
                by: Caller {
                    user_id: "u".into(),
                    device_id: "d".into(),
                },
                client_id: "m1".into(),
                text: Some("hi".into()),
                attachments: vec![],
                meta: None,
                reply_to: None,
            }),
        };
        let bytes = encode("node-a", f.clone());
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode(&bytes), Ok(("node-a".to_string(), f)));
        for frame in [
            NodeFrame::Reply {
                req_id: 7,
                result: Err(ApiError::forbidden("no")),
            },
            NodeFrame::Reply {
                req_id: 8,
                result: Ok(ConvReply::Done),
            },
            NodeFrame::Broadcast(Broadcast::Messages {
                conversation_id: "c".into(),
                members: vec!["u".into()],
                messages: vec![Committed {
                    seq: 1,
                    message: NewMessage {
                        message_id: "m".into(),
                        sender_id: "u".into(),
                        sender_device_id: "d".into(),
                        client_id: "c1".into(),
                        ts: 3,
                        text: None,
                        attachments: vec![],
                        meta: Some("{}".into()),
                        reply_to: Some(1),
                    },
                    quote: Some(QuoteInfo {
                        seq: 1,
                        sender_id: "v".into(),
                        text: None,
                        attachments: 2,
                        deleted: true,
                    }),
                }],
            }),
            NodeFrame::Broadcast(Broadcast::Frame {
                users: vec!["u".into()],
                devices: Devices::Only("d".into()),
                frame: "{}".into(),
            }),
            NodeFrame::Broadcast(Broadcast::Event {
                users: vec!["u".into()],
                devices: Devices::All,
                event: EventRef {
                    conversation_id: "c".into(),
                    event_no: 4,
                    seq: 2,
                },
                frame: "{}".into(),
            }),
            NodeFrame::Left,
        ] {
            assert_eq!(decode(&encode("b", frame.clone())).unwrap().1, frame);
        }
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut bytes = encode("a", NodeFrame::Resync);
        bytes[0] = VERSION + 1;
        assert_eq!(decode(&bytes), Err(DecodeError::Version(VERSION + 1)));
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[VERSION, 0xff, 0xff]), Err(DecodeError::Malformed));
        let mut trailing = encode("a", NodeFrame::Resync);
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(DecodeError::Malformed));
    }
}
