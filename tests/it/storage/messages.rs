//! Appends (numbered, atomic, conditional, idempotent), pages, cursors, idempotency expiry.

use super::*;

pub(super) async fn append_is_numbered_atomic_and_conditional(store: &dyn Store) {
    conversation(store, "k", &["u1"]).await;
    let out = store
        .append(
            "k",
            1,
            vec![
                msg("d1", "a", "1", 10),
                msg("d1", "b", "2", 11),
                msg("d1", "c", "3", 12),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(out.iter().map(stored).collect::<Vec<_>>(), vec![1, 2, 3]);
    // A batch that collides with a taken seq fails whole: nothing of it is stored.
    let err = store
        .append(
            "k",
            3,
            vec![msg("d1", "x", "x", 13), msg("d1", "y", "y", 14)].into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let all = store
        .messages("k", 0, u64::MAX, 100, Order::Asc)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Conflicted ids were not recorded as sent: they append fine afterwards.
    let out = store
        .append("k", 4, vec![msg("d1", "x", "x", 15)].into())
        .await
        .unwrap();
    assert_eq!(stored(&out[0]), 4);
}

pub(super) async fn duplicates_return_the_original_and_consume_no_seq(store: &dyn Store) {
    conversation(store, "k", &["u1"]).await;
    store
        .append("k", 1, vec![msg("d1", "a", "first", 10)].into())
        .await
        .unwrap();
    let out = store
        .append(
            "k",
            2,
            vec![
                msg("d1", "a", "first", 20),
                msg("d1", "b", "new", 21),
                msg("d1", "b", "new", 21),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(
        out[0],
        AppendOutcome::Duplicate {
            conversation_id: "k".into(),
            seq: 1,
            message_id: "m-d1-a".into(),
            ts: 10
        }
    );
    assert_eq!(stored(&out[1]), 2);
    assert!(
        matches!(out[2], AppendOutcome::Duplicate { seq: 2, .. }),
        "{:?}",
        out[2]
    );
    // The same client id from another device is another message.
    let out = store
        .append("k", 3, vec![msg("d2", "a", "other device", 30)].into())
        .await
        .unwrap();
    assert_eq!(stored(&out[0]), 3);
    let all = store
        .messages("k", 0, u64::MAX, 100, Order::Asc)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].text.as_deref(), Some("first"));
}

pub(super) async fn pages_both_ways(store: &dyn Store) {
    conversation(store, "k", &["u1"]).await;
    let batch: Vec<NewMessage> = (1..=10)
        .map(|i| msg("d1", &format!("c{i}"), &format!("{i}"), i))
        .collect();
    store.append("k", 1, batch.into()).await.unwrap();
    let fwd = store.messages("k", 3, 8, 100, Order::Asc).await.unwrap();
    assert_eq!(
        fwd.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );
    let back = store.messages("k", 0, 8, 2, Order::Desc).await.unwrap();
    assert_eq!(back.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![7, 6]);
    let first = store
        .messages("k", 0, u64::MAX, 3, Order::Asc)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(store
        .messages("other", 0, u64::MAX, 3, Order::Asc)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .message("k", 5)
            .await
            .unwrap()
            .unwrap()
            .text
            .as_deref(),
        Some("5")
    );
    assert!(store.message("k", 11).await.unwrap().is_none());
    let senders = store.senders_between("k", 2, 4).await.unwrap();
    assert_eq!(senders, vec!["user-of-d1".to_string()]);
}

pub(super) async fn cursors_never_move_backwards(store: &dyn Store) {
    store
        .create_user(UserRow {
            user_id: "u1".into(),
            username: "u1".into(),
            display_name: None,
            password_hash: "h".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .create_device(DeviceRow {
            device_id: "d1".into(),
            user_id: "u1".into(),
            name: None,
            created_at: 1,
            push: None,
            refresh_hash: None,
            last_seen_at: None,
        })
        .await
        .unwrap();
    conversation(store, "k", &["u1"]).await;
    let batch: Vec<NewMessage> = (1..=6)
        .map(|i| msg("d9", &format!("c{i}"), "x", i))
        .collect();
    store.append("k", 1, batch.into()).await.unwrap();
    let dev = |seq| CursorUpdate::DeviceDelivered {
        device_id: "d1".into(),
        conversation_id: "k".into(),
        seq,
    };
    let read = |seq| CursorUpdate::UserRead {
        user_id: "u1".into(),
        conversation_id: "k".into(),
        seq,
    };
    store.advance_cursors(vec![dev(5), read(4)]).await.unwrap();
    store.advance_cursors(vec![dev(3), read(2)]).await.unwrap();
    let dcs = store.device_conversations("d1", "u1").await.unwrap();
    assert_eq!(dcs.len(), 1);
    assert_eq!(
        (dcs[0].delivered_seq, dcs[0].read_seq, dcs[0].last_seq),
        (5, 4, 6)
    );
    let state = store.load_conversation("k").await.unwrap().unwrap();
    assert_eq!(state.members[0].read_seq, 4);
    assert!(
        state.members[0].delivered_seq >= 4,
        "read implies delivered"
    );
    assert_eq!(store.count_unread("k", "u1", 4).await.unwrap(), 2);
}

pub(super) async fn idempotency_keys_expire(store: &dyn Store) {
    conversation(store, "k", &["u1"]).await;
    if store.idempotency_expires_by_ttl() {
        // ScyllaDB: keys carry a TTL (the suite's store is opened with 2 s) and
        // `expire_idempotency` has nothing to do.
        store
            .append("k", 1, vec![msg("d1", "old", "x", 1_000)].into())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
        store
            .append("k", 2, vec![msg("d1", "new", "y", 9_000)].into())
            .await
            .unwrap();
        let out = store
            .append(
                "k",
                3,
                vec![msg("d1", "old", "x", 10_000), msg("d1", "new", "y", 10_000)].into(),
            )
            .await
            .unwrap();
        assert_eq!(stored(&out[0]), 3, "an expired key is forgotten");
        assert!(matches!(out[1], AppendOutcome::Duplicate { seq: 2, .. }));
        return;
    }
    store
        .append("k", 1, vec![msg("d1", "old", "x", 1_000)].into())
        .await
        .unwrap();
    store
        .append("k", 2, vec![msg("d1", "new", "y", 9_000)].into())
        .await
        .unwrap();
    assert_eq!(store.expire_idempotency(5_000).await.unwrap(), 1);
    // The expired key is forgotten: the same id is a new message now; the kept one is not.
    let out = store
        .append(
            "k",
            3,
            vec![msg("d1", "old", "x", 10_000), msg("d1", "new", "y", 10_000)].into(),
        )
        .await
        .unwrap();
    assert_eq!(stored(&out[0]), 3);
    assert!(matches!(out[1], AppendOutcome::Duplicate { seq: 2, .. }));
}

pub(super) async fn a_reused_client_id_with_other_content_is_refused(store: &dyn Store) {
    conversation(store, "k", &["u1"]).await;
    conversation(store, "other", &["u1"]).await;
    store
        .append("k", 1, vec![msg("d1", "a", "first", 10)].into())
        .await
        .unwrap();
    let out = store
        .append(
            "k",
            2,
            vec![
                msg("d1", "a", "different text", 20),
                msg("d1", "a", "first", 21),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert_eq!(
        out[0],
        AppendOutcome::Reused {
            conversation_id: "k".into(),
            seq: 1
        }
    );
    assert!(
        matches!(out[1], AppendOutcome::Duplicate { seq: 1, .. }),
        "{:?}",
        out[1]
    );
    // The same id and text in another conversation is another payload too.
    let out = store
        .append("other", 1, vec![msg("d1", "a", "first", 30)].into())
        .await
        .unwrap();
    assert!(
        matches!(out[0], AppendOutcome::Reused { seq: 1, .. }),
        "{:?}",
        out[0]
    );
    let stored = store
        .messages("k", 0, u64::MAX, 10, Order::Asc)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "nothing stored for a reused id");
}
