//! Durability: an ack survives `kill -9`, and a graceful shutdown closes sessions with 1012.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Streams sends with a window of 32 in flight until the socket dies; returns the acks seen
/// (client id -> seq) and every id that was sent. `acks` counts the acks as they come.
async fn stream_until_dead(
    mut c: Client,
    conv: String,
    acks: Arc<AtomicUsize>,
) -> (HashMap<String, u64>, Vec<String>) {
    let mut acked = HashMap::new();
    let mut sent = Vec::new();
    let mut next = 0u64;
    loop {
        while sent.len() - acked.len() < 32 {
            let id = format!("k{next}");
            next += 1;
            let f = json!({"type": "send", "id": id, "conversation_id": conv, "text": format!("payload {id}")});
            if c.ws
                .send(Message::Text(f.to_string().into()))
                .await
                .is_err()
            {
                return (acked, sent);
            }
            sent.push(id);
        }
        match tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ack" {
                    acks.fetch_add(1, Ordering::Relaxed);
                    acked.insert(
                        v["id"].as_str().unwrap().to_string(),
                        v["seq"].as_u64().unwrap(),
                    );
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return (acked, sent),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_no_acked_message() {
    let mut s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let sender = s.ws(&a).await;
    let acks = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(stream_until_dead(sender, conv.clone(), acks.clone()));
    // Let it run until a few hundred acks are in, then pull the plug mid-stream.
    let flowing = eventually(Duration::from_secs(30), || async {
        acks.load(Ordering::Relaxed) >= 100
    })
    .await;
    assert!(flowing, "the stream did not get going");
    s.kill9();
    let (acked, sent) = task.await.unwrap();
    assert!(
        acked.len() > 50,
        "too few acks before the kill: {}",
        acked.len()
    );
    assert!(
        sent.len() > acked.len(),
        "the kill should land with sends in flight"
    );

    s.restart();
    // Every acked message is stored, once, with the seq its ack named; seq is gapless.
    let stored = s.all_messages(&a, &conv).await;
    let by_client: HashMap<String, u64> = stored
        .iter()
        .map(|m| {
            (
                m["client_id"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_client.len(), stored.len(), "a client id stored twice");
    for (id, seq) in &acked {
        assert_eq!(
            by_client.get(id),
            Some(seq),
            "acked message {id} (seq {seq}) lost"
        );
    }
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "seq has a gap"
    );

    // The client retries everything it never saw acked, with the same ids: stored-but-unacked
    // ones come back as duplicates, the rest are appended; still once each, still gapless.
    let mut c = s.ws(&a).await;
    for id in sent.iter().filter(|id| !acked.contains_key(*id)) {
        let ack = c.send_msg(&conv, id, &format!("payload {id}")).await;
        if let Some(seq) = by_client.get(id) {
            assert_eq!(
                (ack["duplicate"].as_bool(), ack["seq"].as_u64()),
                (Some(true), Some(*seq))
            );
        } else {
            assert!(ack.get("duplicate").is_none());
        }
    }
    let stored = s.all_messages(&a, &conv).await;
    assert_eq!(
        stored.len(),
        sent.len(),
        "every sent id stored exactly once after retries"
    );
    let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());

    // Bob, offline throughout, receives each message exactly once, in order.
    let mut wb = s.ws(&b).await;
    let got = wb.sync_all(200).await;
    let got: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, (1..=sent.len() as u64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_with_1012_and_keeps_everything() {
    let mut s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    wa.send_msg(&conv, "1", "before shutdown").await;
    assert_eq!(wb.next_type("message").await["seq"], 1);
    let term = tokio::task::spawn_blocking(move || {
        let ok = s.terminate();
        (ok, s)
    });
    assert_eq!(wa.closed().await, Some(1012));
    assert_eq!(wb.closed().await, Some(1012));
    let (ok, mut s) = term.await.unwrap();
    assert!(ok, "graceful shutdown should exit 0");
    s.restart();
    // The signing secret and the data survived: the old token still works.
    let mut wa = s.ws(&a).await;
    let c = &wa.ready["conversations"][0];
    assert_eq!(c["last_seq"], 1);
    assert_eq!(wa.send_msg(&conv, "2", "after restart").await["seq"], 2);
    let (st, _) = s.http("GET", "/readyz", None, None).await;
    assert_eq!(st, 200);
}

#[test]
fn migrate_applies_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["migrate", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let latest = first
        .strip_prefix("sqlite schema at version ")
        .and_then(|r| r.split_whitespace().next())
        .expect("a version");
    assert!(
        first.contains(&format!("version {latest} (was 0)")),
        "{first}"
    );
    assert!(latest.parse::<u32>().unwrap() >= 3, "{first}");
    let second = run();
    assert!(
        second.starts_with(&format!("sqlite schema at version {latest} (was {latest})")),
        "a second run changes nothing: {second}"
    );

    let c = rusqlite::Connection::open(dir.path().join("parley.db")).unwrap();
    let tables: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(tables >= 12, "{tables} tables");
}
