//! v1.1 group receipt summaries (issue 12, item 4): the receipts endpoint (counts, a page of
//! users with times, only for the sender) and the coalesced live `receipt_summary` of a large
//! group. Runs on 1 node and, with the contract suite, on 3.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn path(conv: &str, seq: u64, query: &str) -> String {
    format!("/v1/conversations/{conv}/messages/{seq}/receipts{query}")
}

fn user_ids(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipts_endpoint_counts_pages_and_times_what_the_sender_asks() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let d = s.user("dave").await;
    let e = s.user("erin").await;
    let conv = s.group(&a, &[&b, &c, &d, &e]).await;
    let mut wa = s.ws(&a).await;
    let before = now_ms();
    wa.send_msg(&conv, "m1", "one").await;
    wa.send_msg(&conv, "m2", "two").await;
    // bob received both, carol read 1, dave read both, erin did nothing.
    let mut sockets = Vec::new();
    for (dev, kind, seq) in [(&b, "received", 2), (&c, "read", 1), (&d, "read", 2)] {
        let mut w = s.ws(dev).await;
        w.send(json!({"type": kind, "conversation_id": conv, "seq": seq}))
            .await;
        sockets.push(w);
    }
    // A group this small keeps the per-member receipts.
    let r = wa
        .next_where(|v| {
            v["type"] == "receipt" && v["user_id"] == d.user_id.as_str() && v["kind"] == "read"
        })
        .await;
    assert_eq!(r["seq"], 2);
    let full = |v: &Value| {
        v["delivered"] == 3
            && v["read"] == 2
            && v["users"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["at"].is_i64())
    };
    let mut page = Value::Null;
    for _ in 0..200 {
        let (st, v) = s.get(&path(&conv, 1, "?kind=delivered"), &a.token).await;
        page = v;
        if st == 200 && full(&page) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(full(&page), "the counts never settled: {page}");
    assert_eq!(
        (
            &page["conversation_id"],
            &page["seq"],
            &page["recipients"],
            &page["more"]
        ),
        (&json!(conv), &json!(1), &json!(4), &json!(false))
    );
    let want = sorted(vec![
        b.user_id.clone(),
        c.user_id.clone(),
        d.user_id.clone(),
    ]);
    assert_eq!(user_ids(&page), want, "delivered: by user id");
    for u in page["users"].as_array().unwrap() {
        let at = u["at"].as_i64().unwrap();
        assert!(at >= before && at <= now_ms(), "{u}");
    }
    // Read (the default kind): carol and dave; seq 2: bob and dave received, dave read.
    let (_, r1) = s.get(&path(&conv, 1, ""), &a.token).await;
    assert_eq!(
        user_ids(&r1),
        sorted(vec![c.user_id.clone(), d.user_id.clone()])
    );
    let (_, d2) = s.get(&path(&conv, 2, "?kind=delivered"), &a.token).await;
    assert_eq!(
        (&d2["delivered"], &d2["read"], user_ids(&d2)),
        (
            &json!(2),
            &json!(1),
            sorted(vec![b.user_id.clone(), d.user_id.clone()])
        )
    );
    let (_, r2) = s.get(&path(&conv, 2, "?kind=read"), &a.token).await;
    assert_eq!(user_ids(&r2), vec![d.user_id.clone()]);
    // The time a user passed a seq is when its position first reached it: dave read 1 and 2
    // in one move, carol never reached 2.
    let at_of = |p: &Value, u: &str| {
        p["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["user_id"] == u)
            .map(|x| x["at"].clone())
    };
    assert_eq!(at_of(&r1, &d.user_id), at_of(&r2, &d.user_id));
    assert_eq!(at_of(&r2, &c.user_id), None);

    // Paging: two, then the rest after the last one.
    let (_, p1) = s
        .get(&path(&conv, 1, "?kind=delivered&limit=2"), &a.token)
        .await;
    assert_eq!(
        (user_ids(&p1), &p1["more"]),
        (want[..2].to_vec(), &json!(true))
    );
    let q = format!("?kind=delivered&limit=2&after={}", want[1]);
    let (_, p2) = s.get(&path(&conv, 1, &q), &a.token).await;
    assert_eq!(
        (user_ids(&p2), &p2["more"]),
        (want[2..].to_vec(), &json!(false))
    );
    assert_eq!(p2["delivered"], 3, "the counts do not depend on the page");

    // Only the sender asks; others and strangers are refused; unknown messages are not found.
    assert_err(
        &s.get(&path(&conv, 1, ""), &b.token).await,
        403,
        "forbidden",
    );
    let f = s.user("frank").await;
    assert_err(
        &s.get(&path(&conv, 1, ""), &f.token).await,
        403,
        "forbidden",
    );
    assert_err(
        &s.get(&path(&conv, 3, ""), &a.token).await,
        404,
        "not_found",
    );
    assert_err(
        &s.get(&path(&conv, 0, ""), &a.token).await,
        404,
        "not_found",
    );
    assert_err(
        &s.get(&path("nope", 1, ""), &a.token).await,
        404,
        "not_found",
    );
    assert_err(
        &s.get(&path(&conv, 1, "?kind=seen"), &a.token).await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_gets_coalesced_receipt_summaries() {
    let s = TestServer::builder()
        .config("[actors]\nreceipt_summary_min_members = 4\nreceipt_summary_interval_ms = 1000")
        .start();
    let a = s.user("alice").await;
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(s.user(&format!("member{i}")).await);
    }
    let refs: Vec<&Dev> = members.iter().collect();
    let conv = s.group(&a, &refs).await;
    let mut wa = s.ws(&a).await;
    let mut ws = Vec::new();
    for m in &members {
        ws.push(s.ws(m).await);
    }
    wa.send_msg(&conv, "m1", "hello all").await;
    // Everyone receives it and reads it at once: ten moves.
    for w in ws.iter_mut() {
        w.next_type("message").await;
        w.send(json!({"type": "received", "conversation_id": conv, "seq": 1}))
            .await;
        w.send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
            .await;
    }
    let mut frames: Vec<(std::time::Instant, Value)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        let got = wa
            .collect_for(Duration::from_millis(200), |v| {
                v["type"] == "receipt_summary" || v["type"] == "receipt"
            })
            .await;
        let now = std::time::Instant::now();
        frames.extend(got.into_iter().map(|v| (now, v)));
        if frames.last().is_some_and(|(_, v)| v["read"] == 5) {
            break;
        }
    }
    assert!(
        frames.iter().all(|(_, v)| v["type"] == "receipt_summary"),
        "a large group's sender gets summaries, not receipts: {frames:?}"
    );
    let last = &frames.last().expect("a summary").1;
    assert_eq!(
        last,
        &json!({"type": "receipt_summary", "conversation_id": conv, "seq": 1, "recipients": 5, "delivered": 5, "read": 5})
    );
    // Coalesced: ten moves within a moment make at most a first summary and one more per
    // interval, and the counts only grow.
    assert!(frames.len() <= 3, "not coalesced: {frames:?}");
    if frames.len() > 1 {
        let spread = frames.last().unwrap().0 - frames[0].0;
        assert!(
            spread >= Duration::from_millis(600),
            "summaries {spread:?} apart"
        );
    }
    for w in frames.windows(2) {
        assert!(
            w[1].1["read"].as_u64() >= w[0].1["read"].as_u64(),
            "{frames:?}"
        );
    }
    // Nothing more once the counts are final; members are not told the counts.
    let extra = wa
        .collect_for(Duration::from_millis(1500), |v| {
            v["type"] == "receipt_summary"
        })
        .await;
    assert!(
        extra.is_empty(),
        "unchanged counts were sent again: {extra:?}"
    );
    let seen = ws[0]
        .collect_for(Duration::from_millis(300), |v| {
            v["type"] == "receipt_summary"
        })
        .await;
    assert!(seen.is_empty(), "{seen:?}");
    // The endpoint agrees, with a full page of five readers.
    let (st, page) = s
        .get(&path(&conv, 1, "?kind=read&limit=1000"), &a.token)
        .await;
    assert_eq!(
        (
            st,
            page["read"].as_u64(),
            page["users"].as_array().map(Vec::len)
        ),
        (200, Some(5), Some(5))
    );
}
