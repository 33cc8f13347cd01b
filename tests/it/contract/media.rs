//! v1.1 media (issue 13, items 1 and 4): images stripped of EXIF (GPS) and turned upright,
//! thumbnails and placeholders, a decompression bomb refused, uploads served so that none
//! runs as a page of the origin, and short-lived signed URLs (checked by every node).

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A JPEG of `w`x`h` with an APP1 Exif segment: orientation `orientation` and a GPS IFD whose
/// map datum is the marker `PARLEYGPS` (and latitude ref "N").
pub fn jpeg_with_exif(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 60]));
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&img)
        .unwrap();
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    let entry = |t: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&ty.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value);
    };
    // IFD0 at 8: orientation and the GPS IFD pointer (IFD0 is 30 bytes: GPS IFD at 38).
    tiff.extend_from_slice(&2u16.to_le_bytes());
    let o = orientation.to_le_bytes();
    entry(&mut tiff, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(&mut tiff, 0x8825, 4, 1, 38u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 38 (30 bytes): latitude ref "N", map datum at 68.
    tiff.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut tiff, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut tiff, 0x0012, 2, 10, 68u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(b"PARLEYGPS\0");
    let payload = [&b"Exif\0\0"[..], &tiff].concat();
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    app1.extend_from_slice(&payload);
    [&plain[..2], &app1, &plain[2..]].concat()
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn upload(s: &TestServer, dev: &Dev, path: &str, ct: &str, bytes: Vec<u8>) -> (u16, Value) {
    let (st, body, _) = s
        .http_raw(
            "POST",
            path,
            Some(&dev.token),
            Some((ct.into(), bytes)),
            vec![],
        )
        .await;
    (st, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn fetch(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
) -> (u16, Vec<u8>, Vec<(String, String)>) {
    s.http_raw("GET", path, token, None, vec![]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_lose_gps_turn_upright_and_get_a_thumbnail() {
    let s = TestServer::builder().start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let conv = s.direct(&a, &b).await;
    let photo = jpeg_with_exif(64, 32, 6);
    assert!(has(&photo, b"PARLEYGPS"));

    let (st, info) = upload(&s, &a, "/v1/files", "image/jpeg", photo.clone()).await;
    assert_eq!(st, 201, "{info}");
    let fid = info["file_id"].as_str().unwrap().to_string();
    // Orientation 6 (rotate 90 degrees): stored upright, dimensions swapped.
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(32), Some(64))
    );
    assert_eq!(info["content_type"], "image/jpeg");
    assert_eq!(info["thumbnail"], format!("/v1/files/{fid}/thumbnail"));
    assert!(
        info["placeholder"].as_str().is_some_and(|p| p.len() >= 8),
        "{info}"
    );
    let (st, stored, _) = fetch(&s, &format!("/v1/files/{fid}"), Some(&a.token)).await;
    assert_eq!(st, 200);
    assert_eq!(info["size"], stored.len() as u64);
    assert!(
        !has(&stored, b"PARLEYGPS") && !has(&stored, b"Exif\0\0"),
        "EXIF kept"
    );
    let img = image::load_from_memory(&stored).unwrap();
    assert_eq!((img.width(), img.height()), (32, 64));

    // Asked for, the original is kept byte for byte (GPS and all).
    let (st, orig) = upload(
        &s,
        &a,
        "/v1/files?keep_original=true",
        "image/jpeg",
        photo.clone(),
    )
    .await;
    assert_eq!(st, 201, "{orig}");
    let (_, kept, _) = fetch(
        &s,
        &format!("/v1/files/{}", orig["file_id"].as_str().unwrap()),
        Some(&a.token),
    )
    .await;
    assert_eq!(kept, photo);
    assert_eq!(
        (orig["width"].as_u64(), orig["height"].as_u64()),
        (Some(32), Some(64))
    );

    // The thumbnail follows the file's access rule.
    let thumb = format!("/v1/files/{fid}/thumbnail");
    let (st, t, hs) = fetch(&s, &thumb, Some(&a.token)).await;
    assert_eq!((st, header(&hs, "content-type")), (200, Some("image/jpeg")));
    assert!(image::load_from_memory(&t).is_ok());
    assert_eq!(
        fetch(&s, &thumb, Some(&b.token)).await.0,
        403,
        "not sent to bob yet"
    );
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    wa.send(json!({"type": "send", "id": "pic", "conversation_id": conv, "attachments": [{"file_id": fid}]}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "pic").await["type"], "ack");
    let m = wb.next_type("message").await;
    let att = &m["attachments"][0];
    assert_eq!(
        (att["width"].as_u64(), att["height"].as_u64()),
        (Some(32), Some(64))
    );
    assert_eq!(att["thumbnail"], info["thumbnail"]);
    assert_eq!(att["placeholder"], info["placeholder"]);
    assert_eq!(fetch(&s, &thumb, Some(&b.token)).await.0, 200);
    assert_eq!(
        fetch(&s, &thumb, Some(&c.token)).await.0,
        403,
        "carol is no member"
    );

    // A file that is not an image has no thumbnail, and null image fields.
    let (_, doc) = upload(&s, &a, "/v1/files", "text/plain", b"hello".to_vec()).await;
    assert_eq!(
        (doc["width"].clone(), doc["thumbnail"].clone()),
        (Value::Null, Value::Null)
    );
    let path = format!("/v1/files/{}/thumbnail", doc["file_id"].as_str().unwrap());
    assert_eq!(fetch(&s, &path, Some(&a.token)).await.0, 404);
    // Processing is timed (on whichever nodes took the uploads).
    let mut processed = 0.0;
    for _ in 0..s.node_count() {
        let (_, text, _) = fetch(&s, "/metrics", None).await;
        let text = String::from_utf8(text).unwrap();
        processed += text
            .lines()
            .find_map(|l| l.strip_prefix("parley_image_process_seconds_count "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    assert!(processed >= 2.0, "{processed} images timed");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let body = [&kind[..], data].concat();
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_too_large_and_the_node_serves_on() {
    let s = TestServer::builder().start();
    let a = s.user("alice").await;
    // A valid PNG that declares 100000 x 100000 RGBA pixels (40 GB decoded) in a few bytes.
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let bomb = [
        &b"\x89PNG\r\n\x1a\n"[..],
        &chunk(b"IHDR", &ihdr),
        &chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        &chunk(b"IEND", &[]),
    ]
    .concat();
    let (st, v) = upload(&s, &a, "/v1/files", "image/png", bomb).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{v}"
    );
    // Also past the pixel budget but within the dimension limit: 10000 x 10000.
    ihdr[0..8].copy_from_slice(&[0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10]);
    let bomb = [
        &b"\x89PNG\r\n\x1a\n"[..],
        &chunk(b"IHDR", &ihdr),
        &chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
        &chunk(b"IEND", &[]),
    ]
    .concat();
    let (st, v) = upload(&s, &a, "/v1/files", "image/png", bomb).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{v}"
    );
    assert_eq!(readyz(&s.pick()), 200);
    let (st, v) = upload(&s, &a, "/v1/files", "image/png", test_png(20, 10)).await;
    assert_eq!((st, v["width"].as_u64()), (201, Some(20)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_served_as_attachments_unless_safe_media() {
    let s = TestServer::builder().start();
    let a = s.user("alice").await;
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let (st, v) = upload(&s, &a, "/v1/files", "text/html", html).await;
    assert_eq!(st, 201, "{v}");
    let (st, _, hs) = fetch(
        &s,
        &format!("/v1/files/{}", v["file_id"].as_str().unwrap()),
        Some(&a.token),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        header(&hs, "content-disposition").is_some_and(|d| d.starts_with("attachment")),
        "{hs:?}"
    );
    assert_eq!(header(&hs, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&hs, "content-security-policy"), Some("sandbox"));

    let (_, v) = upload(&s, &a, "/v1/files", "image/png", test_png(12, 12)).await;
    let (st, _, hs) = fetch(
        &s,
        &format!("/v1/files/{}", v["file_id"].as_str().unwrap()),
        Some(&a.token),
    )
    .await;
    assert_eq!((st, header(&hs, "content-type")), (200, Some("image/png")));
    assert_eq!(
        header(&hs, "content-disposition"),
        None,
        "images are shown inline"
    );
    assert_eq!(header(&hs, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&hs, "content-security-policy"), Some("sandbox"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_work_without_a_token_on_every_node_until_they_expire() {
    let s = TestServer::builder()
        .config("[media]\nurl_ttl_secs = 2")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let png = test_png(30, 20);
    let (_, v) = upload(&s, &a, "/v1/files", "image/png", png.clone()).await;
    let fid = v["file_id"].as_str().unwrap().to_string();
    let (st, bytes, _) = s
        .http_raw(
            "POST",
            &format!("/v1/files/{fid}/url"),
            Some(&a.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 200);
    let signed: Value = serde_json::from_slice(&bytes).unwrap();
    let url = signed["url"].as_str().unwrap().to_string();
    let thumb = signed["thumbnail_url"].as_str().unwrap().to_string();
    assert!(!url.contains(&a.token) && url.contains("sig="), "{url}");
    let left = signed["expires_at"].as_i64().unwrap() - now_ms();
    assert!((0..=2000).contains(&left), "{left}");
    // Each request goes to the next node (3-node mode): every node accepts it.
    for _ in 0..s.node_count() {
        let (st, body, _) = fetch(&s, &url, None).await;
        assert_eq!((st, body == png), (200, true));
        assert_eq!(fetch(&s, &thumb, None).await.0, 200);
    }
    // Tampered: another signature, a later expiry, another user, another file.
    let (base, sig) = url.split_once("&sig=").unwrap();
    let mut bad_sig = sig.to_string();
    bad_sig.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
    let exp = signed["expires_at"].as_i64().unwrap();
    let tampered = [
        format!("{base}&sig={bad_sig}"),
        url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 60_000)),
        url.replace(&a.user_id, &b.user_id),
        url.replace(&fid, "other"),
    ];
    for t in &tampered {
        let (st, body, _) = fetch(&s, t, None).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{t}"
        );
    }
    // Bob may not get a URL for a file he may not read.
    let (st, _, _) = s
        .http_raw(
            "POST",
            &format!("/v1/files/{fid}/url"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 403);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(fetch(&s, &url, None).await.0, 401, "expired");
}
