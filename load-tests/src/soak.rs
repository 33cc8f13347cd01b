//! `soak`: a mixed workload at a bounded rate over a fixed population for a bounded time, to
//! show what only time shows: memory, descriptors, actors or the WAL that grow, and a message
//! lost or duplicated on a path that short scenarios rarely take (a reconnect with sends in
//! flight, a retraction racing a catch-up, a member leaving while messages fan out).
//!
//! Each user has one device (`device`), a task that owns its socket and checks what it holds
//! (`track`). A scheduler offers operations at `--rate` to devices chosen at random: 1:1 and
//! group sends, receipts, uploads with a message and downloads, retractions and hides,
//! reconnects, joining and leaving groups. `sample` records the server and the generator over
//! time. At the end the devices catch up, each must hold every seq of the conversations it is
//! still a member of, and storage is read back and compared with every ack (`verify`).
//!
//! Bounded: the population and the conversations are fixed at start, each device has at most
//! 8 sends in flight and a queue of 16 operations (a full one skips the operation), and what
//! grows with the run is the acked log (8 bytes per message) and one sample per interval.

mod device;
mod http;
mod sample;
mod track;
mod verify;
mod world;

use crate::client::{self, Login};
use device::{Cmd, Device, Report};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use track::Tally;
use world::{Conv, Op, Rng, World};

pub struct Config {
    pub users: usize,
    pub groups: usize,
    pub rate: u64,
    pub duration: u64,
    pub sample_secs: u64,
    pub server_pids: Vec<u32>,
    pub data_dir: Option<String>,
}

/// What one run measured, for the report.
struct Run {
    setup_s: f64,
    run_s: f64,
    drain_s: f64,
    drained: bool,
    reports: Vec<Report>,
    samples: Vec<sample::Sample>,
    store: verify::StoreCheck,
}

pub async fn soak(urls: &[String], cfg: Config) -> Value {
    assert!(cfg.users >= 4, "a soak needs at least 4 users");
    let t0 = Instant::now();
    let world = Arc::new(setup(urls, &cfg).await);
    let (txs, tasks) = start_devices(&world);
    let (online, _) = settle(&txs, &Arc::default(), Duration::from_secs(120)).await;
    assert!(online, "devices did not all connect and sync within 120 s");
    let setup_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "soak: {} users, {} conversations, set up in {setup_s:.1} s; running {} s at {} ops/s",
        cfg.users,
        world.convs.len(),
        cfg.duration,
        cfg.rate
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let probe = sample::Probe {
        pids: cfg.server_pids.clone(),
        urls: urls.to_vec(),
        data_dir: cfg.data_dir.as_ref().map(std::path::PathBuf::from),
    };
    let every = Duration::from_secs(cfg.sample_secs.max(1));
    let sampler = tokio::spawn(sample::run(probe, world.clone(), every, stop_rx));
    let run_s = schedule(&world, &txs, cfg.rate, cfg.duration).await;
    let t_drain = Instant::now();
    let (last, drained) = drain(&world, &txs).await;
    let drain_s = t_drain.elapsed().as_secs_f64();
    // The last sample while every device is still connected.
    let _ = stop_tx.send(true);
    let samples = sampler.await.unwrap();
    let reports = finish(&txs, &last, tasks).await;
    let w = world.clone();
    let store = tokio::task::spawn_blocking(move || verify::check(&w, 4))
        .await
        .unwrap();
    let run = Run {
        setup_s,
        run_s,
        drain_s,
        drained,
        reports,
        samples,
        store,
    };
    let report = to_json(&world, &cfg, &run);
    print_summary(&report);
    report
}

/// Each user is in 4 direct conversations (with its neighbours at distance 1 and 7).
fn direct_pairs(n: usize) -> Vec<(usize, usize)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for i in 0..n {
        for d in [1, 7] {
            let j = (i + d) % n;
            if i != j && seen.insert((i.min(j), i.max(j))) {
                out.push((i, j));
            }
        }
    }
    out
}

