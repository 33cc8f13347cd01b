//! The session's WebSocket (tokio-tungstenite), split in two: the read half is the actor's
//! stream of client frames, the write half belongs to `outbound`, which lends it to one write
//! at a time.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;
pub(super) type Inbound = SplitStream<Ws>;
pub(super) type Outbound = SplitSink<Ws, Message>;

pub struct Socket {
    /// Until the actor starts and reads from it.
    pub(super) inbound: Option<Inbound>,
    /// `None` while a write holds it.
    pub(super) sink: Option<Outbound>,
}

impl Socket {
    pub fn new(ws: Ws) -> Socket {
        let (sink, inbound) = ws.split();
        Socket {
            inbound: Some(inbound),
            sink: Some(sink),
        }
    }
}
