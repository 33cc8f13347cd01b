//! APNs (HTTP/2, token auth) against `fakes::apns`.

use super::{
    class, closed_port, huge_preview, note, p256_key, provider, push_toml, retry_after, target, CK,
};
use crate::push::fakes::apns::{FakeApns, KEY_ID, TEAM_ID, TOPIC, UNREGISTERED_AT};
use crate::push::fakes::{serve, Reply, TestCa, TestClock};
use futures_util::future::join_all;
use parley::push::{Kind, Outcome, Provider, ProviderKind};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Setup {
    ca: TestCa,
    dir: tempfile::TempDir,
    clock: TestClock,
    fake: FakeApns,
    p: Arc<dyn Provider>,
}

fn toml(ca: &TestCa, key: &Path, base_url: &str) -> String {
    format!(
        "{}[push.apns]\nkey_file = \"{}\"\nkey_id = \"{KEY_ID}\"\nteam_id = \"{TEAM_ID}\"\n\
         topic = \"{TOPIC}\"\nbase_url = \"{base_url}\"\n",
        push_toml(ca),
        key.display()
    )
}

async fn setup() -> Setup {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (key, public) = p256_key(dir.path(), "AuthKey.p8");
    let fake = FakeApns::start(&ca, &clock, public).await;
    let p = provider(&toml(&ca, &key, &fake.base_url()), &clock);
    Setup {
        ca,
        dir,
        clock,
        fake,
        p,
    }
}

fn to(token: &str) -> parley::push::Target {
    target(ProviderKind::Apns, Some(token), None)
}

