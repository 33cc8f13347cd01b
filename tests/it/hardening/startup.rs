//! Starting: nodes started together on a fresh data directory, `parley migrate` racing
//! `parley serve`, a restart while the data directory's lock is still held, and a node whose
//! log pipe is gone when it is told to stop.

use crate::common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn parley() -> Command {
    Command::new(env!("CARGO_BIN_EXE_parley"))
}

/// A config file with fast password hashing, in `dir`; `extra` goes first (top-level keys,
/// or whole tables).
fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let p = dir.join("test.toml");
    std::fs::write(
        &p,
        format!("{extra}\n[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n"),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_a_fresh_directory_all_come_up_with_one_secret() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), &cluster_config(&redis));
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    // All three at the same moment, on a directory that does not exist yet.
    let mut children: Vec<_> = addrs
        .iter()
        .map(|a| {
            let log =
                std::fs::File::create(tmp.path().join(format!("{}.log", a.replace(':', "_"))))
                    .unwrap();
            parley()
                .args(["serve", "--listen", a, "--data-dir"])
                .arg(&data)
                .arg("--config")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap()
        })
        .collect();
    let all_ready = wait_until(Duration::from_secs(30), || {
        addrs.iter().all(|a| readyz(a) == 200)
    });
    for (c, a) in children.iter_mut().zip(&addrs) {
        if let Some(status) = c.try_wait().unwrap() {
            let log = tmp.path().join(format!("{}.log", a.replace(':', "_")));
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the node at {a} exited ({status}):\n{log}");
        }
    }
    assert!(all_ready, "not every node became ready");
    // One secret: a token minted by one node works on the others.
    let node = |i: usize| TestServer::external(&addrs[i]);
    let a = node(0).user("alice").await;
    let (st, v) = node(1).get("/v1/users/me", &a.token).await;
    assert_eq!((st, v["username"].as_str()), (200, Some("alice")));
    let (st, _) = node(2).get("/v1/users/me", &a.token).await;
    assert_eq!(st, 200);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn migrate_racing_serve_on_a_fresh_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(tmp.path(), "");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut serve = parley()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let migrate = parley()
        .args(["migrate", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let out = String::from_utf8_lossy(&migrate.stdout);
    assert!(out.starts_with("sqlite schema at version "), "{out}");
    assert!(wait_until(Duration::from_secs(20), || readyz(&addr) == 200));
    assert!(serve.try_wait().unwrap().is_none());
    let _ = serve.kill();
    let _ = serve.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_waits_for_a_lock_that_is_released_and_fails_clearly_on_one_that_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = config(tmp.path(), "data_dir_lock_wait_ms = 4000\n");
    // Stands in for a killed node's threads that still hold the lock.
    let lock = std::fs::File::create(data.join("parley.lock")).unwrap();
    lock.lock().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("node.log");
    let mut node = parley()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("waiting for it")
    }));
    drop(lock); // the predecessor's last thread is gone
    assert!(wait_until(Duration::from_secs(10), || readyz(&addr) == 200));
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("waiting for it")
            .count(),
        1,
        "logged once"
    );
    let _ = node.kill();
    let _ = node.wait();

    // Held for longer than the wait: the clear error, after the wait.
    let lock = std::fs::File::create(data.join("parley.lock")).unwrap();
    lock.lock().unwrap();
    let started = Instant::now();
    let out = parley()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() >= Duration::from_millis(3900),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another Parley node"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_at_once_after_kill9_under_load_comes_up() {
    let mut s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    for round in 0..3 {
        let mut w = s.ws(&a).await;
        for i in 0..20 {
            w.send(json!({"type": "send", "id": format!("r{round}-{i}"), "conversation_id": conv, "text": "x"}))
                .await;
        }
        s.kill9();
        // No pause: the supervisor restarts at once.
        s.restart();
    }
    let (st, _) = s.http("GET", "/readyz", None, None).await;
    assert_eq!(st, 200);
}

#[test]
fn sigterm_still_stops_a_node_whose_log_pipe_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "shutdown_grace_secs = 2\n");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut node = parley()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || readyz(&addr) == 200));
    // The log reader goes away (a collector restarting, a closed terminal).
    drop(node.stdout.take());
    drop(node.stderr.take());
    // Something to log about after the pipe is gone.
    readyz(&addr);
    let started = Instant::now();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = node.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = node.kill();
        panic!("the node did not exit after SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
