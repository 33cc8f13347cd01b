//! The blob store's contract, run against each backend through a real server: the local disk
//! and S3 (a real S3 server process on this machine: moto's `moto_server`, which
//! `scripts/test` installs in a venv under target/). Without it the S3 tests print one
//! `SKIPPED: no S3 server` line and pass.

mod s3;

use crate::common::*;
use serde_json::Value;
use sha2::Digest;

pub use s3::S3Server;

/// Bytes that sniff as PDF, `n` long, varied by `seed`: a type whose bytes are checked but
/// stored as sent (images are processed, so their stored bytes differ from the upload's).
pub fn pdf(n: usize, seed: u8) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%\xe2\xe3\n".to_vec();
    v.extend((0..n.saturating_sub(v.len())).map(|i| ((i * 7 + seed as usize) % 251) as u8));
    v
}

pub async fn upload(s: &TestServer, token: &str, ct: &str, bytes: &[u8]) -> Value {
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(token),
            Some((ct.into(), bytes.to_vec())),
            vec![],
        )
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn get(
    s: &TestServer,
    token: &str,
    fid: &str,
    headers: Vec<(&str, &str)>,
) -> (u16, Vec<u8>, Vec<(String, String)>) {
    let hs = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.http_raw("GET", &format!("/v1/files/{fid}"), Some(token), None, hs)
        .await
}

