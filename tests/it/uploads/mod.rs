//! v1.1: resumable uploads (tus 1.0.0) and upload housekeeping. One node: a resumable
//! upload's partial bytes live on the node that took them (docs/protocol.md), so these are not
//! part of the round-robin contract suite.

mod tuspy;

use crate::blobs::pdf;
use crate::common::*;
use serde_json::{json, Value};
use sha2::Digest;
use std::io::Write;
use std::time::Duration;

pub fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn tus_headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![("Tus-Resumable".to_string(), "1.0.0".to_string())];
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

/// POST /v1/uploads; returns the upload's path.
pub async fn create(s: &TestServer, token: &str, length: usize, filetype: &str) -> String {
    use base64::Engine;
    let meta = format!(
        "filename cGljLnBuZw==,filetype {}",
        base64::engine::general_purpose::STANDARD.encode(filetype)
    );
    let (st, body, hs) = s
        .http_raw(
            "POST",
            "/v1/uploads",
            Some(token),
            None,
            tus_headers(&[
                ("Upload-Length", &length.to_string()),
                ("Upload-Metadata", &meta),
            ]),
        )
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    assert!(header(&hs, "upload-expires").is_some());
    header(&hs, "location").expect("Location").to_string()
}

async fn patch(
    s: &TestServer,
    token: &str,
    at: &str,
    offset: usize,
    bytes: &[u8],
) -> (u16, Vec<u8>, Vec<(String, String)>) {
    s.http_raw(
        "PATCH",
        at,
        Some(token),
        Some(("application/offset+octet-stream".into(), bytes.to_vec())),
        tus_headers(&[("Upload-Offset", &offset.to_string())]),
    )
    .await
}

async fn head(s: &TestServer, token: &str, at: &str) -> (u16, Vec<(String, String)>) {
    let (st, _, hs) = s
        .http_raw("HEAD", at, Some(token), None, tus_headers(&[]))
        .await;
    (st, hs)
}

async fn offset_of(s: &TestServer, token: &str, at: &str) -> Option<u64> {
    let (st, hs) = head(s, token, at).await;
    (st == 200).then(|| header(&hs, "upload-offset").unwrap().parse().unwrap())
}

