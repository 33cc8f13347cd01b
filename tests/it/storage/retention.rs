//! Retention: the period, the purge of the oldest messages, what senders are told, and the
//! walk over every conversation.

use super::*;

pub(super) async fn expiry_purges_a_prefix_and_keeps_the_last_seq(store: &dyn Store) {
    store.create_user(user("u1")).await.unwrap();
    store.create_user(user("u2")).await.unwrap();
    store.create_device(device("d1", "u1")).await.unwrap();
    store.create_device(device("d2", "u2")).await.unwrap();
    conversation(store, "k", &["u1", "u2"]).await;
    assert_eq!(store.retention("k").await.unwrap(), Retention::default());
    store.set_retention("k", Some(60)).await.unwrap();
    assert_eq!(store.retention("k").await.unwrap().secs, Some(60));
    store.set_retention("k", None).await.unwrap();
    assert_eq!(store.retention("k").await.unwrap().secs, None);

    let mut with_file = msg("d1", "c", "3", 30);
    with_file.attachments = vec![Attachment {
        file_id: "f1".into(),
        size: 3,
        content_type: "image/png".into(),
        sha256: "ab".into(),
        width: None,
        height: None,
        thumbnail: None,
        placeholder: None,
    }];
    let batch = vec![
        msg("d1", "a", "1", 10),
        msg("d1", "b", "2", 20),
        with_file,
        msg("d1", "d", "4", 40),
    ];
    store.append("k", 1, batch.into()).await.unwrap();
    // d2 holds seq 1 only.
    let dev = CursorUpdate::DeviceDelivered {
        device_id: "d2".into(),
        conversation_id: "k".into(),
        seq: 1,
    };
    store.advance_cursors(vec![dev]).await.unwrap();

    // Before ts 35, at most 2 per step: 1 and 2, then 3 (4 is newer and stops the purge).
    let e = store.expire("k", 35, 2).await.unwrap();
    assert_eq!(e.through, 2);
    assert_eq!(
        e.messages.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(e.messages[0].1, "user-of-d1");
    let e = store.expire("k", 35, 2).await.unwrap();
    assert_eq!((e.through, e.file_ids.clone()), (3, vec!["f1".to_string()]));
    assert!(store.expire("k", 35, 2).await.unwrap().messages.is_empty());
    assert_eq!(store.retention("k").await.unwrap().expired_through, 3);
    let left = store
        .messages("k", 0, u64::MAX, 10, Order::Asc)
        .await
        .unwrap();
    assert_eq!(left.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4]);

    // Everything expired: the last seq stays 4 for the actor and for devices.
    store.expire("k", i64::MAX, 10).await.unwrap();
    assert!(store
        .messages("k", 0, u64::MAX, 10, Order::Asc)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .load_conversation("k")
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        4
    );
    let dcs = store.device_conversations("d2", "u2").await.unwrap();
    assert_eq!((dcs[0].last_seq, dcs[0].delivered_seq), (4, 1));

    let mut devices = store.member_devices("k").await.unwrap();
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let got: Vec<_> = devices
        .iter()
        .map(|d| {
            (
                d.device_id.as_str(),
                d.user_id.as_str(),
                d.delivered_seq,
                d.created_at,
            )
        })
        .collect();
    assert_eq!(got, vec![("d1", "u1", 0, 2), ("d2", "u2", 1, 2)]);
}

pub(super) async fn undeliverable_rows_merge_and_clear(store: &dyn Store) {
    let row = |from, to, lost, ts| Undeliverable {
        user_id: "s".into(),
        conversation_id: "k".into(),
        device_id: "d2".into(),
        recipient_id: "u2".into(),
        from_seq: from,
        to_seq: to,
        lost,
        ts,
    };
    store
        .add_undeliverable(vec![row(3, 5, 2, 100)])
        .await
        .unwrap();
    store
        .add_undeliverable(vec![row(7, 9, 3, 200)])
        .await
        .unwrap();
    assert_eq!(
        store.undeliverable("s").await.unwrap(),
        vec![row(3, 9, 5, 200)]
    );
    assert!(store.undeliverable("other").await.unwrap().is_empty());
    // Cleared only up to what the client saw.
    assert_eq!(store.clear_undeliverable("s", 150).await.unwrap(), 0);
    assert_eq!(store.clear_undeliverable("s", 200).await.unwrap(), 1);
    assert!(store.undeliverable("s").await.unwrap().is_empty());
}

pub(super) async fn the_walk_visits_every_conversation_once(store: &dyn Store) {
    let ids: Vec<String> = (0..7).map(|i| format!("conv-{i}")).collect();
    for id in &ids {
        conversation(store, id, &["u1"]).await;
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = store.conversation_ids(&after, 3).await.unwrap();
        seen.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 3 => after = last.clone(),
            _ => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ids);
}
