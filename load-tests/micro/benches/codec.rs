//! The protocol codec: parsing a client `send` and printing a server `message`, the two
//! frames every message passes through.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parley_protocol::{ClientFrame, Message, ServerFrame};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let send = r#"{"type":"send","id":"c-123456","conversation_id":"0196c1f2a4b87c3e9d0f1a2b3c4d5e6f","text":"hello there, how are you doing today?","meta":{"t":1234567}}"#;
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_send", |b| {
        b.iter(|| serde_json::from_str::<ClientFrame>(black_box(send)).unwrap())
    });
    let msg = ServerFrame::Message(Message {
        conversation_id: "0196c1f2a4b87c3e9d0f1a2b3c4d5e6f".into(),
        seq: 123456,
        message_id: "0196c1f2a4b87c3e9d0f1a2b3c4d5e70".into(),
        sender_id: "0196c1f2a4b87c3e9d0f1a2b3c4d5e71".into(),
        sender_device_id: "0196c1f2a4b87c3e9d0f1a2b3c4d5e72".into(),
        ts: 1_763_800_000_000,
        text: Some("hello there, how are you doing today?".into()),
        attachments: vec![],
        meta: Some(serde_json::json!({"t": 1234567})),
        client_id: None,
        deleted: false,
    });
    g.bench_function("print_message", |b| b.iter(|| black_box(&msg).to_json()));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