async fn download(s: &TestServer, token: &str, fid: &str) -> (u16, Vec<u8>) {
    let (st, body, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(token),
            None,
            vec![],
        )
        .await;
    (st, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_create_patch_head_complete_and_terminate() {
    let s = TestServer::builder()
        .nodes(1)
        .config("[limits]\nmax_file_bytes = 1000000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;

    let (st, _, hs) = s
        .http_raw("OPTIONS", "/v1/uploads", None, None, vec![])
        .await;
    assert_eq!(st, 204);
    assert_eq!(header(&hs, "tus-version"), Some("1.0.0"));
    assert_eq!(header(&hs, "tus-max-size"), Some("1000000"));
    let ext = header(&hs, "tus-extension").unwrap();
    for e in ["creation", "termination", "expiration"] {
        assert!(ext.contains(e), "{ext}");
    }
    // Without Tus-Resumable: 412; without a length: 400; over the limit: 413.
    let (st, _, hs) = s
        .http_raw(
            "POST",
            "/v1/uploads",
            Some(&a.token),
            None,
            vec![("Upload-Length".into(), "5".into())],
        )
        .await;
    assert_eq!((st, header(&hs, "tus-version")), (412, Some("1.0.0")));
    let (st, _, _) = s
        .http_raw(
            "POST",
            "/v1/uploads",
            Some(&a.token),
            None,
            tus_headers(&[]),
        )
        .await;
    assert_eq!(st, 400);
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/uploads",
            Some(&a.token),
            None,
            tus_headers(&[("Upload-Length", "1000001")]),
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
            "/v1/uploads",
            None,
            None,
            tus_headers(&[("Upload-Length", "5")]),
        )
        .await;
    assert_eq!(st, 401);

    let bytes = pdf(200_000, 3);
    let at = create(&s, &a.token, bytes.len(), "application/pdf").await;
    assert!(at.starts_with("/v1/uploads/"), "{at}");
    assert_eq!(offset_of(&s, &a.token, &at).await, Some(0));
    let (_, hs) = head(&s, &a.token, &at).await;
    assert_eq!(header(&hs, "upload-length"), Some("200000"));
    assert_eq!(header(&hs, "tus-resumable"), Some("1.0.0"));
    assert_eq!(header(&hs, "cache-control"), Some("no-store"));
    // Someone else's upload does not exist for them.
    assert_eq!(head(&s, &b.token, &at).await.0, 404);
    assert_eq!(patch(&s, &b.token, &at, 0, &bytes[..10]).await.0, 404);

    // A wrong content type: 415; a wrong offset: 409.
    let (st, _, _) = s
        .http_raw(
            "PATCH",
            &at,
            Some(&a.token),
            Some(("application/octet-stream".into(), bytes[..10].to_vec())),
            tus_headers(&[("Upload-Offset", "0")]),
        )
        .await;
    assert_eq!(st, 415);
    let (st, _, hs) = patch(&s, &a.token, &at, 0, &bytes[..80_000]).await;
    assert_eq!((st, header(&hs, "upload-offset")), (204, Some("80000")));
    assert!(header(&hs, "parley-file-id").is_none());
    let (st, body, _) = patch(&s, &a.token, &at, 0, &bytes[..10]).await;
    assert_eq!(st, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(offset_of(&s, &a.token, &at).await, Some(80_000));
    // Past Upload-Length: refused, what fit is kept.
    let mut more = bytes[80_000..].to_vec();
    more.extend_from_slice(b"extra");
    let (st, _, _) = patch(&s, &a.token, &at, 80_000, &more).await;
    assert_eq!(st, 413);
    let now = offset_of(&s, &a.token, &at).await.unwrap() as usize;
    assert!(now <= bytes.len());

    let (st, _, hs) = patch(&s, &a.token, &at, now, &bytes[now..]).await;
    assert_eq!(st, 204);
    assert_eq!(header(&hs, "upload-offset"), Some("200000"));
    let fid = header(&hs, "parley-file-id")
        .expect("Parley-File-Id")
        .to_string();
    let (st, got) = download(&s, &a.token, &fid).await;
    assert_eq!(st, 200);
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&got)),
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    // The answer again for a client that lost it; HEAD and GET name the file.
    let (st, _, hs) = patch(&s, &a.token, &at, 200_000, &[]).await;
    assert_eq!(
        (st, header(&hs, "parley-file-id")),
        (204, Some(fid.as_str()))
    );
    let (_, hs) = head(&s, &a.token, &at).await;
    assert_eq!(header(&hs, "parley-file-id"), Some(fid.as_str()));
    let (st, v) = s.http("GET", &at, Some(&a.token), None).await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["file_id"].as_str(), v["offset"].as_u64()),
        (Some(fid.as_str()), Some(200_000))
    );

    // A type that does not match the bytes is refused at completion, and the upload is gone.
    let at2 = create(&s, &a.token, 100, "image/jpeg").await;
    let (st, _, _) = patch(&s, &a.token, &at2, 0, &pdf(100, 1)).await;
    assert_eq!(st, 400);
    assert_eq!(head(&s, &a.token, &at2).await.0, 404);

    // Termination.
    let at3 = create(&s, &a.token, 1000, "application/octet-stream").await;
    patch(&s, &a.token, &at3, 0, &[1u8; 10]).await;
    let (st, _, _) = s
        .http_raw("DELETE", &at3, Some(&b.token), None, tus_headers(&[]))
        .await;
    assert_eq!(st, 404);
    let (st, _, _) = s
        .http_raw("DELETE", &at3, Some(&a.token), None, tus_headers(&[]))
        .await;
    assert_eq!(st, 204);
    assert_eq!(head(&s, &a.token, &at3).await.0, 404);
    let id3 = at3.rsplit('/').next().unwrap();
    assert!(!s.dir.join("files/partial").join(id3).exists());
}

