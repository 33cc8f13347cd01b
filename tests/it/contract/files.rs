//! Files: upload, ranged download, ETags, and who may read them.

use crate::common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_range_etag_and_access_rules() {
    let s = TestServer::builder()
        .config("[limits]\nmax_file_bytes = 100000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let conv = s.direct(&a, &b).await;
    let png = test_png(40, 40);
    assert!(png.len() > 1000);
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("image/png".into(), png.clone())),
            vec![],
        )
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    let info: Value = serde_json::from_slice(&body).unwrap();
    let fid = info["file_id"].as_str().unwrap().to_string();
    assert_eq!(info["size"], png.len() as u64);
    assert_eq!(info["content_type"], "image/png");
    use sha2::Digest;
    assert_eq!(info["sha256"], hex::encode(sha2::Sha256::digest(&png)));

    // Declared type must match the bytes.
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("image/png".into(), b"just text".to_vec())),
            vec![],
        )
        .await;
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    let (st, _, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("text/plain".into(), png.clone())),
            vec![],
        )
        .await;
    assert_eq!(st, 400);
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("application/octet-stream".into(), vec![7u8; 100_001])),
            vec![],
        )
        .await;
    assert_eq!(st, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "too_large"
    );
    let (st, _, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            None,
            Some(("text/plain".into(), b"x".to_vec())),
            vec![],
        )
        .await;
    assert_eq!(st, 401);

    // The uploader reads it, in full and by range; ETag revalidation works.
    let (st, bytes, hs) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(bytes, png);
    let etag = hs
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone())
        .expect("etag");
    let ctype = hs
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(ctype, "image/png");
    let (st, bytes, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![("Range".into(), "bytes=10-19".into())],
        )
        .await;
    assert_eq!(st, 206);
    assert_eq!(bytes, png[10..20].to_vec());
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![("If-None-Match".into(), etag)],
        )
        .await;
    assert_eq!(st, 304);

    // Bob may not read it before it is sent to him, nor attach it.
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 403);
    let mut wb = s.ws(&b).await;
    wb.send(json!({"type": "send", "id": "steal", "conversation_id": conv, "attachments": [{"file_id": fid}]})).await;
    assert_eq!(
        wb.next_where(|v| v["id"] == "steal").await["code"],
        "forbidden"
    );

    let mut wa = s.ws(&a).await;
    wa.send(json!({"type": "send", "id": "pic", "conversation_id": conv, "text": "look", "attachments": [{"file_id": fid}]}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "pic").await["type"], "ack");
    let m = wb.next_type("message").await;
    assert_eq!(m["attachments"][0]["file_id"], fid.as_str());
    assert_eq!(m["attachments"][0]["content_type"], "image/png");
    let (st, bytes, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert_eq!((st, bytes.len()), (200, png.len()));
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&c.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 403);
    let (st, _, _) = s
        .http_raw("GET", "/v1/files/nope", Some(&c.token), None, vec![])
        .await;
    assert_eq!(st, 404);

    // Retracting the message purges the attachment: Bob loses access, the blob is gone.
    wa.send(json!({"type": "delete", "id": "del", "conversation_id": conv, "seq": 1, "scope": "everyone"})).await;
    assert_eq!(wa.next_where(|v| v["id"] == "del").await["type"], "ack");
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert!(st == 403 || st == 404, "{st}");
    let sha = info["sha256"].as_str().unwrap();
    let blob = s
        .dir
        .join("files")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(sha);
    assert!(!blob.exists(), "blob not purged");
    // v1.1: its thumbnail went with it: no blob is left at all.
    let mut left = Vec::new();
    let mut dirs = vec![s.dir.join("files")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.path() {
                p if p.ends_with("tmp") => {}
                p if p.is_dir() => dirs.push(p),
                p => left.push(p),
            }
        }
    }
    assert!(left.is_empty(), "blobs left after the purge: {left:?}");
}
