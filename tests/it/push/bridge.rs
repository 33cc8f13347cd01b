//! End to end: a real `parley serve` with its in-process bridge (or real `parley push`
//! processes, in `faults`) configured against the providers' fakes, driven through real
//! WebSockets and HTTP: who gets a push, collapse, badges, clears, mute, dead targets.
//!
//! Every wait is for a condition; a "nothing was sent" is asserted once the outbox is empty
//! (read from the node's SQLite file), so that nothing could still be on its way.

mod faults;
mod setup;

use crate::common::{eventually, now_ms, Dev, TestServer};
use serde_json::{json, Value};
use setup::*;

/// The jobs in the outbox: (device, conversation, kind, seq).
pub fn outbox(srv: &TestServer) -> Vec<(String, String, String, u64)> {
    let c = rusqlite::Connection::open_with_flags(
        srv.dir.join("parley.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = c
        .prepare("SELECT device_id, conversation_id, kind, seq FROM push_jobs")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Waits until every job has been completed.
pub async fn drained(srv: &TestServer) {
    let empty = eventually(PUSH_WAIT, || async { outbox(srv).is_empty() }).await;
    assert!(empty, "jobs left in the outbox: {:?}", outbox(srv));
}

fn fields(h: &Value) -> (&str, u64, u64, u64) {
    (
        h["type"].as_str().unwrap_or(""),
        h["seq"].as_u64().unwrap_or(0),
        h["badge"].as_u64().unwrap_or(0),
        h["unread"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_offline_device_gets_a_push() {
    let f = Fakes::start().await;
    let srv = node(&f.toml(true, &[("confirm_delay_ms", "2000")]));
    let a = srv.user("alice").await;
    let online = srv.user("bob").await;
    let offline = srv.login("bob").await;
    let conv = srv.direct(&a, &online).await;
    register_hook(&srv, &f, &online, "ok", "full").await;
    register_hook(&srv, &f, &offline, "ok", "full").await;
    let mut wa = srv.ws(&a).await;
    let mut wb = srv.ws(&online).await;
    wa.send_msg(&conv, "m1", "hello bob").await;
    confirm(&mut wb, &conv, 1).await;
    let got = f.wait_hooks(1, |h| to(h, &offline, &conv)).await;
    assert_eq!(
        fields(&got[0].body),
        ("message", 1, 1, 1),
        "{:?}",
        got[0].body
    );
    assert_eq!(
        (got[0].body["title"].as_str(), got[0].body["body"].as_str()),
        (Some("alice"), Some("hello bob"))
    );
    drained(&srv).await;
    // The connected device confirmed within the delay: its job ended without a push.
    assert!(f.hooks_where(|h| to(h, &online, &conv)).is_empty());
    assert_eq!(f.hook.hooks().len(), 1, "the sender's side gets nothing");
    assert!(metric(&srv.addr, "parley_push_skipped_total", "").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_per_device_and_conversation_with_a_count_and_the_total_badge() {
    let f = Fakes::start().await;
    let srv = node(&f.toml(true, &[("confirm_delay_ms", "2000")]));
    let (a, c) = (srv.user("alice").await, srv.user("carol").await);
    let b = srv.user("bob").await;
    let (ab, cb) = (srv.direct(&a, &b).await, srv.direct(&c, &b).await);
    register_hook(&srv, &f, &b, "ok", "id_only").await;
    let (mut wa, mut wc) = (srv.ws(&a).await, srv.ws(&c).await);
    for i in 1..=3 {
        wa.send_msg(&ab, &format!("a{i}"), "hi").await;
    }
    for i in 1..=2 {
        wc.send_msg(&cb, &format!("c{i}"), "hey").await;
    }
    f.wait_hooks(1, |h| to(h, &b, &ab)).await;
    f.wait_hooks(1, |h| to(h, &b, &cb)).await;
    drained(&srv).await;
    // Collapsed: one notification per conversation, for its newest message, with its count;
    // the badge is everything bob has unread.
    let first = f.hooks_where(|h| to(h, &b, &ab));
    let other = f.hooks_where(|h| to(h, &b, &cb));
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(other.len(), 1, "{other:#?}");
    assert_eq!(fields(&first[0].body), ("message", 3, 5, 3));
    assert_eq!(fields(&other[0].body), ("message", 2, 5, 2));
    assert!(
        first[0].body.get("body").is_none(),
        "id_only carries no text"
    );
    // A later message is a new notification (a new id), with the counts grown.
    wa.send_msg(&ab, "a4", "more").await;
    let both = f.wait_hooks(2, |h| to(h, &b, &ab)).await;
    assert_eq!(fields(&both[1].body), ("message", 4, 6, 4));
    assert_ne!(both[0].headers["webhook-id"], both[1].headers["webhook-id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_another_device_clears_the_notification() {
    let f = Fakes::start().await;
    let srv = node(&f.toml(true, &[]));
    let a = srv.user("alice").await;
    let phone = srv.user("bob").await;
    let (tablet, laptop) = (srv.login("bob").await, srv.login("bob").await);
    let conv = srv.direct(&a, &phone).await;
    register_hook(&srv, &f, &phone, "ok", "id_only").await;
    register_hook(&srv, &f, &tablet, "ok", "id_only").await;
    let mut wa = srv.ws(&a).await;
    let (mut wt, mut wl) = (srv.ws(&tablet).await, srv.ws(&laptop).await);
    wa.send_msg(&conv, "m1", "one").await;
    wa.send_msg(&conv, "m2", "two").await;
    confirm(&mut wt, &conv, 1).await;
    confirm(&mut wt, &conv, 2).await;
    let got = f.wait_hooks(1, |h| to(h, &phone, &conv)).await;
    assert_eq!(fields(&got[0].body).0, "message");
    drained(&srv).await;
    // Bob reads on the laptop: the phone's notification is cleared, the badge goes to 0.
    wl.next_where(|v| v["type"] == "message" && v["seq"] == 2)
        .await;
    wl.send(json!({"type": "read", "conversation_id": conv, "seq": 2}))
        .await;
    let clear = f
        .wait_hooks(1, |h| to(h, &phone, &conv) && h.body["type"] == "clear")
        .await;
    assert_eq!(fields(&clear[0].body), ("clear", 2, 0, 0));
    drained(&srv).await;
    // The tablet never showed a notification: it gets no clear.
    assert!(f.hooks_where(|h| to(h, &tablet, &conv)).is_empty());
    assert_eq!(f.hooks_where(|h| to(h, &phone, &conv)).len(), 2);
}

async fn mute(srv: &TestServer, dev: &Dev, conv: &str, until: i64) {
    let path = format!("/v1/conversations/{conv}/settings");
    let body = json!({ "muted_until": until });
    let (s, v) = srv.http("PUT", &path, Some(&dev.token), Some(body)).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_conversation_updates_the_badge_without_an_alert() {
    let f = Fakes::start().await;
    let srv = node(&f.toml(true, &[]));
    let (a, c) = (srv.user("alice").await, srv.user("carol").await);
    let b = srv.user("bob").await;
    let iphone = srv.login("bob").await;
    let (ab, cb) = (srv.direct(&a, &b).await, srv.direct(&c, &b).await);
    register_hook(&srv, &f, &b, "ok", "full").await;
    let token = format!("0000{}", "ab".repeat(30));
    let apns = json!({"provider": "apns", "token": token, "payload": "id_only"});
    register(&srv, &iphone, apns).await;
    mute(&srv, &b, &ab, now_ms() + 3_600_000).await;
    let (mut wa, mut wc) = (srv.ws(&a).await, srv.ws(&c).await);
    wa.send_msg(&ab, "a1", "psst").await;
    let muted = f.wait_hooks(1, |h| to(h, &b, &ab)).await;
    assert_eq!(fields(&muted[0].body), ("message", 1, 1, 1));
    assert!(muted[0].body.get("body").is_none(), "{:?}", muted[0].body);
    assert_eq!(muted[0].body["muted"], true, "the app is told not to alert");
    wc.send_msg(&cb, "c1", "hello").await;
    let loud = f.wait_hooks(1, |h| to(h, &b, &cb)).await;
    assert_eq!(fields(&loud[0].body), ("message", 1, 2, 1));
    assert_eq!(loud[0].body["body"], "hello");
    assert!(loud[0].body.get("muted").is_none());
    drained(&srv).await;
    // APNs (id_only): a badge-only push for the muted conversation; for the other an alert
    // that the app's notification service extension replaces with the message.
    let aps: Vec<(String, Value)> = f
        .apns
        .state()
        .pushes
        .iter()
        .map(|p| {
            (
                p.body["conversation_id"].as_str().unwrap().to_string(),
                p.body["aps"].clone(),
            )
        })
        .collect();
    assert_eq!(aps.len(), 2, "{aps:?}");
    let of = |conv: &str| aps.iter().find(|(c, _)| c == conv).unwrap().1.clone();
    assert_eq!(of(&ab), json!({"badge": 1}));
    assert_eq!(of(&cb)["alert"], json!({"body": "New message"}));
    assert_eq!(
        (&of(&cb)["mutable-content"], &of(&cb)["badge"]),
        (&json!(1), &json!(2))
    );
    // Unmuted: alerts again.
    mute(&srv, &b, &ab, 0).await;
    wa.send_msg(&ab, "a2", "now loud").await;
    let again = f.wait_hooks(2, |h| to(h, &b, &ab)).await;
    assert_eq!(fields(&again[1].body), ("message", 2, 3, 2));
    assert_eq!(again[1].body["body"], "now loud");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_disabled_and_the_users_devices_are_told() {
    let f = Fakes::start().await;
    let srv = node(&f.toml(true, &[]));
    let a = srv.user("alice").await;
    let watcher = srv.user("bob").await;
    let mut dead = Vec::new();
    for _ in 0..4 {
        dead.push(srv.login("bob").await);
    }
    let conv = srv.direct(&a, &watcher).await;
    let sub = f.webpush.subscribe("gone");
    let targets = [
        (
            "apns",
            json!({"provider": "apns", "token": format!("e0e0{}", "cd".repeat(30))}),
        ),
        ("fcm", json!({"provider": "fcm", "token": "dead-1"})),
        (
            "webpush",
            json!({"provider": "webpush", "endpoint": sub.endpoint,
                   "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}),
        ),
        (
            "webhook",
            json!({"provider": "webhook", "endpoint": f.hook.url("gone")}),
        ),
    ];
    for (d, (_, t)) in dead.iter().zip(&targets) {
        register(&srv, d, t.clone()).await;
    }
    let mut ww = srv.ws(&watcher).await;
    let mut wa = srv.ws(&a).await;
    wa.send_msg(&conv, "m1", "anyone?").await;
    confirm(&mut ww, &conv, 1).await;
    // The connected device is told about each dead target.
    for _ in 0..4 {
        let e = ww.next_type("push_target").await;
        let i = dead
            .iter()
            .position(|d| e["device_id"] == d.device_id.as_str());
        let i = i.unwrap_or_else(|| panic!("push_target for another device: {e}"));
        assert_eq!(e["provider"], targets[i].0, "{e}");
        assert_eq!(e["state"], "disabled", "{e}");
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    }
    drained(&srv).await;
    // The listing and each device's own `ready` show the state.
    let (s, v) = srv.get("/v1/devices", &watcher.token).await;
    assert_eq!(s, 200);
    for (d, (provider, _)) in dead.iter().zip(&targets) {
        let row = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["device_id"] == d.device_id.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {v}", d.device_id));
        assert_eq!(row["push"]["state"], "disabled", "{row}");
        assert_eq!(row["push"]["provider"], *provider, "{row}");
    }
    let ready = srv.ws(&dead[1]).await.ready;
    assert_eq!(ready["push"]["state"], "disabled", "{ready}");
    // Registering again enables it; the other dead targets get nothing more.
    register_hook(&srv, &f, &dead[3], "ok", "id_only").await;
    wa.send_msg(&conv, "m2", "still there?").await;
    f.wait_hooks(1, |h| to(h, &dead[3], &conv) && h.cue == "ok")
        .await;
    drained(&srv).await;
    assert_eq!(f.apns.state().pushes.len(), 1);
    assert_eq!(f.fcm.state().sends.len(), 1);
    assert_eq!(f.webpush.state().pushes.len(), 1);
    assert_eq!(f.hooks_where(|h| h.cue == "gone").len(), 1);
    assert_eq!(
        metric(&srv.addr, "parley_push_targets_disabled_total", "").await,
        4.0
    );
}
