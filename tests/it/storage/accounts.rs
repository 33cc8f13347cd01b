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

/// v1.1: refresh-token rotation (compare and set), last seen, device and user deletion.
pub(super) async fn refresh_last_seen_and_deletion(store: &dyn Store) {
    store.create_user(user("r1")).await.unwrap();
    conversation(store, "rk", &["r1"]).await;
    store.create_device(device("rd1", "r1")).await.unwrap();
    store.create_device(device("rd2", "r1")).await.unwrap();
    // Unconditional set, then rotation only from the current hash.
    assert!(store
        .set_refresh_hash("rd1", None, "h1".into())
        .await
        .unwrap());
    assert!(!store
        .set_refresh_hash("rd1", Some("other".into()), "h2".into())
        .await
        .unwrap());
    assert!(store
        .set_refresh_hash("rd1", Some("h1".into()), "h2".into())
        .await
        .unwrap());
    assert!(!store
        .set_refresh_hash("rd1", Some("h1".into()), "h3".into())
        .await
        .unwrap());
    let d = store.device("rd1").await.unwrap().unwrap();
    assert_eq!(d.refresh_hash.as_deref(), Some("h2"));
    assert!(!store
        .set_refresh_hash("nope", None, "h".into())
        .await
        .unwrap());
    // Last seen.
    assert_eq!(d.last_seen_at, None);
    store
        .touch_devices(vec![("rd1".into(), 50), ("nope".into(), 50)])
        .await
        .unwrap();
    assert_eq!(
        store.device("rd1").await.unwrap().unwrap().last_seen_at,
        Some(50)
    );
    assert!(
        store.device("nope").await.unwrap().is_none(),
        "a touch creates nothing"
    );
    // Deleting a device: its row, push target and cursors go; the other stays.
    let t = PushTargetRow {
        provider: "fcm".into(),
        token: Some("tok".into()),
        registered_at: 3,
        ..Default::default()
    };
    store.set_push_target("rd1", t).await.unwrap();
    store.delete_device("rd1").await.unwrap();
    assert!(store.device("rd1").await.unwrap().is_none());
    assert_eq!(store.device_cursor("rd1", "rk").await.unwrap(), None);
    assert_eq!(
        store.delete_device("rd1").await.unwrap_err(),
        StoreError::NotFound
    );
    let left: Vec<String> = store
        .devices_of_user("r1")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(left, vec!["rd2".to_string()]);
    assert!(store.device_cursor("rd2", "rk").await.unwrap().is_some());
    // Password hash.
    store
        .set_password_hash("r1", "new-hash".into())
        .await
        .unwrap();
    assert_eq!(
        store.user_by_id("r1").await.unwrap().unwrap().password_hash,
        "new-hash"
    );
    assert_eq!(
        store
            .set_password_hash("nope", "x".into())
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
    // Deleting the user frees the username.
    store.delete_user("r1").await.unwrap();
    assert!(store.user_by_id("r1").await.unwrap().is_none());
    assert!(store.user_by_name("name-r1").await.unwrap().is_none());
    let mut again = user("r2");
    again.username = "name-r1".into();
    store.create_user(again).await.unwrap();
    assert_eq!(
        store.delete_user("r1").await.unwrap_err(),
        StoreError::NotFound
    );
}
