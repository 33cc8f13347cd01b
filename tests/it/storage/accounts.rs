//! Users, devices and push targets.

use super::*;

pub(super) async fn usernames_are_unique(store: &dyn Store) {
    let u = |id: &str| UserRow {
        user_id: id.into(),
        username: "same".into(),
        display_name: None,
        password_hash: "h".into(),
        created_at: 1,
    };
    store.create_user(u("a")).await.unwrap();
    assert!(matches!(
        store.create_user(u("b")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.user_by_name("same").await.unwrap().unwrap().user_id,
        "a"
    );
}

pub(super) async fn users_devices_and_push_targets(store: &dyn Store) {
    store.create_user(user("u1")).await.unwrap();
    let got = store.user_by_id("u1").await.unwrap().unwrap();
    assert_eq!(
        (
            got.username.as_str(),
            got.display_name.as_deref(),
            got.password_hash.as_str()
        ),
        ("name-u1", Some("U1"), "hash-u1")
    );
    assert!(store.user_by_id("nobody").await.unwrap().is_none());
    assert!(store.user_by_name("nobody").await.unwrap().is_none());
    // A device created after messages were sent starts at the conversation's end.
    conversation(store, "k", &["u1"]).await;
    let batch: Vec<NewMessage> = (1..=3)
        .map(|i| msg("dx", &format!("c{i}"), "x", i))
        .collect();
    store.append("k", 1, batch.into()).await.unwrap();
    store.create_device(device("d1", "u1")).await.unwrap();
    let dcs = store.device_conversations("d1", "u1").await.unwrap();
    assert_eq!(
        dcs.iter()
            .map(|d| (d.conversation_id.as_str(), d.delivered_seq, d.last_seq))
            .collect::<Vec<_>>(),
        vec![("k", 3, 3)]
    );
    assert_eq!(store.device("d1").await.unwrap(), Some(device("d1", "u1")));
    assert!(store.device("nope").await.unwrap().is_none());
    // Push targets: set, replaced, and refused for an unknown device.
    let fcm = PushTargetRow {
        provider: "fcm".into(),
        token: Some("tok".into()),
        registered_at: 3,
        ..Default::default()
    };
    store.set_push_target("d1", fcm.clone()).await.unwrap();
    assert_eq!(store.device("d1").await.unwrap().unwrap().push, Some(fcm));
    let web = PushTargetRow {
        provider: "webpush".into(),
        endpoint: Some("https://push.example/x".into()),
        p256dh: Some("BP".into()),
        auth: Some("au".into()),
        payload: Some("id_only".into()),
        registered_at: 4,
        ..Default::default()
    };
    store.set_push_target("d1", web.clone()).await.unwrap();
    assert_eq!(
        store.device("d1").await.unwrap().unwrap().push,
        Some(web.clone())
    );
    assert_eq!(
        store.set_push_target("nope", web).await.unwrap_err(),
        StoreError::NotFound
    );
    store.check_writable().await.unwrap();
}
