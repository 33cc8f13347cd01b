//! Webhooks (Standard Webhooks signatures) against `fakes::webhook`.

use super::{class, closed_port, huge_preview, note, provider, push_toml, retry_after, target};
use crate::push::fakes::webhook::FakeReceiver;
use crate::push::fakes::{TestCa, TestClock};
use parley::push::{Kind, Outcome, ProviderKind, Target};
use serde_json::json;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OTHER: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn toml(ca: &TestCa, secret: &str, extra: &str) -> String {
    format!(
        "{}allow_private_endpoints = true\n{extra}[push.webhook]\nsecret = \"{secret}\"\n",
        push_toml(ca)
    )
}

fn to(url: &str) -> Target {
    target(ProviderKind::Webhook, None, Some(url))
}

#[tokio::test]
async fn the_signature_verifies_and_the_body_is_as_documented() {
    let (ca, clock) = (TestCa::new(), TestClock::default());
    let fake = FakeReceiver::start(&ca, &clock, SECRET).await;
    let p = provider(&toml(&ca, SECRET, ""), &clock);
    let full = note(Kind::Message, Some(("Alice", "hi")));
    assert_eq!(
        p.deliver(&to(&fake.url("ok")), &full).await,
        Outcome::Accepted
    );
    let clear = note(Kind::Clear, None);
    assert_eq!(
        p.deliver(&to(&fake.url("ok")), &clear).await,
        Outcome::Accepted
    );
    let st = fake.state();
    assert!(st.refused.is_empty(), "{:?}", st.refused);
    assert_eq!(
        st.hooks[0].body,
        json!({"type": "message", "id": full.id, "user_id": "u_1", "device_id": "d_1",
               "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2,
               "title": "Alice", "body": "hi"})
    );
    assert_eq!(
        st.hooks[1].body,
        json!({"type": "clear", "id": clear.id, "user_id": "u_1", "device_id": "d_1",
               "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2})
    );
    let h = &st.hooks[0].headers;
    assert_eq!(h["webhook-id"], full.id);
    assert_eq!(h["content-type"], "application/json");
    assert!(
        h["webhook-timestamp"]
            .parse::<u64>()
            .unwrap()
            .abs_diff(clock.unix())
            <= 2
    );
    assert!(h["webhook-signature"].starts_with("v1,"));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_rotation_signs_with_both() {
    let (ca, clock) = (TestCa::new(), TestClock::default());
    let fake = FakeReceiver::start(&ca, &clock, SECRET).await;
    let n = note(Kind::Message, None);
    let wrong = provider(&toml(&ca, OTHER, ""), &clock);
    let o = wrong.deliver(&to(&fake.url("ok")), &n).await;
    assert_eq!(class(&o), "misconfigured", "{o:?}");
    assert_eq!(
        fake.state().refused,
        [(401, "signature does not verify".to_string())]
    );
    let rotating = provider(&toml(&ca, &format!("{OTHER} {SECRET}"), ""), &clock);
    assert_eq!(
        rotating.deliver(&to(&fake.url("ok")), &n).await,
        Outcome::Accepted
    );
    assert_eq!(
        fake.state().hooks[0].headers["webhook-signature"]
            .split(' ')
            .count(),
        2
    );
}

#[tokio::test]
async fn every_answer_maps_to_its_outcome() {
    let (ca, clock) = (TestCa::new(), TestClock::default());
    let fake = FakeReceiver::start(&ca, &clock, SECRET).await;
    let p = provider(&toml(&ca, SECRET, ""), &clock);
    let n = note(Kind::Message, None);
    for (cue, want, after) in [
        ("gone", "invalid", None),
        ("rate", "transient", Some(13)),
        ("unavailable", "transient", None),
        ("badgateway", "transient", None),
        ("redirect", "rejected", None),
        ("notfound", "rejected", None),
    ] {
        let o = p.deliver(&to(&fake.url(cue)), &n).await;
        assert_eq!(class(&o), want, "{cue}: {o:?}");
        assert_eq!(
            retry_after(&o),
            after.map(Duration::from_secs),
            "{cue}: {o:?}"
        );
    }
    let cues: Vec<String> = fake.state().hooks.iter().map(|h| h.cue.clone()).collect();
    assert_eq!(
        cues,
        [
            "gone",
            "rate",
            "unavailable",
            "badgateway",
            "redirect",
            "notfound"
        ],
        "the redirect was not followed"
    );
    let t = Instant::now();
    let o = p.deliver(&to(&fake.url("slow")), &n).await;
    assert_eq!(class(&o), "transient", "{o:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let o = p
        .deliver(
            &to(&format!("https://127.0.0.1:{}/hook/ok", closed_port())),
            &n,
        )
        .await;
    assert_eq!(class(&o), "transient", "{o:?}");
    for bad in [None, Some("ftp://127.0.0.1/x"), Some("https:///nohost")] {
        let t = target(ProviderKind::Webhook, None, bad);
        assert_eq!(class(&p.deliver(&t, &n).await), "invalid", "{bad:?}");
    }
}

#[tokio::test]
async fn plain_http_only_when_allowed_and_private_addresses_only_when_allowed() {
    let (ca, clock) = (TestCa::new(), TestClock::default());
    let plain = FakeReceiver::start_plain(&clock, SECRET).await;
    let n = note(Kind::Message, None);
    let https_only = provider(&toml(&ca, SECRET, ""), &clock);
    let o = https_only.deliver(&to(&plain.url("ok")), &n).await;
    assert_eq!(class(&o), "invalid", "{o:?}");
    assert_eq!(plain.server.connections(), 0);
    let http = provider(
        &toml(&ca, SECRET, "").replace("[push.webhook]\n", "[push.webhook]\nallow_http = true\n"),
        &clock,
    );
    assert_eq!(
        http.deliver(&to(&plain.url("ok")), &n).await,
        Outcome::Accepted
    );
    let public_only = provider(
        &toml(&ca, SECRET, "").replace(
            "allow_private_endpoints = true",
            "allow_private_endpoints = false",
        ),
        &clock,
    );
    let fake = FakeReceiver::start(&ca, &clock, SECRET).await;
    let o = public_only.deliver(&to(&fake.url("ok")), &n).await;
    assert_eq!(class(&o), "invalid", "{o:?}");
    assert_eq!(fake.server.connections(), 0);
}

#[tokio::test]
async fn the_body_is_cut_to_4096_bytes() {
    let (ca, clock) = (TestCa::new(), TestClock::default());
    let fake = FakeReceiver::start(&ca, &clock, SECRET).await;
    let p = provider(&toml(&ca, SECRET, ""), &clock);
    assert_eq!(
        p.deliver(&to(&fake.url("ok")), &note(Kind::Message, huge_preview()))
            .await,
        Outcome::Accepted
    );
    let st = fake.state();
    assert!(
        st.hooks[0].body_len <= 4096 && st.hooks[0].body_len > 4090,
        "{}",
        st.hooks[0].body_len
    );
    assert!(st.hooks[0].body["body"].as_str().unwrap().ends_with('…'));
}
