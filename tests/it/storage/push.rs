//! The push outbox: pending marks from `append`, scheduling with collapse, competing leases,
//! completion by version, retries, clears after a read elsewhere, dead targets, mute, badge.

use super::*;

fn from(user: &str, device: &str, client_id: &str) -> NewMessage {
    NewMessage {
        sender_id: user.into(),
        ..msg(device, client_id, "hi", 1)
    }
}

fn fcm() -> PushTargetRow {
    PushTargetRow {
        provider: "fcm".into(),
        token: Some("tok".into()),
        registered_at: 10,
        ..Default::default()
    }
}

pub(super) async fn outbox_schedules_collapses_leases_and_completes(store: &dyn Store) {
    for (u, d) in [("u1", "d1"), ("u2", "d2")] {
        store.create_user(user(u)).await.unwrap();
        store.create_device(device(d, u)).await.unwrap();
    }
    conversation(store, "k", &["u1", "u2"]).await;
    assert!(
        store.push_recipients("k").await.unwrap().is_empty(),
        "no targets yet"
    );
    store.set_push_target("d2", fcm()).await.unwrap();
    let r = store.push_recipients("k").await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0].device_id.as_str(),
            r[0].user_id.as_str(),
            r[0].delivered_seq
        ),
        ("d2", "u2", 0)
    );
    assert_eq!(
        store.devices_of_user("u2").await.unwrap()[0].device_id,
        "d2"
    );
    assert_eq!(store.device_cursor("d2", "k").await.unwrap(), Some(0));
    assert_eq!(store.device_cursor("d2", "nope").await.unwrap(), None);

    // append marks the conversation pending, in the same write as the messages.
    let batch = vec![from("u1", "d1", "a"), from("u1", "d1", "b")];
    store.append("k", 1, batch.into()).await.unwrap();
    assert_eq!(
        store.push_pending(10).await.unwrap(),
        vec![("k".to_string(), 2)]
    );
    let job = |seq, due_at, now| PushSchedule {
        device_id: "d2".into(),
        user_id: "u2".into(),
        seq,
        due_at,
        now,
    };
    store
        .push_schedule("k", 2, vec![job(2, 100, 50)])
        .await
        .unwrap();
    assert!(
        store.push_pending(10).await.unwrap().is_empty(),
        "scheduled marks are cleared"
    );

    // Not before it is due; then one bridge holds it until its lease ends.
    assert!(store
        .push_lease("b1", 99, 200, 10)
        .await
        .unwrap()
        .is_empty());
    let first = store.push_lease("b1", 100, 200, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].seq, first[0].kind, first[0].created_at),
        (2, PushKind::Message, 50)
    );
    assert!(
        store
            .push_lease("b2", 150, 250, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let taken = store.push_lease("b2", 201, 300, 10).await.unwrap();
    assert_eq!(
        taken.len(),
        1,
        "an expired lease is taken by another bridge"
    );

    // A newer message collapses into it while in flight: completing the old version keeps it.
    store
        .push_schedule("k", 3, vec![job(3, 300, 260)])
        .await
        .unwrap();
    store
        .push_done(&taken[0], PushDone::Delivered)
        .await
        .unwrap();
    let (queued, oldest) = store.push_queue().await.unwrap();
    assert_eq!((queued, oldest), (1, Some(260)));
    let newer = store.push_lease("b2", 300, 400, 10).await.unwrap();
    assert_eq!(
        (newer[0].seq, newer[0].version > taken[0].version),
        (3, true)
    );
    store.push_retry(&newer[0], 500, "503").await.unwrap();
    assert!(
        store
            .push_lease("b1", 450, 600, 10)
            .await
            .unwrap()
            .is_empty(),
        "retry waits"
    );
    let again = store.push_lease("b1", 500, 600, 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    store
        .push_done(&again[0], PushDone::Delivered)
        .await
        .unwrap();
    assert_eq!(store.push_queue().await.unwrap(), (0, None));

    // Read on another device: the device that shows the notification is owed a clear.
    store
        .push_clear("u2", "k", 3, "d-laptop", 700)
        .await
        .unwrap();
    let clear = store.push_lease("b1", 700, 800, 10).await.unwrap();
    assert_eq!((clear.len(), clear[0].kind), (1, PushKind::Clear));
    store
        .push_done(&clear[0], PushDone::Delivered)
        .await
        .unwrap();
    store
        .push_clear("u2", "k", 3, "d-laptop", 800)
        .await
        .unwrap();
    assert!(
        store
            .push_lease("b1", 900, 1000, 10)
            .await
            .unwrap()
            .is_empty(),
        "cleared once"
    );
    // The reading device itself is not sent a clear.
    store
        .push_schedule("k", 3, vec![job(3, 1000, 1000)])
        .await
        .unwrap();
    let j = store.push_lease("b1", 1000, 1100, 10).await.unwrap();
    store.push_done(&j[0], PushDone::Delivered).await.unwrap();
    store.push_clear("u2", "k", 3, "d2", 1200).await.unwrap();
    assert!(store
        .push_lease("b1", 1200, 1300, 10)
        .await
        .unwrap()
        .is_empty());
}

pub(super) async fn dead_targets_mute_and_badge(store: &dyn Store) {
    for (u, d) in [("u1", "d1"), ("u2", "d2")] {
        store.create_user(user(u)).await.unwrap();
        store.create_device(device(d, u)).await.unwrap();
    }
    conversation(store, "k", &["u1", "u2"]).await;
    let target = PushTargetRow {
        provider: "apns".into(),
        token: Some("abcd".into()),
        payload: Some("full".into()),
        registered_at: 5_000,
        ..Default::default()
    };
    store.set_push_target("d2", target.clone()).await.unwrap();
    let batch = vec![
        from("u1", "d1", "a"),
        from("u1", "d1", "b"),
        from("u2", "d2", "c"),
    ];
    store.append("k", 1, batch.into()).await.unwrap();
    assert_eq!(
        store.unread_total("u2").await.unwrap(),
        2,
        "only others' messages count"
    );
    assert_eq!(store.unread_total("u1").await.unwrap(), 1);
    let job = PushSchedule {
        device_id: "d2".into(),
        user_id: "u2".into(),
        seq: 2,
        due_at: 0,
        now: 0,
    };
    store.push_schedule("k", 3, vec![job]).await.unwrap();

    // A provider says the token died before it was registered (again): it stays.
    assert!(!store
        .disable_push_target("d2", "Unregistered", 9_000, Some(4_000))
        .await
        .unwrap());
    assert!(store
        .device("d2")
        .await
        .unwrap()
        .unwrap()
        .push
        .unwrap()
        .disabled
        .is_none());
    assert!(store
        .disable_push_target("d2", "Unregistered", 9_000, Some(6_000))
        .await
        .unwrap());
    let dead = store.device("d2").await.unwrap().unwrap().push.unwrap();
    assert_eq!(dead.disabled, Some((9_000, "Unregistered".to_string())));
    assert_eq!(dead.payload.as_deref(), Some("full"));
    assert!(store.push_recipients("k").await.unwrap().is_empty());
    assert_eq!(
        store.push_queue().await.unwrap().0,
        0,
        "its jobs are dropped"
    );
    assert!(!store
        .disable_push_target("d2", "again", 9_500, None)
        .await
        .unwrap());
    // Registering again brings it back.
    store.set_push_target("d2", target).await.unwrap();
    assert!(store
        .device("d2")
        .await
        .unwrap()
        .unwrap()
        .push
        .unwrap()
        .disabled
        .is_none());
    assert_eq!(store.push_recipients("k").await.unwrap().len(), 1);

    assert_eq!(store.muted_until("u2", "k").await.unwrap(), 0);
    store.set_muted_until("u2", "k", 123_456).await.unwrap();
    assert_eq!(store.muted_until("u2", "k").await.unwrap(), 123_456);
    assert_eq!(store.muted_until("u1", "k").await.unwrap(), 0);
}

/// `append` says whether it left a pending mark (the conversation actor schedules push only
/// then): always once someone can be notified; without any target a store may skip the mark
/// (SQLite does), and then nothing is pending.
pub(super) async fn append_reports_its_push_mark(store: &dyn Store) {
    for (u, d) in [("u1", "d1"), ("u2", "d2")] {
        store.create_user(user(u)).await.unwrap();
        store.create_device(device(d, u)).await.unwrap();
    }
    conversation(store, "k", &["u1", "u2"]).await;
    let a = store
        .append("k", 1, vec![from("u1", "d1", "a")].into())
        .await
        .unwrap();
    if !a.push_pending {
        assert!(store.push_pending(10).await.unwrap().is_empty());
    }
    store.push_schedule("k", 1, Vec::new()).await.unwrap();
    store.set_push_target("d2", fcm()).await.unwrap();
    let a = store
        .append("k", 2, vec![from("u1", "d1", "b")].into())
        .await
        .unwrap();
    assert!(a.push_pending);
    assert_eq!(a.len(), 1, "it derefs to the outcomes");
    assert_eq!(
        store.push_pending(10).await.unwrap(),
        vec![("k".to_string(), 2)]
    );
    // A duplicate stores nothing and marks nothing new.
    store.push_schedule("k", 2, Vec::new()).await.unwrap();
    let a = store
        .append("k", 3, vec![from("u1", "d1", "b")].into())
        .await
        .unwrap();
    assert!(!a.push_pending);
    assert!(store.push_pending(10).await.unwrap().is_empty());
}
