//! `xmpp`: the `direct` workload against an XMPP server over WebSocket (RFC 7395), for
//! ejabberd with its message archive (mod_mam) on SQL (issue 15, target 5).
//!
//! Each pair is a sender and a receiver, each its own account (registered in-band, XEP-0077)
//! and socket, authenticated with SASL PLAIN and bound to a resource. The sender's "ack" is
//! stream management's (XEP-0198): `<r/>` after each message, and the server's `<a h='n'/>`
//! says it has handled the first n stanzas (archived them, with `mod_mam` `default: always`).
//! Every body carries the pair's message number and send time, so the receiver checks order
//! and completeness as `direct` does. The frames are the driver's own, so the few fields it
//! reads are found by position, not by a general XML parser.

use crate::client::{hist, Order};
use crate::peer_run::{now_us, tally, Finish, Pacer, Received, Sent, Workload};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const DOMAIN: &str = "localhost";

fn open() -> String {
    format!("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{DOMAIN}' version='1.0'/>")
}

/// The text between `<tag...>` and `</tag>` in `s`.
fn inner<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    let start = s.find(&format!("<{tag}"))?;
    let body = start + s[start..].find('>')? + 1;
    let end = body + s[body..].find(&format!("</{tag}>"))?;
    Some(&s[body..end])
}

/// The value of `attr='...'` (or `"..."`) in `s`.
fn attr<'a>(s: &'a str, attr: &str) -> Option<&'a str> {
    let i = s.find(&format!(" {attr}="))? + attr.len() + 2;
    let q = s[i..].chars().next()?;
    let rest = &s[i + 1..];
    Some(&rest[..rest.find(q)?])
}

async fn send(ws: &mut Ws, s: String) -> Result<(), String> {
    ws.send(Message::Text(s.into()))
        .await
        .map_err(|e| e.to_string())
}

/// The server asks how many stanzas this side has handled (XEP-0198 `<r/>`): unanswered, it
/// closes the stream after its ack timeout.
fn is_request(t: &str) -> bool {
    t.starts_with("<r ") || t.starts_with("<r/")
}

/// A stanza, which stream management counts.
fn is_stanza(t: &str) -> bool {
    t.starts_with("<message") || t.starts_with("<presence") || t.starts_with("<iq")
}

/// The next frame for which `want` holds; an XMPP error or a closed socket is an error.
async fn until(ws: &mut Ws, want: impl Fn(&str) -> bool) -> Result<String, String> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "timed out".to_string())?;
        match m {
            Some(Ok(Message::Text(t))) => {
                if want(&t) {
                    return Ok(t.to_string());
                }
                if t.contains("<failure") || t.starts_with("<stream:error") {
                    return Err(t.to_string());
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("closed: {other:?}")),
        }
    }
}

/// Registers `user` (an existing account is fine), logs in, binds, announces presence and
/// enables stream management: a session ready to chat.
async fn session(url: &str, user: &str) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    // No Nagle: a message and its `<r/>` are two small writes, and the second would wait
    // for the peer's delayed ACK (40 ms) of the first.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .map_err(|e| e.to_string())?;
    send(&mut ws, open()).await?;
    until(&mut ws, |t| t.contains("<stream:features")).await?;
    send(&mut ws, format!("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>pw</password></query></iq>")).await?;
    let reg = until(&mut ws, |t| {
        t.contains("id='reg'") || t.contains("id=\"reg\"")
    })
    .await?;
    if reg.contains("type='error'") && !reg.contains("conflict") {
        return Err(format!("registration refused: {reg}"));
    }
    let plain = base64_plain(user, "pw");
    send(
        &mut ws,
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>"),
    )
    .await?;
    until(&mut ws, |t| t.contains("<success")).await?;
    send(&mut ws, open()).await?;
    until(&mut ws, |t| t.contains("<stream:features")).await?;
    send(&mut ws, "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>".into()).await?;
    until(&mut ws, |t| {
        t.contains("id='bind'") || t.contains("id=\"bind\"")
    })
    .await?;
    send(&mut ws, "<presence/>".into()).await?;
    // After presence, so that `h` counts the messages alone.
    send(&mut ws, "<enable xmlns='urn:xmpp:sm:3'/>".into()).await?;
    until(&mut ws, |t| t.contains("<enabled")).await?;
    Ok(ws)
}

