//! A real tus client, tuspy (PyPI, installed by `scripts/test` into target/pyenv), uploads a
//! large file through a proxy that cuts the TCP connection once, midway through a chunk: the
//! client asks for the offset and resumes, and the stored file has exactly the file's bytes.

use super::header;
use crate::blobs::pdf;
use crate::common::*;
use sha2::Digest;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Forwards `listener`'s connections to `to`; the first connection to carry more than
/// `cut_after` bytes from the client is cut (both ways) at that point.
fn cutting_proxy(listener: TcpListener, to: String, cut_after: u64) -> Arc<AtomicBool> {
    let cut = Arc::new(AtomicBool::new(false));
    let done = cut.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&to) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let cut = cut.clone();
            std::thread::spawn(move || pipe_up(client, server, cut, cut_after));
            std::thread::spawn(move || {
                let (mut from, mut to) = (s2, c2);
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Both);
            });
        }
    });
    done
}

fn pipe_up(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>, after: u64) {
    let sent = AtomicU64::new(0);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let total = sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > after && !cut.swap(true, Ordering::SeqCst) {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    let ok = std::process::Command::new(&venv)
        .args(["-c", "import tusclient"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(venv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_a_large_file_across_a_dropped_connection() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: no tuspy (scripts/test installs it in target/pyenv)");
        return;
    };
    let s = TestServer::builder()
        .nodes(1)
        .config("[limits]\nmax_file_bytes = 20000000")
        .start();
    let a = s.user("alice").await;
    let bytes = pdf(6_000_000, 7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pdf");
    std::fs::write(&path, &bytes).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap();
    // Chunks of 2 MB, one connection each (tuspy's requests): the first is cut at 1.2 MB.
    let cut = cutting_proxy(listener, s.addr.clone(), 1_200_000);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/uploads/tus_upload.py");
    let out = tokio::task::spawn_blocking({
        let (token, path) = (a.token.clone(), path.clone());
        move || {
            std::process::Command::new(py)
                .arg(script)
                .arg(format!("http://{proxy}/v1/uploads"))
                .arg(token)
                .arg(path)
                .arg("2000000")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "tuspy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cut.load(Ordering::SeqCst), "the proxy cut a connection");
    let url = String::from_utf8(out.stdout).unwrap();
    let at = url
        .trim()
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();
    let (st, _, hs) = s
        .http_raw(
            "HEAD",
            &at,
            Some(&a.token),
            None,
            vec![("Tus-Resumable".into(), "1.0.0".into())],
        )
        .await;
    assert_eq!(st, 200);
    let fid = header(&hs, "parley-file-id")
        .expect("completed")
        .to_string();
    let (st, body, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&body)),
        hex::encode(sha2::Sha256::digest(&bytes))
    );
}
