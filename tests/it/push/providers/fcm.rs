//! FCM HTTP v1 against `fakes::fcm`.

use super::{class, closed_port, huge_preview, note, provider, push_toml, retry_after, target, CK};
use crate::push::fakes::fcm::{FakeFcm, TokenMode, CLIENT_EMAIL, SCOPE};
use crate::push::fakes::{TestCa, TestClock};
use futures_util::future::join_all;
use parley::push::{Kind, Outcome, Provider, ProviderKind};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/push/test-only-service-account.json"
);

struct Setup {
    ca: TestCa,
    clock: TestClock,
    fake: FakeFcm,
    p: Arc<dyn Provider>,
}

fn toml(ca: &TestCa, base_url: &str, token_url: &str) -> String {
    format!(
        "{}[push.fcm]\ncredentials_file = \"{SA}\"\nbase_url = \"{base_url}\"\ntoken_url = \"{token_url}\"\n",
        push_toml(ca)
    )
}

async fn setup() -> Setup {
    let ca = TestCa::new();
    let clock = TestClock::default();
    let fake = FakeFcm::start(&ca, &clock).await;
    let p = provider(&toml(&ca, &fake.base_url(), &fake.token_url()), &clock);
    Setup { ca, clock, fake, p }
}

fn to(token: &str) -> parley::push::Target {
    target(ProviderKind::Fcm, Some(token), None)
}

#[tokio::test]
async fn sends_the_documented_message_with_one_cached_access_token() {
    let s = setup().await;
    let full = note(Kind::Message, Some(("Alice", "hi")));
    assert_eq!(s.p.deliver(&to("ok-full"), &full).await, Outcome::Accepted);
    assert_eq!(
        s.p.deliver(&to("ok-idonly"), &note(Kind::Message, None))
            .await,
        Outcome::Accepted
    );
    assert_eq!(
        s.p.deliver(&to("ok-clear"), &note(Kind::Clear, None)).await,
        Outcome::Accepted
    );
    let many: Vec<_> = (0..8)
        .map(|i| (to(&format!("ok-{i}")), note(Kind::Message, None)))
        .collect();
    let outcomes = join_all(many.iter().map(|(t, n)| s.p.deliver(t, n))).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Accepted),
        "{outcomes:?}"
    );

    let st = s.fake.state();
    assert_eq!(st.assertions.len(), 1, "one token exchange for 11 sends");
    assert!(st.refused.is_empty(), "{:?}", st.refused);
    let c = &st.assertions[0];
    assert_eq!(
        (c["iss"].as_str(), c["scope"].as_str()),
        (Some(CLIENT_EMAIL), Some(SCOPE))
    );
    assert_eq!(c["aud"], s.fake.token_url());
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(st.sends.len(), 11);
    assert_eq!(st.sends[0].token, "ok-full");
    assert!(st
        .sends
        .iter()
        .all(|x| x.authorization == "Bearer ya29.test-0"));
    let data = json!({"type": "message", "conversation_id": "c_1", "seq": "42", "badge": "3", "unread": "2"});
    assert_eq!(
        st.sends[0].body,
        json!({"message": {"token": "ok-full", "data": data,
            "notification": {"title": "Alice", "body": "hi"},
            "android": {"collapse_key": CK, "priority": "high", "ttl": "3600s",
                        "notification": {"tag": CK}}}})
    );
    assert_eq!(
        st.sends[1].body,
        json!({"message": {"token": "ok-idonly", "data": data,
            "android": {"collapse_key": CK, "priority": "high", "ttl": "3600s"}}}),
        "no preview: data-only"
    );
    let mut clear = data.clone();
    clear["type"] = json!("clear");
    assert_eq!(
        st.sends[2].body,
        json!({"message": {"token": "ok-clear", "data": clear,
            "android": {"collapse_key": CK, "priority": "normal", "ttl": "3600s"}}})
    );
}

#[tokio::test]
async fn the_access_token_is_renewed_five_minutes_before_it_expires() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    assert_eq!(s.p.deliver(&to("ok-1"), &n).await, Outcome::Accepted);
    s.clock.advance(3299);
    assert_eq!(s.p.deliver(&to("ok-2"), &n).await, Outcome::Accepted);
    assert_eq!(
        s.fake.state().assertions.len(),
        1,
        "still valid for 5 min: reused"
    );
    s.clock.advance(2);
    assert_eq!(s.p.deliver(&to("ok-3"), &n).await, Outcome::Accepted);
    let st = s.fake.state();
    assert_eq!(st.assertions.len(), 2, "renewed before expiry");
    let auths: Vec<&str> = st.sends.iter().map(|x| x.authorization.as_str()).collect();
    assert_eq!(
        auths,
        [
            "Bearer ya29.test-0",
            "Bearer ya29.test-0",
            "Bearer ya29.test-1"
        ]
    );
}