#[tokio::test]
async fn sends_the_documented_request_over_one_http2_connection() {
    let s = setup().await;
    let full = note(Kind::Message, Some(("Alice", "hi")));
    assert_eq!(s.p.deliver(&to("0000aa"), &full).await, Outcome::Accepted);
    assert_eq!(
        s.p.deliver(&to("0000bb"), &note(Kind::Message, None)).await,
        Outcome::Accepted
    );
    let clear = note(Kind::Clear, None);
    assert_eq!(s.p.deliver(&to("0000cc"), &clear).await, Outcome::Accepted);
    let many: Vec<_> = (0..10)
        .map(|i| (to(&format!("0000{i:02}")), note(Kind::Message, None)))
        .collect();
    let outcomes = join_all(many.iter().map(|(t, n)| s.p.deliver(t, n))).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Accepted),
        "{outcomes:?}"
    );

    assert_eq!(
        s.fake.server.connections(),
        1,
        "one shared HTTP/2 connection"
    );
    assert_eq!(s.fake.jwts().len(), 1, "one provider token");
    let st = s.fake.state();
    assert!(st.refused.is_empty(), "{:?}", st.refused);
    let h = &st.pushes[0].headers;
    let now = s.clock.unix();
    assert_eq!(h["apns-topic"], TOPIC);
    assert_eq!(
        (h["apns-push-type"].as_str(), h["apns-priority"].as_str()),
        ("alert", "10")
    );
    assert_eq!(h["apns-id"], full.id);
    assert_eq!(h["apns-collapse-id"], CK);
    assert_eq!(h["content-type"], "application/json");
    let exp: u64 = h["apns-expiration"].parse().unwrap();
    assert!(exp.abs_diff(now + 3600) <= 2, "{exp} vs {now}");
    assert!(st.pushes[0].iat.abs_diff(now) <= 2);
    assert_eq!(
        st.pushes[0].body,
        json!({"aps": {"alert": {"title": "Alice", "body": "hi"}, "sound": "default",
                       "thread-id": "c_1", "badge": 3},
               "type": "message", "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2})
    );
    assert_eq!(
        st.pushes[1].body,
        json!({"aps": {"alert": {"body": "New message"}, "mutable-content": 1,
                       "sound": "default", "thread-id": "c_1", "badge": 3},
               "type": "message", "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2}),
        "no preview: an alert the notification service extension replaces"
    );
    let h = &st.pushes[2].headers;
    assert_eq!(
        (h["apns-push-type"].as_str(), h["apns-priority"].as_str()),
        ("background", "5")
    );
    assert_eq!(
        st.pushes[2].body,
        json!({"aps": {"content-available": 1}, "type": "clear", "conversation_id": "c_1",
               "seq": 42, "badge": 3, "unread": 2})
    );
}

#[tokio::test]
async fn a_muted_message_is_a_badge_only_update_that_says_so() {
    let s = setup().await;
    // What the bridge builds for a muted conversation: no preview, and the flag.
    let mut n = note(Kind::Message, None);
    n.muted = true;
    assert_eq!(s.p.deliver(&to("0000dd"), &n).await, Outcome::Accepted);
    assert_eq!(
        s.fake.state().pushes[0].body,
        json!({"aps": {"badge": 3}, "type": "message", "conversation_id": "c_1",
               "seq": 42, "badge": 3, "unread": 2, "muted": true})
    );
}

#[tokio::test]
async fn the_provider_token_is_kept_for_50_minutes_then_renewed() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    let start = s.clock.unix();
    for (advance, jwts) in [
        (0, 1),
        (19 * 60, 1),
        (30 * 60, 1),
        (2 * 60, 2),
        (19 * 60, 2),
    ] {
        s.clock.advance(advance);
        assert_eq!(s.p.deliver(&to("0000aa"), &n).await, Outcome::Accepted);
        assert_eq!(
            s.fake.jwts().len(),
            jwts,
            "after {} min",
            (s.clock.unix() - start) / 60
        );
    }
    let st = s.fake.state();
    let iats: Vec<u64> = st.pushes.iter().map(|p| (p.iat - start) / 60).collect();
    assert_eq!(iats, [0, 0, 0, 51, 51], "signed at 0 and at 51 min");
}

#[tokio::test]
async fn expired_provider_token_is_resigned_once_if_old_enough() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    assert_eq!(s.p.deliver(&to("0000aa"), &n).await, Outcome::Accepted);
    s.clock.advance(25 * 60);
    assert_eq!(s.p.deliver(&to("f0f0aa"), &n).await, Outcome::Accepted);
    let jwts = s.fake.jwts();
    assert_eq!(jwts.len(), 2, "re-signed");
    {
        let st = s.fake.state();
        let f: Vec<&str> = st
            .pushes
            .iter()
            .filter(|p| p.token == "f0f0aa")
            .map(|p| p.jwt.as_str())
            .collect();
        assert_eq!(
            f,
            [jwts[0].as_str(), jwts[1].as_str()],
            "the retry carries the new token"
        );
    }
    // A token younger than 20 minutes is not re-signed (Apple would answer
    // TooManyProviderTokenUpdates): the clock must be wrong.
    let o = s.p.deliver(&to("f0f0bb"), &n).await;
    assert_eq!(class(&o), "misconfigured", "{o:?}");
    assert_eq!(s.fake.jwts().len(), 2);
}

#[tokio::test]
async fn every_answer_maps_to_its_outcome() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    for (token, want, after) in [
        ("bad0aa", "invalid", None),
        ("bad1aa", "invalid", None),
        ("e0e0aa", "invalid", None),
        ("bad2aa", "misconfigured", None),
        ("bad3aa", "rejected", None),
        ("f1f1aa", "misconfigured", None),
        ("a1a1aa", "misconfigured", None),
        ("c0deaa", "transient", Some(9)),
        ("5000aa", "transient", None),
        ("5030aa", "transient", None),
        ("1d1eaa", "transient", None),
    ] {
        let o = s.p.deliver(&to(token), &n).await;
        assert_eq!(class(&o), want, "{token}: {o:?}");
        assert_eq!(
            retry_after(&o),
            after.map(Duration::from_secs),
            "{token}: {o:?}"
        );
    }
    let o = s.p.deliver(&to("deadaa"), &n).await;
    assert!(
        matches!(
            o,
            Outcome::InvalidTarget {
                since_ms: Some(UNREGISTERED_AT),
                ..
            }
        ),
        "{o:?}"
    );
    let o = s.p.deliver(&to("e0e0aa"), &n).await;
    assert!(
        matches!(o, Outcome::InvalidTarget { since_ms: None, .. }),
        "{o:?}"
    );
    // Not a hex token: never sent.
    let before = s.fake.state().pushes.len();
    for bad in [Some("not-hex/../x"), Some(""), None] {
        let o =
            s.p.deliver(&target(ProviderKind::Apns, bad, None), &n)
                .await;
        assert_eq!(class(&o), "invalid", "{bad:?}");
    }
    assert_eq!(s.fake.state().pushes.len(), before);
}

