//! The protocol codec: parsing a client `send` and printing a server `message`, the two
//! frames every message passes through, in JSON (the protocol's encoding) and in MessagePack
//! with the same field names (what a `Sec-WebSocket-Protocol` option would carry; issue 15
//! asked whether it pays).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parley_protocol::{ClientFrame, Message, ServerFrame};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let send = r#"{"type":"send","id":"c-123456","conversation_id":"0196c1f2a4b87c3e9d0f1a2b3c4d5e6f","text":"hello there, how are you doing today?","meta":{"t":1234567}}"#;
    let send_value: serde_json::Value = serde_json::from_str(send).unwrap();
    let send_msgpack = rmp_serde::to_vec_named(&send_value).unwrap();
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
        edited_at: None,
        reply_to: None,
        quote: None,
        reactions: vec![],
    });
    // Both encodings carry the same frame.
    let parsed: ClientFrame = rmp_serde::from_slice(&send_msgpack).unwrap();
    assert_eq!(parsed, serde_json::from_str::<ClientFrame>(send).unwrap());
    let printed = rmp_serde::to_vec_named(&msg).unwrap();
    let back: serde_json::Value = rmp_serde::from_slice(&printed).unwrap();
    assert_eq!(back, serde_json::from_str::<serde_json::Value>(&msg.to_json()).unwrap());
    println!(
        "sizes: send {} B JSON, {} B MessagePack; message {} B JSON, {} B MessagePack",
        send.len(),
        send_msgpack.len(),
        msg.to_json().len(),
        printed.len()
    );

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_send", |b| {
        b.iter(|| serde_json::from_str::<ClientFrame>(black_box(send)).unwrap())
    });
    g.bench_function("parse_send_msgpack", |b| {
        b.iter(|| rmp_serde::from_slice::<ClientFrame>(black_box(&send_msgpack)).unwrap())
    });
    g.bench_function("print_message", |b| b.iter(|| black_box(&msg).to_json()));
    g.bench_function("print_message_msgpack", |b| {
        b.iter(|| rmp_serde::to_vec_named(black_box(&msg)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