/// SASL PLAIN's initial response: base64 of NUL user NUL password.
fn base64_plain(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

pub async fn direct(url: &str, w: &Workload) -> Value {
    let run = std::process::id();
    let text = "x".repeat(w.size);
    let t0 = Instant::now();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(w.pairs + 1));
    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    for i in 0..w.pairs {
        let (sn, rn) = (format!("s{run}x{i}"), format!("r{run}x{i}"));
        let rws = session(url, &rn).await.expect("xmpp: receiver session");
        let sws = session(url, &sn).await.expect("xmpp: sender session");
        let (done_tx, done_rx) = tokio::sync::watch::channel(0u64);
        receivers.push(tokio::spawn(receive(rws, t0, Finish::new(done_rx))));
        let (text, start, w2) = (text.clone(), start.clone(), w.clone());
        let to = format!("{rn}@{DOMAIN}");
        senders.push(tokio::spawn(async move {
            start.wait().await;
            let sent = send_loop(sws, &to, &text, Pacer::new(&w2, i), t0).await;
            let _ = done_tx.send(sent.1);
            sent
        }));
    }
    tally("xmpp_direct", w, start, senders, receivers).await
}

/// One sender, paced by `pace`: message n, then `<r/>`; the server's `<a h>` acks every
/// message up to h. Returns the ack histogram, the messages acked and the errors.
async fn send_loop(mut ws: Ws, to: &str, text: &str, mut pace: Pacer, t0: Instant) -> Sent {
    let mut ack_h = hist();
    let (mut n, mut acked, mut errors) = (0u64, 0u64, 0u64);
    let mut inflight: VecDeque<u64> = VecDeque::new(); // send times of n = acked+1..
    let mut handled = 0u64; // stanzas from the server, for its own `<r/>`
    loop {
        if pace.finished(inflight.len(), errors) {
            break;
        }
        let busy = inflight.len();
        tokio::select! {
            biased;
            m = tokio::time::timeout(Duration::from_secs(10), ws.next()) => match m {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if is_request(&t) {
                        let _ = send(&mut ws, format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>")).await;
                    } else if is_stanza(&t) {
                        handled += 1;
                    } else if t.starts_with("<a ") {
                        let h: u64 = attr(&t, "h").and_then(|h| h.parse().ok()).unwrap_or(acked);
                        let now = now_us(t0);
                        while acked < h {
                            let Some(sent) = inflight.pop_front() else { break };
                            acked += 1;
                            let _ = ack_h.record(now.saturating_sub(sent).max(1));
                        }
                    } else if t.contains("type='error'") || t.starts_with("<stream:error") {
                        errors += 1;
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => { errors += 1; break; }
            },
            _ = pace.next(busy, errors) => {
                n += 1;
                let now = now_us(t0);
                let m = format!("<message to='{to}' type='chat' id='m{n}'><body>{n}:{now}:{text}</body></message>");
                if send(&mut ws, m).await.is_err() || send(&mut ws, "<r xmlns='urn:xmpp:sm:3'/>".into()).await.is_err() {
                    errors += 1;
                    continue;
                }
                inflight.push_back(now);
            }
        }
    }
    let _ = ws.close(None).await;
    (ack_h, acked, errors)
}

/// One receiver: reads bodies until `finish` says it is done. Answers the server's `<r/>`,
/// so that its stream-management queue stays short.
async fn receive(mut ws: Ws, t0: Instant, mut finish: Finish) -> Received {
    let mut e2e = hist();
    let mut order = Order::default();
    let mut handled = 0u64;
    loop {
        if finish.reached(&order) {
            break;
        }
        tokio::select! {
            m = tokio::time::timeout(Duration::from_millis(200), ws.next()) => match m {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if is_request(&t) {
                        let _ = send(&mut ws, format!("<a xmlns='urn:xmpp:sm:3' h='{handled}'/>")).await;
                        continue;
                    }
                    if !is_stanza(&t) {
                        continue;
                    }
                    handled += 1;
                    let Some(body) = inner(&t, "body") else { continue };
                    let mut parts = body.splitn(3, ':');
                    let (Some(Ok(n)), Some(Ok(sent))) = (parts.next().map(str::parse::<u64>), parts.next().map(str::parse::<u64>)) else { continue };
                    if order.see(n) {
                        let now = now_us(t0);
                        let _ = e2e.record(now.saturating_sub(sent).max(1));
                    }
                }
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(Some(Err(_))) | Ok(None) => break,
            },
            _ = finish.sender_done() => {}
        }
    }
    let _ = ws.close(None).await;
    (e2e, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_base64_of_nul_user_nul_password() {
        assert_eq!(base64_plain("user", "pw"), "AHVzZXIAcHc=");
        assert_eq!(base64_plain("ab", "c"), "AGFiAGM=");
    }

    #[test]
    fn fields_are_found_by_position() {
        let t = "<message from='a@x' to='b@x'><body>3:17:xx</body></message>";
        assert_eq!(inner(t, "body"), Some("3:17:xx"));
        assert_eq!(attr("<a xmlns='urn:xmpp:sm:3' h=\"12\"/>", "h"), Some("12"));
    }
}
