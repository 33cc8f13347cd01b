//! `connect`: N idle authenticated connections spread over several nodes and several client
//! processes (a process may hold at most ~19k sockets here). The parent spawns workers
//! (`connect-worker`), waits until all of them hold their connections, reads the RSS of the
//! server and worker processes from /proc, then lets the workers go.

use crate::client::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Instant;

pub async fn connect(
    urls: &[String],
    n: usize,
    per_process: usize,
    users: usize,
    server_pids: &[u32],
    hold: u64,
    accept_refusals: bool,
) -> Value {
    let processes = n.div_ceil(per_process.max(1)).max(1);
    let before: Option<u64> = sum_rss(server_pids);
    let exe = std::env::current_exe().expect("own path");
    let t0 = Instant::now();
    let mut children = Vec::new();
    for w in 0..processes {
        let share = n / processes + usize::from(w < n % processes);
        let child = Command::new(&exe)
            .arg("--url")
            .arg(urls.join(","))
            .arg("connect-worker")
            .arg("--connections")
            .arg(share.to_string())
            .arg("--users")
            .arg(users.to_string())
            .arg("--tag")
            .arg(format!("{}w{w}", std::process::id()))
            .args(accept_refusals.then_some("--accept-refusals"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        children.push(child);
    }
    // Each worker prints one JSON line once it holds all its connections.
    let mut reports = Vec::new();
    for c in children.iter_mut() {
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("worker report");
        reports.push(serde_json::from_str::<Value>(&line).unwrap_or(Value::Null));
    }
    let all_up_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after = sum_rss(server_pids);
    let client_rss: u64 = children
        .iter()
        .filter_map(|c| rss_kib(&c.id().to_string()))
        .sum();
    if hold > 0 {
        // Keep them connected (e.g. while another scenario runs beside them).
        eprintln!("connect: {n} connections up; holding them for {hold} s");
        std::thread::sleep(std::time::Duration::from_secs(hold));
    }
    for mut c in children {
        drop(c.stdin.take());
        let mut rest = String::new();
        let _ = c.stdout.take().map(|mut o| o.read_to_string(&mut rest));
        let _ = c.wait();
    }
    let sum = |k: &str| -> u64 { reports.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum() };
    let (held, refused, failed) = (sum("connected"), sum("refused"), sum("failed"));
    let connect_s = reports
        .iter()
        .filter_map(|r| r["connect_s"].as_f64())
        .fold(0.0, f64::max);
    let per = |kib: u64| (kib as f64 * 1024.0 / n.max(1) as f64).round();
    json!({
        "scenario": "connect",
        "nodes": urls.len(),
        "client_processes": processes,
        "connections": n,
        "held": held,
        "refused_503": refused,
        "failed": failed,
        "all_up_s": (all_up_s * 10.0).round() / 10.0,
        "connect_s": connect_s,
        "connections_per_s": (n as f64 / connect_s.max(0.001)).round(),
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "server_bytes_per_connection": match (before, after) {
            (Some(b), Some(a)) => json!(per(a.saturating_sub(b))),
            _ => Value::Null,
        },
        "client_bytes_per_connection": per(client_rss),
        "complete": if accept_refusals {
            failed == 0 && held + refused == n as u64
        } else {
            held == n as u64
        },
    })
}

fn sum_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| rss_kib(&p.to_string())).sum()
}

/// One client process: logs its devices in, connects them, reports, and holds them until its
/// standard input closes.
/// With `accept_refusals`, each device tries once and a 503 counts as refused (a node at its
/// connection limit); otherwise refused handshakes are retried.
pub async fn worker(urls: &[String], n: usize, users: usize, tag: &str, accept_refusals: bool) {
    let users = users.max(1);
    let t0 = Instant::now();
    let mut names: Vec<(usize, String)> = Vec::with_capacity(n);
    for k in 0..n {
        let node = k % urls.len();
        names.push((node, format!("c{tag}n{node}u{}", (k / urls.len()) % users)));
    }
    let mut logins: Vec<(usize, Login)> = Vec::with_capacity(n);
    for (node, url) in urls.iter().enumerate() {
        let mine: Vec<String> = names
            .iter()
            .filter(|(nd, _)| *nd == node)
            .map(|(_, s)| s.clone())
            .collect();
        for l in users_devices(url, mine).await {
            logins.push((node, l));
        }
    }
    let logins_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let attempts: Vec<Result<Ws, String>> =
        futures_util::stream::iter(logins.iter().map(|(node, l)| async move {
            if accept_refusals {
                crate::client::try_connect(&urls[*node], &l.token).await
            } else {
                Ok(crate::client::connect(&urls[*node], &l.token).await)
            }
        }))
        .buffer_unordered(64)
        .collect()
        .await;
    let connect_s = t1.elapsed().as_secs_f64();
    let refused = attempts
        .iter()
        .filter(|r| r.as_ref().err().is_some_and(|e| e.contains("503")))
        .count();
    let failed = attempts.iter().filter(|r| r.is_err()).count() - refused;
    let conns: Vec<Ws> = attempts.into_iter().filter_map(Result::ok).collect();
    let held = conns.len();
    let readers: Vec<_> = conns
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
        .collect();
    println!(
        "{}",
        json!({"connected": held, "refused": refused, "failed": failed, "logins_s": logins_s, "connect_s": connect_s, "rss_kib": rss_kib("self")})
    );
    // Hold until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_to_string(&mut sink);
    })
    .await;
    for r in readers {
        r.abort();
    }
}

/// Logs in one device per name (creating each distinct user once).
async fn users_devices(url: &str, names: Vec<String>) -> Vec<Login> {
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    let base = url.to_string();
    let d2 = distinct.clone();
    tokio::task::spawn_blocking(move || {
        let a = agent();
        for n in &d2 {
            create_user(&a, &base, n);
        }
    })
    .await
    .unwrap();
    let chunk = names.len().div_ceil(8).max(1);
    let mut handles = Vec::new();
    for part in names.chunks(chunk) {
        let (base, part) = (url.to_string(), part.to_vec());
        handles.push(tokio::task::spawn_blocking(move || {
            let a = agent();
            part.iter().map(|n| login(&a, &base, n)).collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.extend(h.await.unwrap());
    }
    out
}