/// A PATCH cut off midway keeps what arrived; so does a kill -9 of the node: the client asks
/// for the offset and goes on from there, and the file has exactly the bytes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_resumes_after_a_dropped_connection_and_a_node_restart() {
    let mut s = TestServer::builder()
        .nodes(1)
        .config("[limits]\nmax_file_bytes = 4000000")
        .start();
    let a = s.user("alice").await;
    let bytes = pdf(3_000_000, 5);
    let at = create(&s, &a.token, bytes.len(), "application/pdf").await;

    // Announce the whole rest, send 1 MB, then drop the connection.
    let addr = s.addr.clone();
    let (token, at2, part) = (a.token.clone(), at.clone(), bytes[..1_000_000].to_vec());
    tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            c,
            "PATCH {at2} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 3000000\r\n\r\n"
        )
        .unwrap();
        c.write_all(&part).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        c.shutdown(std::net::Shutdown::Both).unwrap();
    })
    .await
    .unwrap();
    let mut got = 0;
    for _ in 0..200 {
        got = offset_of(&s, &a.token, &at).await.unwrap_or(0) as usize;
        if got == 1_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, 1_000_000, "the bytes before the drop are kept");

    // The next 1 MB, then kill -9 and restart: the offset survives. The dropped request may
    // still hold the upload for a moment after its bytes are counted (409 until it ends).
    let mut st = 0;
    for _ in 0..50 {
        st = patch(&s, &a.token, &at, got, &bytes[got..2_000_000])
            .await
            .0;
        if st != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(st, 204);
    s.kill9();
    s.restart();
    assert_eq!(offset_of(&s, &a.token, &at).await, Some(2_000_000));
    let (st, _, hs) = patch(&s, &a.token, &at, 2_000_000, &bytes[2_000_000..]).await;
    assert_eq!(st, 204);
    let fid = header(&hs, "parley-file-id").unwrap().to_string();
    let (st, body) = download(&s, &a.token, &fid).await;
    assert_eq!(st, 200);
    assert!(body == bytes, "the resumed file differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_uploads_and_unattached_files_are_swept() {
    let s = TestServer::builder()
        .nodes(1)
        .config(
            "[uploads]\nresumable_expire_secs = 1\nunattached_secs = 2\nsweep_interval_ms = 200",
        )
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let at = create(&s, &a.token, 1000, "application/octet-stream").await;
    let (st, hs) = head(&s, &a.token, &at).await;
    assert_eq!(st, 200);
    assert!(header(&hs, "upload-expires").unwrap().ends_with("GMT"));
    patch(&s, &a.token, &at, 0, &[1u8; 100]).await;
    let partial = s
        .dir
        .join("files/partial")
        .join(at.rsplit('/').next().unwrap());
    assert!(partial.exists());

    let lone = crate::blobs::upload(&s, &a.token, "application/pdf", &pdf(5000, 1)).await;
    let sent = crate::blobs::upload(&s, &a.token, "application/pdf", &pdf(5000, 2)).await;
    let mut wa = s.ws(&a).await;
    wa.send(json!({"type": "send", "id": "pic", "conversation_id": conv, "attachments": [{"file_id": sent["file_id"]}]}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "pic").await["type"], "ack");

    let gone = eventually(Duration::from_secs(10), || async {
        !partial.exists()
            && download(&s, &a.token, lone["file_id"].as_str().unwrap())
                .await
                .0
                == 404
    })
    .await;
    assert!(gone, "the expired upload and the unattached file are swept");
    assert_eq!(head(&s, &a.token, &at).await.0, 404);
    let sha = lone["sha256"].as_str().unwrap();
    assert!(!s
        .dir
        .join("files")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(sha)
        .exists());
    // The file sent in a message stays.
    let (st, _) = download(&s, &b.token, sent["file_id"].as_str().unwrap()).await;
    assert_eq!(st, 200);
}

/// The per-user quota: `too_large`, for plain and resumable uploads; every user's uploads
/// count for that user only, even for bytes another user also stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_quota_is_per_user() {
    let s = TestServer::builder()
        .nodes(1)
        .config("[uploads]\nuser_quota_bytes = 10000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let one = pdf(6000, 1);
    crate::blobs::upload(&s, &a.token, "application/pdf", &one).await;
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("application/pdf".into(), pdf(6000, 2))),
            vec![],
        )
        .await;
    assert_eq!(st, 413);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "too_large");
    assert!(err["error"]["message"].as_str().unwrap().contains("quota"));
    let (st, _, _) = s
        .http_raw(
            "POST",
            "/v1/uploads",
            Some(&a.token),
            None,
            tus_headers(&[("Upload-Length", "6000")]),
        )
        .await;
    assert_eq!(st, 413);
    // Bob stores the same bytes (and more): his own quota.
    crate::blobs::upload(&s, &b.token, "application/pdf", &one).await;
    let at = create(&s, &b.token, 3000, "application/pdf").await;
    let (st, _, hs) = patch(&s, &b.token, &at, 0, &pdf(3000, 4)).await;
    assert_eq!(st, 204);
    assert!(header(&hs, "parley-file-id").is_some());
}

/// A resumable upload ends where a plain one does: a photo sent in two PATCHes is stored
/// stripped of its EXIF (GPS) and gets its thumbnail, like `POST /v1/files`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_uploaded_with_tus_is_processed_like_a_plain_upload() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let photo = crate::contract::media::jpeg_with_exif(64, 32, 1);
    let at = create(&s, &a.token, photo.len(), "image/jpeg").await;
    let half = photo.len() / 2;
    assert_eq!(patch(&s, &a.token, &at, 0, &photo[..half]).await.0, 204);
    let (st, _, hs) = patch(&s, &a.token, &at, half, &photo[half..]).await;
    assert_eq!(st, 204);
    let fid = header(&hs, "parley-file-id").unwrap().to_string();
    let (st, stored) = download(&s, &a.token, &fid).await;
    assert_eq!(st, 200);
    let has = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(!has(b"PARLEYGPS") && !has(b"Exif\0\0"), "EXIF kept");
    assert!(stored.len() < photo.len());
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}/thumbnail"),
            Some(&a.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 200);
}
