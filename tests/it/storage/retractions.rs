//! Retraction purges content and grants; hides are per user; the log serves both.

use super::*;

pub(super) async fn retraction_purges_content(store: &dyn Store) {
    conversation(store, "k", &["u1", "u2"]).await;
    store
        .create_file(FileRow {
            file_id: "f1".into(),
            uploader_id: "user-of-d1".into(),
            size: 3,
            content_type: "text/plain".into(),
            sha256: "abcdef".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    let mut m = msg("d1", "a", "secret", 1);
    m.meta = Some(r#"{"k":"secret"}"#.into());
    m.attachments = vec![Attachment {
        file_id: "f1".into(),
        size: 3,
        content_type: "text/plain".into(),
        sha256: "abcdef".into(),
    }];
    store
        .append("k", 1, vec![m, msg("d1", "b", "kept", 2)].into())
        .await
        .unwrap();
    assert!(store.file_visible_to("f1", "u2").await.unwrap());
    store
        .retract(Retraction {
            conversation_id: "k".into(),
            event_no: 1,
            seq: 1,
            scope: DeleteScope::Everyone,
            by_user: "u1".into(),
            for_user: None,
            ts: 5,
        })
        .await
        .unwrap();
    let gone = store.message("k", 1).await.unwrap().unwrap();
    assert!(gone.deleted);
    assert_eq!(
        (gone.text, gone.meta, gone.attachments.len()),
        (None, None, 0)
    );
    assert_eq!(gone.deleted_by.as_deref(), Some("u1"));
    assert!(
        !store.file_visible_to("f1", "u2").await.unwrap(),
        "grant survives retraction"
    );
    assert_eq!(
        store.orphaned_blobs(vec!["f1".into()]).await.unwrap(),
        vec!["abcdef".to_string()]
    );
    assert!(store.file("f1").await.unwrap().is_none());
    assert_eq!(
        store
            .message("k", 2)
            .await
            .unwrap()
            .unwrap()
            .text
            .as_deref(),
        Some("kept")
    );
    // Retracting what does not exist is NotFound.
    let missing = Retraction {
        conversation_id: "k".into(),
        event_no: 2,
        seq: 9,
        scope: DeleteScope::Everyone,
        by_user: "u1".into(),
        for_user: None,
        ts: 6,
    };
    assert_eq!(
        store.retract(missing).await.unwrap_err(),
        StoreError::NotFound
    );
    // Hides are per user; the log carries both kinds to the right users.
    store
        .hide(Retraction {
            conversation_id: "k".into(),
            event_no: 2,
            seq: 2,
            scope: DeleteScope::Me,
            by_user: "u2".into(),
            for_user: Some("u2".into()),
            ts: 7,
        })
        .await
        .unwrap();
    assert_eq!(store.hidden_seqs("u2", "k", 0, 10).await.unwrap(), vec![2]);
    assert!(store
        .hidden_seqs("u1", "k", 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .retractions_since("k", "u2", 0, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let for_u1 = store.retractions_since("k", "u1", 0, 10).await.unwrap();
    assert_eq!(for_u1.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
    assert!(store
        .retractions_since("k", "u2", 1, 10)
        .await
        .unwrap()
        .iter()
        .all(|r| r.event_no > 1));
}