/// Group g starts with 3 to 50 members (spread over the groups) and has a pool a fifth larger
/// that members leave to and join from. The pools follow each other round the population, so
/// every user is in some. Returns (pool, initial members); pool[0] is the admin.
fn group_plan(n: usize, groups: usize) -> Vec<(Vec<usize>, usize)> {
    let mut next = 0;
    (0..groups)
        .map(|g| {
            let size = if groups > 1 {
                3 + 47 * g / (groups - 1)
            } else {
                50
            };
            let size = size.min(n - 1);
            let pool_len = (size + (size / 5).max(2)).min(n);
            let pool = (0..pool_len).map(|k| (next + k) % n).collect();
            next += pool_len;
            (pool, size)
        })
        .collect()
}

async fn setup(urls: &[String], cfg: &Config) -> World {
    let run = std::process::id();
    let names = (0..cfg.users).map(|i| format!("so{run}u{i}")).collect();
    let logins = client::users(&urls[0], names, 8).await;
    let mut convs = create_directs(&urls[0], &logins, direct_pairs(logins.len())).await;
    let mut pools_of = vec![Vec::new(); logins.len()];
    for (pool, size) in group_plan(logins.len(), cfg.groups) {
        let (base, logins2, members) = (urls[0].clone(), logins.clone(), pool[..size].to_vec());
        let id = tokio::task::spawn_blocking(move || create_group(&base, &logins2, &members))
            .await
            .unwrap();
        for u in &pool[1..] {
            pools_of[*u].push(convs.len());
        }
        convs.push(Conv::new(id, true, pool[0], size));
    }
    World::new(logins, urls.to_vec(), convs, pools_of)
}

