//! v1.1: resumable uploads' rows, a user's bytes in use, and the walk over old files.

use super::*;

fn upload(id: &str, expires_at: i64) -> UploadRow {
    UploadRow {
        upload_id: id.into(),
        user_id: "u1".into(),
        device_id: "d1".into(),
        length: 1000,
        content_type: "image/png".into(),
        metadata: "filetype aW1hZ2UvcG5n".into(),
        created_at: 10,
        expires_at,
        file_id: None,
    }
}

pub async fn uploads_are_kept_completed_and_expire(store: &dyn Store) {
    let now = 1_800_000_000_000i64;
    store.create_upload(upload("up1", now - 1)).await.unwrap();
    store
        .create_upload(upload("up2", now + 60_000))
        .await
        .unwrap();
    assert_eq!(
        store.upload("up1").await.unwrap(),
        Some(upload("up1", now - 1))
    );
    assert!(store.upload("nope").await.unwrap().is_none());
    store.complete_upload("up2", "f9").await.unwrap();
    assert_eq!(
        store
            .upload("up2")
            .await
            .unwrap()
            .unwrap()
            .file_id
            .as_deref(),
        Some("f9")
    );
    let expired = store.expired_uploads(now, 100).await.unwrap();
    assert_eq!(
        expired
            .iter()
            .map(|u| u.upload_id.as_str())
            .collect::<Vec<_>>(),
        ["up1"]
    );
    store.delete_upload("up1").await.unwrap();
    assert!(store.upload("up1").await.unwrap().is_none());
    assert!(store.expired_uploads(now, 100).await.unwrap().is_empty());
}

fn file(id: &str, user: &str, size: u64, created_at: i64) -> FileRow {
    FileRow {
        file_id: id.into(),
        uploader_id: user.into(),
        size,
        content_type: "text/plain".into(),
        sha256: format!("{id:0>64}"),
        created_at,
        image: None,
    }
}

pub async fn quota_bytes_and_the_walk_over_old_unattached_files(store: &dyn Store) {
    let t = 1_800_000_000_000i64;
    conversation(store, "c", &["u1", "u2"]).await;
    for (id, size, at) in [("fa", 10, t - 10), ("fb", 20, t - 5), ("fc", 40, t + 5)] {
        store.create_file(file(id, "u1", size, at)).await.unwrap();
    }
    store.create_file(file("fd", "u2", 7, t - 5)).await.unwrap();
    assert_eq!(store.user_file_bytes("u1").await.unwrap(), 70);
    assert_eq!(store.user_file_bytes("u3").await.unwrap(), 0);
    // fb is sent in a message (a grant); avatars are granted the same way.
    let mut m = msg("d1", "a", "x", 1);
    m.attachments = vec![Attachment {
        file_id: "fb".into(),
        size: 20,
        content_type: "text/plain".into(),
        sha256: format!("{:0>64}", "fb"),
        width: None,
        height: None,
        thumbnail: None,
        placeholder: None,
    }];
    store.append("c", 1, vec![m].into()).await.unwrap();

    // Walk in pages of one: every old file no message refers to comes out (a backend may
    // also hand out granted ones: the sweep's orphaned_blobs skips those).
    let (mut after, mut seen) = (String::new(), Vec::new());
    for _ in 0..1000 {
        let (ids, next) = store.old_files(t, &after, 1).await.unwrap();
        seen.extend(ids);
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    seen.retain(|f| f != "fb");
    assert_eq!(seen, ["fa", "fd"]);
    let gone = store
        .orphaned_blobs(vec!["fa".into(), "fb".into()])
        .await
        .unwrap();
    assert_eq!(gone, [format!("{:0>64}", "fa")]);
    assert_eq!(store.user_file_bytes("u1").await.unwrap(), 60);
}
