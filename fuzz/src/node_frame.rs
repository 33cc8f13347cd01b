//! Target `node_frame`: a message on the cluster bus, as `bus::Bus::on_message` reads it.
//!
//! Any process that can publish to the cluster's Redis can put these bytes in front of every
//! node, and a node from another release sends frames this one may misread: a crafted bus
//! frame must never crash a node. Checked for any input:
//! - `bus::frame::decode` returns (a version byte, then postcard);
//! - a decoded frame encodes again and decodes to the same sender and frame, so what a node
//!   acts on is exactly what an honest sender with that frame would have sent;
//! - the client frames a receiving node builds from it with `domain::view` (the `message`
//!   frames of a commit batch, with and without the carbon's `client_id`, a `conversation`
//!   event, the `ack` or `error` of a forwarded request's reply) are valid server frames that
//!   carry the decoded fields. `Broadcast::Frame` carries finished JSON text that nodes pass
//!   on as it is, so there is nothing to build for it (see the README on trusting the bus).

use crate::Outcome;
use parley::bus::frame::NodeFrame;
use parley::bus::frame::{decode, encode};
use parley::domain::broadcast::Broadcast;
use parley::domain::{view, ConvReply};
use parley_protocol::ServerFrame;

pub fn run(data: &[u8]) -> Outcome {
    let Ok((from, frame)) = decode(data) else {
        return Outcome::Refused;
    };
    let bytes = encode(&from, frame.clone());
    assert_eq!(
        decode(&bytes),
        Ok((from, frame.clone())),
        "decode(encode(x)) != x for input {data:02x?}"
    );
    check_views(&frame);
    Outcome::Accepted
}

fn check_views(frame: &NodeFrame) {
    match frame {
        NodeFrame::Broadcast(Broadcast::Messages {
            conversation_id,
            messages,
            ..
        }) => {
            for c in messages {
                for carbon in [false, true] {
                    let r = view::CommittedRef {
                        message: &c.message,
                        quote: c.quote.as_ref(),
                    };
                    let json = view::committed_message(conversation_id, c.seq, &r, carbon);
                    match server_frame(&json) {
                        ServerFrame::Message(m) => {
                            assert_eq!(
                                (&m.conversation_id, m.seq, &m.message_id, &m.text),
                                (
                                    conversation_id,
                                    c.seq,
                                    &c.message.message_id,
                                    &c.message.text
                                )
                            );
                            assert_eq!(m.client_id.is_some(), carbon, "carbon decides client_id");
                            assert_eq!(m.reply_to, c.message.reply_to);
                            assert_eq!(m.quote.map(|q| q.seq), c.quote.as_ref().map(|q| q.seq));
                        }
                        other => panic!("committed_message built {other:?}"),
                    }
                }
            }
        }
        NodeFrame::Broadcast(Broadcast::Conversation {
            event,
            conversation,
            ..
        }) => match server_frame(&view::conversation_event(*event, conversation)) {
            ServerFrame::Conversation {
                event: e,
                conversation: c,
            } => assert_eq!((e, &c), (*event, conversation)),
            other => panic!("conversation_event built {other:?}"),
        },
        NodeFrame::Reply {
            result: Ok(ConvReply::Ack(a)),
            ..
        } => match server_frame(&view::ack(a.clone())) {
            ServerFrame::Ack(ack) => assert_eq!(ack, a.clone().into()),
            other => panic!("ack built {other:?}"),
        },
        NodeFrame::Reply { result: Err(e), .. } => {
            match server_frame(&view::error(Some("c1".into()), e)) {
                ServerFrame::Error { code, message, .. } => {
                    assert_eq!((code, &message), (e.code, &e.message))
                }
                other => panic!("error built {other:?}"),
            }
        }
        NodeFrame::Broadcast(Broadcast::Frame { .. })
        | NodeFrame::Broadcast(Broadcast::Event { .. })
        | NodeFrame::Broadcast(Broadcast::Revoked { .. })
        | NodeFrame::Request { .. }
        | NodeFrame::Reply { .. }
        | NodeFrame::Resync
        | NodeFrame::Left => {}
    }
}

/// A frame the node would write to a client socket: it must parse as the protocol says.
fn server_frame(json: &str) -> ServerFrame {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("invalid server frame: {e}\n{json}"))
}
