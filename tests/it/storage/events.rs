//! The event log: retraction purges content, grants, versions and reactions; hides are per
//! user; edits keep earlier versions and are idempotent; reactions count once per user.

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
            image: None,
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
        width: None,
        height: None,
        thumbnail: None,
        placeholder: None,
    }];
    store
        .append("k", 1, vec![m, msg("d1", "b", "kept", 2)].into())
        .await
        .unwrap();
    assert!(store.file_visible_to("f1", "u2").await.unwrap());
    store
        .retract(MessageEvent {
            conversation_id: "k".into(),
            event_no: 1,
            seq: 1,
            kind: EventKind::Retract,
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
    let missing = MessageEvent {
        conversation_id: "k".into(),
        event_no: 2,
        seq: 9,
        kind: EventKind::Retract,
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
        .hide(MessageEvent {
            conversation_id: "k".into(),
            event_no: 2,
            seq: 2,
            kind: EventKind::Hide,
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
    assert_eq!(store.events_since("k", "u2", 0, 10).await.unwrap().len(), 2);
    let for_u1 = store.events_since("k", "u1", 0, 10).await.unwrap();
    assert_eq!(for_u1.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
    assert!(store
        .events_since("k", "u2", 1, 10)
        .await
        .unwrap()
        .iter()
        .all(|r| r.event_no > 1));
}

fn event(event_no: u64, seq: u64, kind: EventKind, by: &str, ts: i64) -> MessageEvent {
    MessageEvent {
        conversation_id: "k".into(),
        event_no,
        seq,
        kind,
        by_user: by.into(),
        for_user: None,
        ts,
    }
}

fn key(client_id: &str, hash: &str) -> IdemKey {
    IdemKey {
        device_id: "d1".into(),
        client_id: client_id.into(),
        payload_hash: hash.into(),
    }
}

fn content(text: &str) -> EditContent {
    EditContent {
        text: Some(text.into()),
        meta: Some(format!(r#"{{"v":"{text}"}}"#)),
    }
}

pub(super) async fn edits_keep_versions_and_are_idempotent(store: &dyn Store) {
    conversation(store, "k", &["user-of-d1", "u2"]).await;
    let mut reply = msg("d1", "b", "a reply", 2);
    reply.reply_to = Some(1);
    store
        .append("k", 1, vec![msg("d1", "a", "first", 1), reply].into())
        .await
        .unwrap();
    assert_eq!(
        store.message("k", 2).await.unwrap().unwrap().reply_to,
        Some(1)
    );
    assert_eq!(
        store.message("k", 1).await.unwrap().unwrap().edited_at,
        None
    );

    let e1 = event(1, 1, EventKind::Edit, "user-of-d1", 10);
    let out = store
        .edit(e1.clone(), content("second"), key("e1", "h1"))
        .await;
    assert_eq!(out.unwrap(), EditOutcome::Applied);
    let e2 = event(2, 1, EventKind::Edit, "user-of-d1", 20);
    let out = store.edit(e2, content("third"), key("e2", "h2")).await;
    assert_eq!(out.unwrap(), EditOutcome::Applied);
    let m = store.message("k", 1).await.unwrap().unwrap();
    assert_eq!(
        (m.text.as_deref(), m.meta.as_deref(), m.edited_at),
        (Some("third"), Some(r#"{"v":"third"}"#), Some(20))
    );
    let versions = store.message_versions("k", 1).await.unwrap();
    assert_eq!(
        versions,
        vec![
            MessageVersion {
                text: Some("first".into()),
                meta: None,
                replaced_at: 10
            },
            MessageVersion {
                text: Some("second".into()),
                meta: Some(r#"{"v":"second"}"#.into()),
                replaced_at: 20
            },
        ]
    );
    // A retry is a duplicate (nothing changes); the same id for other content is refused;
    // a send's id used for an edit too.
    let again = event(3, 1, EventKind::Edit, "user-of-d1", 30);
    let out = store
        .edit(again.clone(), content("x"), key("e1", "h1"))
        .await;
    assert_eq!(out.unwrap(), EditOutcome::Duplicate { ts: 10 });
    let out = store
        .edit(again.clone(), content("x"), key("e1", "other"))
        .await;
    assert_eq!(out.unwrap(), EditOutcome::Reused);
    let out = store
        .edit(again.clone(), content("x"), key("a", "h3"))
        .await;
    assert_eq!(out.unwrap(), EditOutcome::Reused);
    assert_eq!(store.message_versions("k", 1).await.unwrap().len(), 2);
    let log = store.events_since("k", "u2", 0, 10).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|e| (e.event_no, e.kind.clone()))
            .collect::<Vec<_>>(),
        vec![(1, EventKind::Edit), (2, EventKind::Edit)]
    );

    // A reaction, then the retraction purges versions and reactions; an edit after it is Gone.
    let thumbs = EventKind::React {
        emoji: "👍".into(),
        added: true,
    };
    assert!(store.react(event(3, 1, thumbs, "u2", 31)).await.unwrap());
    store
        .retract(event(4, 1, EventKind::Retract, "user-of-d1", 40))
        .await
        .unwrap();
    assert!(store.message_versions("k", 1).await.unwrap().is_empty());
    assert!(store.reactions("k", &[1], "u2").await.unwrap().is_empty());
    let late = event(5, 1, EventKind::Edit, "user-of-d1", 50);
    let out = store.edit(late, content("y"), key("e9", "h9")).await;
    assert_eq!(out.unwrap(), EditOutcome::Gone);
    let m = store.message("k", 1).await.unwrap().unwrap();
    assert!(m.deleted && m.text.is_none());
    // Editing what does not exist is Gone too.
    let none = event(5, 9, EventKind::Edit, "user-of-d1", 50);
    let out = store.edit(none, content("y"), key("e10", "h10")).await;
    assert_eq!(out.unwrap(), EditOutcome::Gone);
}

pub(super) async fn reactions_count_once_per_user_and_emoji(store: &dyn Store) {
    conversation(store, "k", &["u1", "u2", "u3"]).await;
    let batch = vec![msg("d1", "a", "one", 1), msg("d1", "b", "two", 2)];
    store.append("k", 1, batch.into()).await.unwrap();
    let react = |n: u64, seq: u64, emoji: &str, by: &str, added: bool| {
        let kind = EventKind::React {
            emoji: emoji.into(),
            added,
        };
        event(n, seq, kind, by, n as i64)
    };
    assert!(store.react(react(1, 1, "👍", "u1", true)).await.unwrap());
    assert!(store.react(react(2, 1, "🎉", "u2", true)).await.unwrap());
    assert!(store.react(react(3, 1, "🎉", "u3", true)).await.unwrap());
    // Again: no change, not logged.
    assert!(!store.react(react(4, 1, "🎉", "u3", true)).await.unwrap());
    assert!(store.react(react(4, 2, "👍", "u2", true)).await.unwrap());
    let r = store.reactions("k", &[1, 2], "u2").await.unwrap();
    let count = |emoji: &str, count: u32, me: bool| ReactionCount {
        emoji: emoji.into(),
        count,
        me,
    };
    assert_eq!(
        r,
        vec![
            (1, vec![count("🎉", 2, true), count("👍", 1, false)]),
            (2, vec![count("👍", 1, true)]),
        ]
    );
    // Only the seqs asked for.
    assert_eq!(store.reactions("k", &[2], "u1").await.unwrap().len(), 1);
    // Taken back; taking back what is not there changes nothing.
    assert!(store.react(react(5, 1, "🎉", "u2", false)).await.unwrap());
    assert!(!store.react(react(6, 1, "🎉", "u2", false)).await.unwrap());
    let r = store.reactions("k", &[1], "u2").await.unwrap();
    // A tie goes to the emoji used first.
    assert_eq!(
        r,
        vec![(1, vec![count("👍", 1, false), count("🎉", 1, false)])]
    );
    // The log has each change once, in order, with what it was.
    let log = store.events_since("k", "u1", 0, 100).await.unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(
        log.last().map(|e| e.kind.clone()),
        Some(EventKind::React {
            emoji: "🎉".into(),
            added: false
        })
    );
    assert_eq!(
        log.iter().map(|e| e.event_no).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

/// `page_parts` (one read in SQLite, three calls by default) answers what the three reads
/// would: the page, the viewer's hides within it, and the reactions to what is shown.
pub(super) async fn page_parts_are_the_page_its_hides_and_its_reactions(store: &dyn Store) {
    conversation(store, "k", &["u1", "u2"]).await;
    let batch: Vec<_> = (1..=4)
        .map(|i| msg("d1", &format!("c{i}"), "m", i as i64))
        .collect();
    store.append("k", 1, batch.into()).await.unwrap();
    let react = |n: u64, seq: u64, by: &str| {
        let kind = EventKind::React {
            emoji: "👍".into(),
            added: true,
        };
        event(n, seq, kind, by, n as i64)
    };
    for (n, seq) in [(1, 1), (2, 2), (3, 4)] {
        assert!(store.react(react(n, seq, "u1")).await.unwrap());
    }
    let hide = MessageEvent {
        for_user: Some("u2".into()),
        ..event(4, 2, EventKind::Hide, "u2", 4)
    };
    store.hide(hide).await.unwrap();
    store
        .retract(event(5, 4, EventKind::Retract, "u1", 5))
        .await
        .unwrap();

    let p = store
        .page_parts("k", "u2", 0, u64::MAX, 10, Order::Asc)
        .await
        .unwrap();
    let seqs: Vec<u64> = p.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(p.hidden, vec![2]);
    // Seq 2 is hidden for u2 and seq 4 retracted (its reactions went with it): only seq 1.
    let reacted: Vec<u64> = p.reactions.iter().map(|(s, _)| *s).collect();
    assert_eq!(reacted, vec![1]);
    assert_eq!(p.reactions[0].1[0].count, 1);
    // Another viewer hid nothing; a page is bounded like `messages`.
    let p = store
        .page_parts("k", "u1", 0, u64::MAX, 2, Order::Asc)
        .await
        .unwrap();
    assert_eq!(p.messages.len(), 2);
    assert!(p.hidden.is_empty());
    let reacted: Vec<u64> = p.reactions.iter().map(|(s, _)| *s).collect();
    assert_eq!(reacted, vec![1, 2]);
    assert!(p.reactions[0].1[0].me);
    // Nothing there: empty parts.
    let p = store
        .page_parts("k", "u1", 10, u64::MAX, 5, Order::Asc)
        .await
        .unwrap();
    assert_eq!(p, PageParts::default());
}