#[tokio::test]
async fn a_new_connection_after_goaway() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    for token in ["60a0aa", "0000aa", "60a0bb", "0000bb"] {
        assert_eq!(
            s.p.deliver(&to(token), &n).await,
            Outcome::Accepted,
            "{token}"
        );
        // Let a GOAWAY-ed connection finish closing (until then the server may still take
        // new streams: its graceful shutdown waits a round trip before its last GOAWAY).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.fake.server.connections(), 3);
    let conns: Vec<usize> = s.fake.state().pushes.iter().map(|p| p.conn).collect();
    assert_eq!(conns, [0, 1, 1, 2]);
    // Requests racing a GOAWAY are resent on the next connection.
    let many: Vec<_> = (0..12)
        .map(|i| {
            (
                to(&format!(
                    "{}{i:02}",
                    if i % 4 == 0 { "60a0" } else { "0000" }
                )),
                n.clone(),
            )
        })
        .collect();
    let outcomes = join_all(many.iter().map(|(t, n)| s.p.deliver(t, n))).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Accepted),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn the_payload_is_cut_to_4096_bytes() {
    let s = setup().await;
    let n = note(Kind::Message, huge_preview());
    assert_eq!(s.p.deliver(&to("0000aa"), &n).await, Outcome::Accepted);
    let st = s.fake.state();
    assert!(
        st.pushes[0].body_len <= 4096 && st.pushes[0].body_len > 4090,
        "{}",
        st.pushes[0].body_len
    );
    let body = st.pushes[0].body["aps"]["alert"]["body"].as_str().unwrap();
    assert!(body.ends_with('…'), "{body}");
}

#[tokio::test]
async fn timeouts_refusals_and_servers_without_h2_are_transient() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    let t = Instant::now();
    let o = s.p.deliver(&to("5105aa"), &n).await;
    assert_eq!(class(&o), "transient", "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let key = s.dir.path().join("AuthKey.p8");
    let refused = provider(
        &toml(&s.ca, &key, &format!("https://127.0.0.1:{}", closed_port())),
        &s.clock,
    );
    let o = refused.deliver(&to("0000aa"), &n).await;
    assert_eq!(class(&o), "transient", "{o:?}");
    // An HTTP/1.1-only server: the TLS handshake finds no common protocol.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let h1 = serve(Some(s.ca.acceptor(&[b"http/1.1"])), move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        async { Reply::new(200) }
    })
    .await;
    let p = provider(&toml(&s.ca, &key, &h1.url("")), &s.clock);
    let o = p.deliver(&to("0000aa"), &n).await;
    assert_eq!(class(&o), "transient", "{o:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// An HTTP/2 server (the h2 crate, which can reset a stream with any reason) that refuses
/// the first request of its first connection with RST_STREAM REFUSED_STREAM and answers 200
/// to every other; it logs (connection, refused) per request.
async fn refusing_server(ca: &TestCa) -> (String, Arc<Mutex<Vec<(usize, bool)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let acceptor = ca.acceptor(&[b"h2"]);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut h2 = h2::server::handshake(tls).await.unwrap();
            let l = l.clone();
            tokio::spawn(async move {
                while let Some(Ok((_req, mut respond))) = h2.accept().await {
                    let refuse = conn == 0 && l.lock().unwrap().is_empty();
                    l.lock().unwrap().push((conn, refuse));
                    if refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        let ok = hyper::Response::builder().status(200).body(()).unwrap();
                        respond.send_response(ok, true).unwrap();
                    }
                }
            });
        }
    });
    (url, log)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_on_a_new_connection() {
    let s = setup().await;
    let (url, log) = refusing_server(&s.ca).await;
    let key = s.dir.path().join("AuthKey.p8");
    let p = provider(&toml(&s.ca, &key, &url), &s.clock);
    assert_eq!(
        p.deliver(&to("0000aa"), &note(Kind::Message, None)).await,
        Outcome::Accepted
    );
    assert_eq!(*log.lock().unwrap(), [(0, true), (1, false)]);
}
