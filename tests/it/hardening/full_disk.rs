//! A full disk: on a size-limited filesystem (a tmpfs the test mounts), once the store
//! cannot write, sends get `unavailable` and no ack, `/readyz` turns red, an upload fails with
//! a clear error and leaves no partial blob; nothing acked is lost; and when space returns the
//! node recovers without a restart. Needs root (for `mount`); otherwise it says it skipped.

use crate::common::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem at `dir` with one file; returns it.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&chunk[..512]).is_ok() {}
    let _ = f.sync_all();
    p
}

fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: full-disk test: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("needs root to mount a tmpfs");
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&tmp.path().join("disk"), "12m") else {
        return skip("mount -t tmpfs failed (no CAP_SYS_ADMIN?)");
    };
    let s = TestServer::builder()
        .nodes(1)
        .data_dir(disk.0.join("data"))
        .config("[limits]\nrate_per_sec = 100000\nrate_burst = 100000\nuser_rate_per_sec = 100000\nuser_rate_burst = 100000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut w = s.ws(&a).await;
    let mut acked: HashMap<String, u64> = HashMap::new();
    for i in 0..20 {
        let id = format!("before-{i}");
        acked.insert(
            id.clone(),
            w.send_msg(&conv, &id, "x").await["seq"].as_u64().unwrap(),
        );
    }
    let filler = fill(&disk.0);
    // Send until the store refuses; whatever was acked meanwhile was committed.
    let mut refused = Vec::new();
    for i in 0..20_000 {
        let id = format!("full-{i}");
        w.send(json!({"type": "send", "id": id, "conversation_id": conv, "text": "y".repeat(500)}))
            .await;
        let v = w.next_where(|v| v["id"] == id).await;
        match v["type"].as_str() {
            Some("ack") => {
                acked.insert(id, v["seq"].as_u64().unwrap());
            }
            _ => {
                assert_eq!(v["code"], "unavailable", "{v}");
                refused.push(id);
                if refused.len() >= 3 {
                    break;
                }
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "the store never refused a write on a full disk"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.http("GET", "/readyz", None, None).await.0 == 503
        })
        .await,
        "readiness stayed green on a full disk"
    );
    // An upload that hits the full disk: a clear error, no partial blob.
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("application/octet-stream".into(), vec![7u8; 2 << 20])),
            vec![],
        )
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{v}"
    );
    let tmp_blobs = disk.0.join("data/files/tmp");
    let left = std::fs::read_dir(&tmp_blobs)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        left,
        0,
        "a partial upload was left in {}",
        tmp_blobs.display()
    );

    // Space returns: the node recovers by itself, and the refused sends go through on retry.
    std::fs::remove_file(filler).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            s.http("GET", "/readyz", None, None).await.0 == 200
        })
        .await,
        "the node did not recover when space returned"
    );
    for id in &refused {
        let ack = w.send_msg(&conv, id, "retried").await;
        acked.insert(id.clone(), ack["seq"].as_u64().unwrap());
    }
    let stored = s.all_messages(&a, &conv).await;
    assert_eq!(
        seqs(&stored),
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "gapless"
    );
    let by_id: HashMap<String, u64> = stored
        .iter()
        .map(|m| {
            (
                m["client_id"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    for (id, seq) in &acked {
        assert_eq!(by_id.get(id), Some(seq), "acked {id} lost or moved");
    }
    drop(s);
}
