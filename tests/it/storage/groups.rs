//! v1.1 conversations (issue 12, items 5, 6, 8): a group's title, avatar (readable by the
//! members through a grant) and roles; per-user settings changed field by field; blocks, by
//! the blocker and by the blocked.

use super::*;

pub(super) async fn title_avatar_roles_and_direct_lookup(store: &dyn Store) {
    for u in ["u1", "u2", "u3"] {
        store.create_user(user(u)).await.unwrap();
    }
    conversation(store, "g", &["u1", "u2"]).await;
    let file = |id: &str| FileRow {
        file_id: id.into(),
        uploader_id: "u3".into(),
        size: 3,
        content_type: "image/png".into(),
        sha256: format!("sha-{id}"),
        created_at: 1,
        image: None,
    };
    store.create_file(file("f1")).await.unwrap();
    store.create_file(file("f2")).await.unwrap();
    assert!(!store.file_visible_to("f1", "u2").await.unwrap());

    store
        .update_conversation("g", Some("new".into()), Some("f1".into()))
        .await
        .unwrap();
    let st = store.load_conversation("g").await.unwrap().unwrap();
    assert_eq!(
        (st.row.title.as_deref(), st.row.avatar.as_deref()),
        (Some("new"), Some("f1"))
    );
    assert!(
        store.file_visible_to("f1", "u2").await.unwrap(),
        "members read the avatar"
    );
    // Another avatar: the first one's grant goes.
    store
        .update_conversation("g", None, Some("f2".into()))
        .await
        .unwrap();
    let st = store.load_conversation("g").await.unwrap().unwrap();
    assert_eq!((st.row.title, st.row.avatar.as_deref()), (None, Some("f2")));
    assert!(!store.file_visible_to("f1", "u2").await.unwrap());
    assert!(store.file_visible_to("f2", "u1").await.unwrap());
    assert_eq!(
        store.update_conversation("nope", None, None).await,
        Err(StoreError::NotFound)
    );

    store.set_role("g", "u2", Role::Admin).await.unwrap();
    assert_eq!(
        store.member("g", "u2").await.unwrap().unwrap().role,
        Role::Admin
    );
    store.set_role("g", "u2", Role::Member).await.unwrap();
    assert_eq!(
        store.member("g", "u2").await.unwrap().unwrap().role,
        Role::Member
    );
    assert_eq!(
        store.set_role("g", "u3", Role::Admin).await,
        Err(StoreError::NotFound)
    );

    let dm = ConversationRow {
        conversation_id: "d".into(),
        kind: ConversationKind::Direct,
        title: None,
        created_by: "u1".into(),
        created_at: 1,
        avatar: None,
    };
    let members = vec![("u1".into(), Role::Member), ("u2".into(), Role::Member)];
    store
        .create_conversation(dm, members, Some("u1:u2".into()))
        .await
        .unwrap();
    assert_eq!(
        store.direct_conversation("u1:u2").await.unwrap().as_deref(),
        Some("d")
    );
    assert_eq!(store.direct_conversation("u1:u3").await.unwrap(), None);
}

pub(super) async fn settings_change_field_by_field(store: &dyn Store) {
    store.create_user(user("u1")).await.unwrap();
    conversation(store, "c1", &["u1"]).await;
    conversation(store, "c2", &["u1"]).await;
    assert!(store.conversation_settings("u1").await.unwrap().is_empty());
    let patch = SettingsPatch {
        archived: Some(true),
        ..Default::default()
    };
    store.update_settings("u1", "c1", patch).await.unwrap();
    let patch = SettingsPatch {
        pinned_at: Some(77),
        muted_until: Some(99),
        ..Default::default()
    };
    store.update_settings("u1", "c1", patch).await.unwrap();
    store.set_muted_until("u1", "c2", 5).await.unwrap();
    let got = store.conversation_settings("u1").await.unwrap();
    let c1 = ConvSettings {
        muted_until: 99,
        archived: true,
        pinned_at: 77,
    };
    let c2 = ConvSettings {
        muted_until: 5,
        ..Default::default()
    };
    let mut got = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, vec![("c1".to_string(), c1), ("c2".to_string(), c2)]);
    // muted_until set through the new path is what push reads.
    assert_eq!(store.muted_until("u1", "c1").await.unwrap(), 99);
    let patch = SettingsPatch {
        archived: Some(false),
        pinned_at: Some(0),
        ..Default::default()
    };
    store.update_settings("u1", "c1", patch).await.unwrap();
    let got = store.conversation_settings("u1").await.unwrap();
    let c1 = got.iter().find(|(id, _)| id == "c1").unwrap().1;
    assert_eq!(
        c1,
        ConvSettings {
            muted_until: 99,
            archived: false,
            pinned_at: 0
        }
    );
}

pub(super) async fn blocks_by_blocker_and_blocked(store: &dyn Store) {
    store.block("u1", "u2", 10).await.unwrap();
    store.block("u1", "u2", 20).await.unwrap(); // again: the first time is kept
    store.block("u1", "u3", 30).await.unwrap();
    store.block("u3", "u2", 40).await.unwrap();
    let mut mine = store.blocks("u1").await.unwrap();
    mine.sort();
    assert_eq!(mine, vec![("u2".to_string(), 10), ("u3".to_string(), 30)]);
    let mut by = store.blocked_by("u2").await.unwrap();
    by.sort();
    assert_eq!(by, vec!["u1".to_string(), "u3".to_string()]);
    assert!(store.unblock("u1", "u2").await.unwrap());
    assert!(!store.unblock("u1", "u2").await.unwrap());
    assert_eq!(
        store.blocks("u1").await.unwrap(),
        vec![("u3".to_string(), 30)]
    );
    assert_eq!(
        store.blocked_by("u2").await.unwrap(),
        vec!["u3".to_string()]
    );
    assert!(store.blocks("u2").await.unwrap().is_empty());

    // Presence contacts: the contacts less anyone across a block, either way. u3 blocked u2
    // (still), u1 blocked u3.
    super::conversation(store, "pc", &["u1", "u2", "u3", "u4"]).await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let c = |u: &str| u.to_string();
    assert_eq!(
        sorted(store.presence_contacts("u2").await.unwrap()),
        vec![c("u1"), c("u4")]
    );
    assert_eq!(
        sorted(store.presence_contacts("u3").await.unwrap()),
        vec![c("u4")]
    );
    assert_eq!(
        sorted(store.presence_contacts("u4").await.unwrap()),
        vec![c("u1"), c("u2"), c("u3")]
    );
    // Across a block, either way: u3 blocked u2 and was blocked by u1.
    let across = |v: std::collections::HashSet<String>| sorted(v.into_iter().collect());
    assert_eq!(
        across(store.across_block("u3").await.unwrap()),
        vec![c("u1"), c("u2")]
    );
    assert!(store.across_block("u4").await.unwrap().is_empty());
    store.unblock("u3", "u2").await.unwrap();
    assert_eq!(
        sorted(store.presence_contacts("u2").await.unwrap()),
        vec![c("u1"), c("u3"), c("u4")]
    );
    assert!(store.across_block("u2").await.unwrap().is_empty());
}