#[tokio::test]
async fn every_answer_maps_to_its_outcome() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    for (token, want, after) in [
        ("dead-1", "invalid", None),
        ("bad-1", "invalid", None),
        ("mismatch-1", "invalid", None),
        ("invalid-1", "rejected", None),
        ("quota-1", "transient", Some(120)),
        ("unavailable-1", "transient", Some(7)),
        ("internal-1", "transient", None),
        ("thirdparty-1", "misconfigured", None),
        ("denied-1", "misconfigured", None),
        ("unauth-1", "misconfigured", None),
    ] {
        let o = s.p.deliver(&to(token), &n).await;
        assert_eq!(class(&o), want, "{token}: {o:?}");
        assert_eq!(
            retry_after(&o),
            after.map(Duration::from_secs),
            "{token}: {o:?}"
        );
    }
    // Retry-After as an HTTP-date (30 s ahead).
    let o = s.p.deliver(&to("date-1"), &n).await;
    let d = retry_after(&o).expect("a retry_after");
    assert!(
        d > Duration::from_secs(25) && d <= Duration::from_secs(30),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_refused_access_token_is_renewed_once() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    assert_eq!(
        s.p.deliver(&to("unauthonce-1"), &n).await,
        Outcome::Accepted
    );
    {
        let st = s.fake.state();
        assert_eq!(st.assertions.len(), 2);
        let auths: Vec<&str> = st.sends.iter().map(|x| x.authorization.as_str()).collect();
        assert_eq!(auths, ["Bearer ya29.test-0", "Bearer ya29.test-1"]);
    }
    // Refused again with the new token: the credentials are wrong, not the token's age.
    let o = s.p.deliver(&to("unauth-1"), &n).await;
    assert_eq!(class(&o), "misconfigured", "{o:?}");
    let st = s.fake.state();
    assert_eq!(
        (st.assertions.len(), st.sends.len()),
        (3, 4),
        "one renewal, one resend"
    );
}

#[tokio::test]
async fn token_endpoint_failures() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    s.fake.state().token_mode = TokenMode::InvalidGrant;
    let o = s.p.deliver(&to("ok-1"), &n).await;
    assert_eq!(class(&o), "misconfigured", "{o:?}");
    s.fake.state().token_mode = TokenMode::Unavailable;
    let o = s.p.deliver(&to("ok-1"), &n).await;
    assert_eq!(
        (class(&o), retry_after(&o)),
        ("transient", Some(Duration::from_secs(3))),
        "{o:?}"
    );
    assert!(
        s.fake.state().sends.is_empty(),
        "nothing sent without a token"
    );
    s.fake.state().token_mode = TokenMode::Ok;
    assert_eq!(s.p.deliver(&to("ok-1"), &n).await, Outcome::Accepted);
}

#[tokio::test]
async fn the_payload_is_cut_to_4096_bytes() {
    let s = setup().await;
    let n = note(Kind::Message, huge_preview());
    assert_eq!(s.p.deliver(&to("ok-big"), &n).await, Outcome::Accepted);
    let st = s.fake.state();
    let sent = &st.sends[0];
    assert!(
        sent.body_len <= 4096 && sent.body_len > 4090,
        "{}",
        sent.body_len
    );
    let body = sent.body["message"]["notification"]["body"]
        .as_str()
        .unwrap();
    assert!(body.ends_with('…') && body.starts_with("é\"x"), "{body}");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    let t = Instant::now();
    let o = s.p.deliver(&to("slow-1"), &n).await;
    assert_eq!(class(&o), "transient", "{o:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the 1 s timeout held: {:?}",
        t.elapsed()
    );
    let dead = format!("https://127.0.0.1:{}", closed_port());
    let p = provider(&toml(&s.ca, &dead, &format!("{dead}/token")), &s.clock);
    let o = p.deliver(&to("ok-1"), &n).await;
    assert_eq!(class(&o), "transient", "{o:?}");
    assert!(format!("{o:?}").contains("connect"), "{o:?}");
}
