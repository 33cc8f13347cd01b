//! Faults end to end: a provider failing on cue (retries, backoff, `Retry-After`), `kill -9`
//! of a `parley push` process holding leases and of a node between commit and push, and a
//! cluster of 3 nodes with 2 bridges sharing one outbox.

use super::setup::*;
use super::{drained, outbox};
use crate::common::{eventually, TestServer};
use crate::push::fakes::webhook::Step;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_retry_with_backoff_and_retry_after() {
    let f = Fakes::start().await;
    let srv = node(&f.toml(true, &[("confirm_delay_ms", "300")]));
    let (a, b) = (srv.user("alice").await, srv.user("bob").await);
    let conv = srv.direct(&a, &b).await;
    f.hook.script(
        "flaky",
        vec![
            Step::Answer(503, None),
            Step::Answer(502, None),
            Step::Answer(429, Some("2")),
        ],
    );
    register_hook(&srv, &f, &b, "flaky", "id_only").await;
    let mut wa = srv.ws(&a).await;
    wa.send_msg(&conv, "m1", "hi").await;
    let tries = f.wait_hooks(4, |h| to(h, &b, &conv)).await;
    drained(&srv).await;
    let statuses: Vec<u16> = tries.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [503, 502, 429, 204]);
    // Backoff: base 50 ms doubling, capped at 400 ms (plus the bridge's 200 ms idle poll).
    for w in tries[..3].windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap < Duration::from_millis(1500), "backoff gap {gap:?}");
    }
    // Retry-After: 2 s wins over the backoff.
    let gap = tries[3].at - tries[2].at;
    assert!(
        gap >= Duration::from_millis(1950),
        "Retry-After ignored: {gap:?}"
    );
    // One notification: the same id on every attempt.
    let ids: Vec<&String> = tries.iter().map(|h| &h.headers["webhook-id"]).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(tries.len(), f.hook.hooks().len());
    let retried = metric(&srv.addr, "parley_push_retried_total", "webhook").await;
    assert_eq!(retried, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_mid_delivery_loses_nothing() {
    let f = Fakes::start().await;
    let toml = f.toml(false, &[("confirm_delay_ms", "300")]);
    let srv = node(&toml);
    let mut first = BridgeProc::start(&srv.dir, &toml, None, "bridge-1").await;
    let a = srv.user("alice").await;
    let b = srv.user("bob").await;
    let mut phones = vec![b.clone()];
    for _ in 0..2 {
        phones.push(srv.login("bob").await);
    }
    let conv = srv.direct(&a, &b).await;
    f.hook
        .script("hold", vec![Step::Hold, Step::Hold, Step::Hold]);
    for p in &phones {
        register_hook(&srv, &f, p, "hold", "id_only").await;
    }
    let mut wa = srv.ws(&a).await;
    wa.send_msg(&conv, "m1", "hi").await;
    // The bridge holds all three deliveries (the receiver does not answer): kill -9 it.
    let held = f.wait_hooks(3, |h| h.status == 0).await;
    first.kill9();
    let killed = Instant::now();
    let _second = BridgeProc::start(&srv.dir, &toml, None, "bridge-2").await;
    let done = f.wait_hooks(3, |h| h.status == 204).await;
    drained(&srv).await;
    // Each job once more, after the dead bridge's lease (3 s) expired, as the same
    // notification (the same id: the receiver can tell it is a repeat).
    for p in &phones {
        let mine = |hs: &[crate::push::fakes::webhook::Hook]| {
            hs.iter()
                .filter(|h| to(h, p, &conv))
                .cloned()
                .collect::<Vec<_>>()
        };
        let (h, d) = (mine(&held), mine(&done));
        assert_eq!((h.len(), d.len()), (1, 1), "{h:#?} {d:#?}");
        assert_eq!(h[0].headers["webhook-id"], d[0].headers["webhook-id"]);
        assert!(d[0].at - h[0].at >= Duration::from_millis(2900));
    }
    assert!(killed.elapsed() < Duration::from_secs(15));
    assert_eq!(f.hook.hooks().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_commit_and_push_loses_nothing() {
    let f = Fakes::start().await;
    // No bridge in the node: jobs wait in the outbox.
    let toml = f.toml(false, &[("confirm_delay_ms", "200")]);
    let mut srv = node(&toml);
    let (a, b, c) = (
        srv.user("alice").await,
        srv.user("bob").await,
        srv.user("carol").await,
    );
    let (ab, cb) = (srv.direct(&a, &b).await, srv.direct(&c, &b).await);
    register_hook(&srv, &f, &b, "ok", "id_only").await;
    let (mut wa, mut wc) = (srv.ws(&a).await, srv.ws(&c).await);
    // A job that reached the outbox, and one whose commit was just acked when the node died.
    wa.send_msg(&ab, "a1", "first").await;
    let scheduled = eventually(PUSH_WAIT, || async {
        outbox(&srv).iter().any(|j| j.1 == ab)
    })
    .await;
    assert!(scheduled, "the job never reached the outbox");
    wc.send_msg(&cb, "c1", "second").await;
    srv.kill9();
    drop((wa, wc));
    // With the node dead, a bridge delivers what is in the outbox.
    let _bridge = BridgeProc::start(&srv.dir, &toml, None, "bridge").await;
    let got = f.wait_hooks(1, |h| to(h, &b, &ab)).await;
    assert_eq!(got[0].body["seq"], 1);
    // The other message's push is owed from its commit on (a job, or the mark the commit
    // wrote); the node, restarted, schedules it.
    tokio::task::block_in_place(|| srv.restart());
    let got = f.wait_hooks(1, |h| to(h, &b, &cb)).await;
    assert_eq!(got[0].body["seq"], 1);
    drained(&srv).await;
    assert_eq!(f.hook.hooks().len(), 2, "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_and_two_bridges_deliver_every_job_once() {
    let f = Fakes::start().await;
    let toml = f.toml(false, &[("confirm_delay_ms", "300"), ("concurrency", "3")]);
    let srv = tokio::task::block_in_place(|| TestServer::builder().nodes(3).config(&toml).start());
    let bus = srv.redis.as_ref().unwrap().url();
    let cluster = srv.extra_config();
    let bridges = [
        BridgeProc::start(&srv.dir, &cluster, Some(bus.clone()), "bridge-1").await,
        BridgeProc::start(&srv.dir, &cluster, Some(bus), "bridge-2").await,
    ];
    // Three groups, each with its sender on another node, 12 offline members each.
    let mut members = Vec::new();
    for i in 0..36 {
        members.push(srv.user(&format!("m{i}")).await);
    }
    f.hook.script("c3", vec![Step::Slow(204, 60); 200]);
    for m in &members {
        register_hook(&srv, &f, m, "c3", "id_only").await;
    }
    let mut senders = Vec::new();
    for g in 0..3 {
        let s = srv.user(&format!("sender{g}")).await;
        let group: Vec<_> = members[g * 12..(g + 1) * 12].iter().collect();
        let conv = srv.group(&s, &group).await;
        senders.push((srv.ws(&s).await, conv));
    }
    for (ws, conv) in &mut senders {
        ws.send_msg(conv, "x1", "hello all").await;
    }
    f.wait_hooks(36, |h| h.status == 204).await;
    drained(&srv).await;
    // Every device got its group's message; no notification went out twice.
    let hooks = f.hook.hooks();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for h in &hooks {
        *ids.entry(h.headers["webhook-id"].as_str()).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "sent twice: {ids:?}");
    for (g, (_, conv)) in senders.iter().enumerate() {
        for m in &members[g * 12..(g + 1) * 12] {
            assert_eq!(f.hooks_where(|h| to(h, m, conv)).len(), 1);
        }
    }
    assert_eq!(hooks.len(), 36);
    // Both bridges took part.
    for b in &bridges {
        assert!(b.delivered().await >= 1.0, "a bridge delivered nothing");
    }
}
