//! Conversations (direct once per pair), members (join positions, roles, removal) and what
//! each device sees of them.

use super::*;

pub(super) async fn direct_pairs_members_and_devices(store: &dyn Store) {
    for u in ["u1", "u2", "u3"] {
        store.create_user(user(u)).await.unwrap();
        store
            .create_device(device(&format!("d-{u}"), u))
            .await
            .unwrap();
    }
    // A direct conversation exists once per pair.
    let dm = |id: &str| ConversationRow {
        conversation_id: id.into(),
        kind: ConversationKind::Direct,
        title: None,
        created_by: "u1".into(),
        created_at: 5,
        avatar: None,
    };
    let pair = || {
        vec![
            ("u1".to_string(), Role::Member),
            ("u2".to_string(), Role::Member),
        ]
    };
    let key = Some("u1:u2".to_string());
    assert!(matches!(
        store
            .create_conversation(dm("dm"), pair(), key.clone())
            .await
            .unwrap(),
        CreateOutcome::Created
    ));
    match store
        .create_conversation(dm("dm2"), pair(), key)
        .await
        .unwrap()
    {
        CreateOutcome::Existing(id) => assert_eq!(id, "dm"),
        CreateOutcome::Created => panic!("a second direct conversation for one pair"),
    }
    let st = store.load_conversation("dm").await.unwrap().unwrap();
    assert_eq!(
        (
            st.row.kind,
            st.row.created_at,
            st.last_seq,
            st.last_event_no
        ),
        (ConversationKind::Direct, 5, 0, 0)
    );
    let mut ids: Vec<&str> = st.members.iter().map(|m| m.user_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["u1", "u2"]);
    assert!(store.load_conversation("dm2").await.unwrap().is_none());

    // A group: its creator an admin; a member added later joins at the current end.
    let g = ConversationRow {
        conversation_id: "g".into(),
        kind: ConversationKind::Group,
        title: Some("team".into()),
        created_by: "u1".into(),
        created_at: 6,
        avatar: None,
    };
    let founders = vec![
        ("u1".to_string(), Role::Admin),
        ("u2".to_string(), Role::Member),
    ];
    store.create_conversation(g, founders, None).await.unwrap();
    assert_eq!(
        store.member("g", "u1").await.unwrap().unwrap().role,
        Role::Admin
    );
    assert!(store.member("g", "u3").await.unwrap().is_none());
    let batch: Vec<NewMessage> = (1..=2)
        .map(|i| msg("d-u1", &format!("g{i}"), "x", i))
        .collect();
    store.append("g", 1, batch.into()).await.unwrap();
    store.add_members("g", vec!["u3".into()], 2).await.unwrap();
    let m3 = store.member("g", "u3").await.unwrap().unwrap();
    assert_eq!((m3.role, m3.joined_seq, m3.read_seq), (Role::Member, 2, 2));
    let of_g = |dcs: Vec<DeviceConversation>| dcs.into_iter().find(|d| d.conversation_id == "g");
    let d3 = of_g(store.device_conversations("d-u3", "u3").await.unwrap()).unwrap();
    assert_eq!((d3.joined_seq, d3.delivered_seq, d3.last_seq), (2, 2, 2));
    // Adding a member again changes nothing (its join position stays).
    store.add_members("g", vec!["u3".into()], 9).await.unwrap();
    assert_eq!(
        store.member("g", "u3").await.unwrap().unwrap().joined_seq,
        2
    );
    let mut contacts = store.contacts_of_user("u3").await.unwrap();
    contacts.sort();
    assert_eq!(contacts, vec!["u1".to_string(), "u2".to_string()]);
    let mut contacts = store.contacts_of_user("u1").await.unwrap();
    contacts.sort();
    assert_eq!(contacts, vec!["u2".to_string(), "u3".to_string()]);

    // Removal: the member is gone from the conversation and from its devices' list.
    store.remove_member("g", "u3").await.unwrap();
    assert_eq!(
        store.remove_member("g", "u3").await.unwrap_err(),
        StoreError::NotFound
    );
    assert!(store.member("g", "u3").await.unwrap().is_none());
    assert!(of_g(store.device_conversations("d-u3", "u3").await.unwrap()).is_none());
    assert_eq!(
        store.contacts_of_user("u3").await.unwrap(),
        Vec::<String>::new()
    );
}