/// What every backend must do: bytes in, the same bytes out, whole and by range, with the
/// hash as ETag; identical bytes of two users are one blob, but each user reads only what it
/// may (nothing tells the second uploader that the first had the same bytes).
pub async fn contract(s: &TestServer) {
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let bytes = pdf(300_000, 1);
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let info = upload(s, &a.token, "application/pdf", &bytes).await;
    assert_eq!(info["sha256"], sha);
    let fid = info["file_id"].as_str().unwrap();

    let (st, body, hs) = get(s, &a.token, fid, vec![]).await;
    assert_eq!(st, 200);
    assert!(body == bytes, "whole blob differs");
    assert_eq!(header(&hs, "content-type"), Some("application/pdf"));
    assert_eq!(header(&hs, "accept-ranges"), Some("bytes"));
    let etag = header(&hs, "etag").expect("etag").to_string();
    assert_eq!(etag, format!("\"{sha}\""));

    for (range, lo, hi) in [
        ("bytes=100-199", 100, 200),
        ("bytes=299990-", 299_990, 300_000),
        ("bytes=-5", 299_995, 300_000),
        ("bytes=0-999999", 0, 300_000),
    ] {
        let (st, body, hs) = get(s, &a.token, fid, vec![("Range", range)]).await;
        assert_eq!(st, 206, "{range}");
        assert!(body == bytes[lo..hi], "{range}: wrong bytes");
        let cr = format!("bytes {lo}-{}/300000", hi - 1);
        assert_eq!(header(&hs, "content-range"), Some(cr.as_str()), "{range}");
    }
    let (st, _, hs) = get(s, &a.token, fid, vec![("Range", "bytes=300000-")]).await;
    assert_eq!(st, 416);
    assert_eq!(header(&hs, "content-range"), Some("bytes */300000"));
    let (st, body, _) = get(s, &a.token, fid, vec![("If-None-Match", &etag)]).await;
    assert_eq!((st, body.len()), (304, 0));
    // If-Range with another validator: the whole blob.
    let (st, body, _) = get(
        s,
        &a.token,
        fid,
        vec![("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
    )
    .await;
    assert_eq!((st, body.len()), (200, 300_000));

    // Bob uploads the same bytes: the same answer shape as any new upload (201, a new file
    // id), and still no access to Alice's file.
    let info_b = upload(s, &b.token, "application/pdf", &bytes).await;
    assert_ne!(info_b["file_id"], info["file_id"]);
    assert_eq!(info_b["sha256"], sha);
    let (st, _, _) = get(s, &b.token, fid, vec![]).await;
    assert_eq!(
        st, 403,
        "bob must not read alice's file through shared bytes"
    );
    let (st, body, _) = get(s, &b.token, info_b["file_id"].as_str().unwrap(), vec![]).await;
    assert_eq!(st, 200);
    assert!(body == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_contract_on_local_disk() {
    let s = TestServer::builder()
        .config("[limits]\nmax_file_bytes = 1000000")
        .start();
    contract(&s).await;
    // Today's layout: <data_dir>/files/ab/cd/<sha256>.
    let sha = hex::encode(sha2::Sha256::digest(pdf(300_000, 1)));
    let path = s
        .dir
        .join("files")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(&sha);
    assert!(path.exists(), "{} missing", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_contract_on_s3() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let s = TestServer::builder()
        .config(&format!(
            "[limits]\nmax_file_bytes = 1000000\n{}",
            s3.config()
        ))
        .start();
    contract(&s).await;
    let sha = hex::encode(sha2::Sha256::digest(pdf(300_000, 1)));
    assert!(s3.has(&sha), "the object is in the bucket");
    assert!(
        !s.dir.join("files").join(&sha[0..2]).exists(),
        "nothing stored on the node's disk"
    );
}

/// Two nodes with S3: a file uploaded through one is read through the other, from the
/// bucket (nothing is on either node's disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_file_uploaded_on_one_node_is_read_on_another() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let s = TestServer::builder().nodes(2).config(&s3.config()).start();
    let a = s.user("alice").await;
    let bytes = pdf(70_000, 9);
    let n0 = TestServer::external(&s.node(0).addr);
    let n1 = TestServer::external(&s.node(1).addr);
    let info = upload(&n0, &a.token, "application/pdf", &bytes).await;
    let fid = info["file_id"].as_str().unwrap();
    let (st, body, _) = get(&n1, &a.token, fid, vec![("Range", "bytes=10-")]).await;
    assert_eq!(st, 206);
    assert!(body == bytes[10..]);
    let sha = info["sha256"].as_str().unwrap();
    assert!(s3.has(sha));
    assert!(!s.dir.join("files").join(&sha[0..2]).exists());
}

/// With S3, a retraction deletes the object once no file refers to its bytes; a file of
/// another user with the same bytes keeps it until it goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retraction_deletes_the_object_when_nothing_refers_to_it() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let s = TestServer::builder().nodes(1).config(&s3.config()).start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let bytes = pdf(20_000, 4);
    let f1 = upload(&s, &a.token, "application/pdf", &bytes).await;
    let sha = f1["sha256"].as_str().unwrap().to_string();
    let mut wa = s.ws(&a).await;
    wa.send(serde_json::json!({"type": "send", "id": "p", "conversation_id": conv, "attachments": [{"file_id": f1["file_id"]}]}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "p").await["type"], "ack");
    let f2 = upload(&s, &b.token, "application/pdf", &bytes).await;
    assert!(s3.has(&sha));
    wa.send(serde_json::json!({"type": "delete", "id": "d", "conversation_id": conv, "seq": 1, "scope": "everyone"}))
        .await;
    wa.next_where(|v| v["id"] == "d").await;
    let (st, _, _) = get(&s, &b.token, f1["file_id"].as_str().unwrap(), vec![]).await;
    assert_eq!(st, 404, "the retracted file is gone");
    assert!(s3.has(&sha), "bob's file still uses the bytes");
    let (st, body, _) = get(&s, &b.token, f2["file_id"].as_str().unwrap(), vec![]).await;
    assert!(st == 200 && body == bytes);
    // Bytes only one file uses: the object goes with the retraction.
    let f3 = upload(&s, &a.token, "application/pdf", &pdf(20_000, 5)).await;
    let sha3 = f3["sha256"].as_str().unwrap().to_string();
    wa.send(serde_json::json!({"type": "send", "id": "p3", "conversation_id": conv, "attachments": [{"file_id": f3["file_id"]}]}))
        .await;
    let seq = wa.next_where(|v| v["id"] == "p3").await["seq"].clone();
    assert!(s3.has(&sha3));
    wa.send(serde_json::json!({"type": "delete", "id": "d3", "conversation_id": conv, "seq": seq, "scope": "everyone"}))
        .await;
    wa.next_where(|v| v["id"] == "d3").await;
    assert!(!s3.has(&sha3), "the object is deleted");
}