async fn create_directs(base: &str, logins: &[Login], pairs: Vec<(usize, usize)>) -> Vec<Conv> {
    let chunk = pairs.len().div_ceil(8).max(1);
    let mut handles = Vec::new();
    for part in pairs.chunks(chunk) {
        let (base, logins, part) = (base.to_string(), logins.to_vec(), part.to_vec());
        handles.push(tokio::task::spawn_blocking(move || {
            let agent = client::agent();
            part.iter()
                .map(|(a, b)| {
                    let id = client::direct_conversation(&agent, &base, &logins[*a], &logins[*b]);
                    Conv::new(id, false, *a, 2)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.extend(h.await.unwrap());
    }
    out
}

fn create_group(base: &str, logins: &[Login], members: &[usize]) -> String {
    let ids: Vec<&str> = members[1..]
        .iter()
        .map(|m| logins[*m].user_id.as_str())
        .collect();
    let (s, v) = client::post(
        &client::agent(),
        &format!("{base}/v1/conversations"),
        Some(&logins[members[0]].token),
        json!({"kind": "group", "title": "soak", "members": ids}),
    );
    assert_eq!(s, 201, "create group: {v}");
    v["conversation_id"].as_str().unwrap().to_string()
}

type Devices = (Vec<mpsc::Sender<Cmd>>, Vec<tokio::task::JoinHandle<()>>);

/// One task per device; first connections staggered over 10 ms per device.
fn start_devices(world: &Arc<World>) -> Devices {
    let now = Instant::now();
    (0..world.users.len())
        .map(|u| {
            let (tx, rx) = mpsc::channel(16);
            let first = now + Duration::from_millis(10 * u as u64);
            (
                tx,
                tokio::spawn(Device::new(u, world.clone(), rx, first).run()),
            )
        })
        .unzip()
}

/// Waits until every device is settled (and owes nothing of `last`, if given), or `limit`.
/// Returns (all settled, total owed).
async fn settle(txs: &[mpsc::Sender<Cmd>], last: &Arc<Vec<u64>>, limit: Duration) -> (bool, u64) {
    let deadline = Instant::now() + limit;
    loop {
        let (mut all, mut owed) = (true, 0);
        for tx in txs {
            let (reply, rx) = oneshot::channel();
            let _ = tx.send(Cmd::Status(last.clone(), reply)).await;
            match rx.await {
                Ok(s) => {
                    all &= s.settled;
                    owed += s.owed;
                }
                Err(_) => all = false,
            }
        }
        if (all && owed == 0) || Instant::now() >= deadline {
            return (all, owed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn pick_op(rng: &mut Rng) -> Op {
    let total: u64 = Op::ALL.iter().map(|o| o.weight()).sum();
    let mut x = rng.below(total);
    for op in Op::ALL {
        if x < op.weight() {
            return op;
        }
        x -= op.weight();
    }
    unreachable!("weights add up to total")
}

/// Offers operations at `rate` per second for `duration` seconds to devices chosen at random
/// among the online ones; a device whose queue is full skips it. Returns the seconds it ran.
async fn schedule(world: &World, txs: &[mpsc::Sender<Cmd>], rate: u64, duration: u64) -> f64 {
    let mut rng = Rng::new(0x5eed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let t0 = Instant::now();
    let mut report_at = t0 + Duration::from_secs(60);
    while t0.elapsed() < Duration::from_secs(duration) {
        tick.tick().await;
        let op = pick_op(&mut rng);
        let n = txs.len() as u64;
        let first = rng.below(n) as usize;
        let u = (0..8)
            .map(|_| rng.below(n) as usize)
            .find(|u| world.is_online(*u))
            .unwrap_or(first);
        if txs[u].try_send(Cmd::Op(op)).is_err() {
            world.skip(op);
        }
        if Instant::now() >= report_at {
            report_at += Duration::from_secs(60);
            let unexpected: u64 = world.errors().1.values().sum();
            eprintln!(
                "soak: {:.0} s, {} ops done, {} acked, {unexpected} unexpected errors",
                t0.elapsed().as_secs_f64(),
                world.ops_done(),
                world.acked.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    t0.elapsed().as_secs_f64()
}

/// Stops the workload; waits until every device is online with nothing in flight, then until
/// each holds every acked seq of its conversations. Returns the last seqs and whether both
/// happened within their minute.
async fn drain(world: &World, txs: &[mpsc::Sender<Cmd>]) -> (Arc<Vec<u64>>, bool) {
    for tx in txs {
        let _ = tx.send(Cmd::Drain).await;
    }
    let (quiet, _) = settle(txs, &Arc::default(), Duration::from_secs(60)).await;
    let last = Arc::new(world.last_seqs());
    let (caught_up, owed) = settle(txs, &last, Duration::from_secs(60)).await;
    (last, quiet && caught_up && owed == 0)
}

async fn finish(
    txs: &[mpsc::Sender<Cmd>],
    last: &Arc<Vec<u64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> Vec<Report> {
    let mut out = Vec::new();
    for tx in txs {
        let (reply, rx) = oneshot::channel();
        let _ = tx.send(Cmd::Finish(last.clone(), reply)).await;
        if let Ok(r) = rx.await {
            out.push(r);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    out
}

/// The devices' reports added up.
struct Totals {
    tally: Tally,
    undelivered: u64,
    leaks: u64,
    unacked: u64,
    unannounced_leaves: u64,
    unannounced_joins: u64,
    ack_latency: hdrhistogram::Histogram<u64>,
}

fn totals(reports: &[Report]) -> Totals {
    let mut t = Totals {
        tally: Tally::default(),
        undelivered: 0,
        leaks: 0,
        unacked: 0,
        unannounced_leaves: 0,
        unannounced_joins: 0,
        ack_latency: client::hist(),
    };
    for r in reports {
        t.tally.add(&r.tally);
        t.undelivered += r.undelivered;
        t.leaks += r.leaks;
        t.unacked += r.unacked;
        t.unannounced_leaves += r.unannounced_leaves;
        t.unannounced_joins += r.unannounced_joins;
        t.ack_latency.add(&r.ack_latency).unwrap();
    }
    t
}

fn to_json(world: &World, cfg: &Config, run: &Run) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let t = totals(&run.reports);
    let (done, skipped) = world.op_counts();
    let (expected, unexpected) = world.errors();
    let ops = world.ops_done();
    let acked = world.acked.load(Relaxed);
    let conflicts = world.conflicts.load(Relaxed);
    let per_s = |n: u64| (n as f64 / run.run_s.max(0.001) * 10.0).round() / 10.0;
    let groups: Vec<usize> = world
        .convs
        .iter()
        .filter(|c| c.group)
        .map(|c| c.members.load(Relaxed))
        .collect();
    let complete = t.tally.duplicates == 0
        && t.tally.gaps == 0
        && t.undelivered == 0
        && t.leaks == 0
        && t.unacked == 0
        && conflicts == 0
        && run.store.ok()
        && unexpected.is_empty();
    json!({
        "scenario": "soak",
        "nodes": world.urls.len(), "users": cfg.users, "groups": cfg.groups,
        "direct_conversations": world.convs.len() - groups.len(),
        "group_members_at_end": groups,
        "target_rate": cfg.rate, "duration_s": cfg.duration, "sample_secs": cfg.sample_secs,
        "setup_s": round1(run.setup_s), "run_s": round1(run.run_s), "drain_s": round1(run.drain_s),
        "drained": run.drained,
        "ops_done": ops, "ops_per_s": per_s(ops), "ops": done, "ops_skipped": skipped,
        "acked": acked, "acked_per_s": per_s(acked),
        "duplicate_acks": world.duplicate_acks.load(Relaxed), "ack_conflicts": conflicts,
        "ack_latency": client::summary(&t.ack_latency),
        "deliveries": t.tally.delivered, "deliveries_per_s": per_s(t.tally.delivered),
        "redelivered": t.tally.redelivered,
        "duplicates": t.tally.duplicates, "gaps": t.tally.gaps, "undelivered": t.undelivered,
        "leaks": t.leaks, "unacked_at_end": t.unacked, "unannounced_leaves": t.unannounced_leaves,
        "unannounced_joins": t.unannounced_joins,
        "forced_disconnects": world.forced_disconnects.load(Relaxed),
        "store": run.store.to_json(),
        "errors": unexpected.values().sum::<u64>(),
        "errors_expected": expected, "errors_unexpected": unexpected,
        "samples": run.samples.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        "summary": sample::summary(&run.samples),
        "complete": complete,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The soak's own lines on stderr (the common summary line follows from `main`).
fn print_summary(r: &Value) {
    eprintln!(
        "soak: {} s over {} node(s), {} users; ops {} ({}/s of {} offered), acked {} ({}/s), deliveries {} ({}/s)",
        r["run_s"], r["nodes"], r["users"], r["ops_done"], r["ops_per_s"], r["target_rate"],
        r["acked"], r["acked_per_s"], r["deliveries"], r["deliveries_per_s"]
    );
    eprintln!("  ops: {}", r["ops"]);
    eprintln!("  skipped: {}", r["ops_skipped"]);
    eprintln!(
        "  redelivered {}, duplicate acks {}, leaks {}, unacked at end {}, unannounced leaves {} / joins {}, forced disconnects {}, drain {} s",
        r["redelivered"], r["duplicate_acks"], r["leaks"], r["unacked_at_end"],
        r["unannounced_leaves"], r["unannounced_joins"], r["forced_disconnects"], r["drain_s"]
    );
    eprintln!(
        "  {:<20} {:>12} {:>12} {:>12} {:>20}",
        "series", "first", "last", "max", "slope/h (2nd half)"
    );
    for key in sample::SERIES {
        let s = &r["summary"][key];
        if s.is_object() {
            let f = |k: &str| s[k].to_string();
            eprintln!(
                "  {key:<20} {:>12} {:>12} {:>12} {:>20}",
                f("first"),
                f("last"),
                f("max"),
                f("slope_per_hour")
            );
        }
    }
    eprintln!("  store: {}", r["store"]);
    eprintln!("  errors expected: {}", r["errors_expected"]);
    eprintln!("  errors unexpected: {}", r["errors_unexpected"]);
}
