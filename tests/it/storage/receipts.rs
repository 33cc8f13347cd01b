//! Receipt marks (v1.1): the latest `RECEIPT_MARKS_KEPT` moves per (conversation, user, kind),
//! and the time each user passed a seq.

use super::*;
use parley::protocol::ReceiptKind;

fn mark(user: &str, kind: ReceiptKind, seq: u64, ts: i64) -> CursorUpdate {
    CursorUpdate::Mark {
        conversation_id: "k".into(),
        user_id: user.into(),
        kind,
        seq,
        ts,
    }
}

pub(super) async fn receipt_marks_time_each_seq_and_keep_the_latest(store: &dyn Store) {
    conversation(store, "k", &["u1", "u2", "u3"]).await;
    // u1 received 2 at t=100 and 5 at t=200; read 5 at t=300. u2 moved once, to 3.
    store
        .advance_cursors(vec![
            mark("u1", ReceiptKind::Delivered, 2, 100),
            mark("u1", ReceiptKind::Delivered, 5, 200),
            mark("u1", ReceiptKind::Read, 5, 300),
            mark("u2", ReceiptKind::Delivered, 3, 150),
        ])
        .await
        .unwrap();
    let users = vec!["u1".to_string(), "u2".into(), "u3".into()];
    let at = |seq| {
        let users = users.clone();
        async move {
            store
                .receipt_times("k", ReceiptKind::Delivered, seq, users)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        at(1).await,
        vec![
            ("u1".to_string(), Some(100)),
            ("u2".into(), Some(150)),
            ("u3".into(), None)
        ]
    );
    assert_eq!(at(3).await[0], ("u1".to_string(), Some(200)));
    assert_eq!(at(3).await[1], ("u2".to_string(), Some(150)));
    assert_eq!(at(4).await[1], ("u2".to_string(), None), "u2 is not past 4");
    let read = store
        .receipt_times("k", ReceiptKind::Read, 1, vec!["u1".into(), "u2".into()])
        .await
        .unwrap();
    assert_eq!(
        read,
        vec![("u1".to_string(), Some(300)), ("u2".into(), None)]
    );
    // Other conversations' marks are apart.
    let other = store
        .receipt_times("other", ReceiptKind::Delivered, 1, vec!["u1".into()])
        .await
        .unwrap();
    assert_eq!(other, vec![("u1".to_string(), None)]);

    // u3 moves one seq at a time, 40 times: only the latest RECEIPT_MARKS_KEPT stay, so the
    // time of an early seq becomes the oldest kept mark's (an upper bound).
    let moves: Vec<CursorUpdate> = (1..=40)
        .map(|s| mark("u3", ReceiptKind::Delivered, s, 1000 + s as i64))
        .collect();
    store.advance_cursors(moves).await.unwrap();
    let u3 = |seq| store.receipt_times("k", ReceiptKind::Delivered, seq, vec!["u3".into()]);
    let oldest_kept = 40 - RECEIPT_MARKS_KEPT as u64 + 1;
    assert_eq!(u3(40).await.unwrap()[0].1, Some(1040));
    assert_eq!(
        u3(oldest_kept).await.unwrap()[0].1,
        Some(1000 + oldest_kept as i64)
    );
    assert_eq!(
        u3(1).await.unwrap()[0].1,
        Some(1000 + oldest_kept as i64),
        "dropped marks: the oldest kept one bounds the time"
    );
    assert_eq!(u3(41).await.unwrap()[0].1, None);
}
