//! The store's append path: one group commit of N messages into one conversation, with the
//! idempotency check and key insert, at both durability settings. With "fsync" the figure is
//! dominated by the disk's fsync; "os" shows the CPU cost.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parley::config::Config;
use parley::metrics::Metrics;
use parley::protocol::ConversationKind;
use parley::storage::sqlite::SqliteStore;
use parley::storage::{ConversationRow, NewMessage, Role, Store};
use std::sync::Arc;

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("store_append");
    for durability in ["os", "fsync"] {
        for batch in [1u64, 64] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = Config::load(Some(&format!("[storage]\ndurability = \"{durability}\""))).unwrap();
            let store = SqliteStore::open(dir.path(), &cfg.storage, Arc::new(Metrics::new())).unwrap();
            rt.block_on(store.create_conversation(
                ConversationRow {
                    conversation_id: "k".into(),
                    kind: ConversationKind::Group,
                    title: None,
                    created_by: "u".into(),
                    created_at: 0,
                    avatar: None,
                },
                vec![("u".into(), Role::Admin)],
                None,
            ))
            .unwrap();
            let mut next = 1u64;
            g.throughput(Throughput::Elements(batch));
            g.bench_with_input(BenchmarkId::new(durability, batch), &batch, |b, &batch| {
                b.iter(|| {
                    let msgs: Vec<NewMessage> = (0..batch)
                        .map(|i| NewMessage {
                            message_id: format!("m{}", next + i),
                            sender_id: "u".into(),
                            sender_device_id: "d".into(),
                            client_id: format!("c{}", next + i),
                            ts: 0,
                            text: Some("hello there, how are you doing today?".into()),
                            attachments: vec![],
                            meta: None,
                            reply_to: None,
                        })
                        .collect();
                    rt.block_on(store.append("k", next, msgs.into())).unwrap();
                    next += batch;
                })
            });
            rt.block_on(store.close());
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = append
}
criterion_main!(benches);
