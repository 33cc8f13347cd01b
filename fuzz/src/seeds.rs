//! The `node_frame` seed corpus, made with the real encoder.
//!
//! Bus frames are postcard, which a person cannot write by hand, and which changes whenever a
//! domain type does. So the seeds are one real frame of every kind (every `NodeFrame`
//! variant, and every variant of the domain enums they carry), encoded by
//! `bus::frame::encode`, plus a few refusals. `examples/node_seeds.rs` writes them into
//! `corpus/node_frame/`; `tests/corpus.rs` fails when the files on disk are not what the
//! encoder makes today (after a `VERSION` bump or a changed type), and when a kind has no seed.

use parley::bus::frame::{encode, NodeFrame, VERSION};
use parley::domain::broadcast::{Broadcast, Committed, Devices, EventRef, QuoteInfo};
use parley::domain::{AckInfo, Caller, ConvReply, ConvRequest, Submit};
use parley::error::ApiError;
use parley::storage::NewMessage;
use parley_protocol::{
    Attachment, Conversation, ConversationEvent, ConversationKind, DeleteScope, ErrorCode,
    ReceiptKind,
};

/// The kind of a frame, down to the variants of the enums it carries. The match has no
/// wildcard: a new variant anywhere does not compile until it has a name here, and
/// [`KINDS`] and [`node_frames`] get an entry for it.
pub fn kind(f: &NodeFrame) -> &'static str {
    match f {
        NodeFrame::Broadcast(b) => match b {
            Broadcast::Messages { .. } => "broadcast-messages",
            Broadcast::Frame { devices, .. } => match devices {
                Devices::All => "broadcast-frame-all",
                Devices::Except(_) => "broadcast-frame-except",
                Devices::Only(_) => "broadcast-frame-only",
            },
            Broadcast::Conversation { .. } => "broadcast-conversation",
            Broadcast::Event { .. } => "broadcast-event",
            Broadcast::Revoked { .. } => "broadcast-revoked",
        },
        NodeFrame::Request { request, .. } => match request {
            ConvRequest::Submit(_) => "request-submit",
            ConvRequest::Cursor { .. } => "request-cursor",
            ConvRequest::Delete { .. } => "request-delete",
            ConvRequest::Typing { .. } => "request-typing",
            ConvRequest::Edit { .. } => "request-edit",
            ConvRequest::React { .. } => "request-react",
            ConvRequest::AddMembers { .. } => "request-add-members",
            ConvRequest::RemoveMember { .. } => "request-remove-member",
            ConvRequest::Receipts { .. } => "request-receipts",
            ConvRequest::SetRetention { .. } => "request-set-retention",
            ConvRequest::Expire { .. } => "request-expire",
            ConvRequest::UpdateGroup { .. } => "request-update-group",
            ConvRequest::SetRole { .. } => "request-set-role",
            ConvRequest::Block { .. } => "request-block",
        },
        NodeFrame::Reply { result, .. } => match result {
            Ok(ConvReply::Ack(_)) => "reply-ack",
            Ok(ConvReply::Conversation(_)) => "reply-conversation",
            Ok(ConvReply::Done) => "reply-done",
            Ok(ConvReply::Receipts(_)) => "reply-receipts",
            Ok(ConvReply::Purged(_)) => "reply-purged",
            Err(_) => "reply-error",
        },
        NodeFrame::Resync => "resync",
        NodeFrame::Left => "left",
    }
}

/// Every name [`kind`] can return.
pub const KINDS: &[&str] = &[
    "broadcast-messages",
    "broadcast-frame-all",
    "broadcast-frame-except",
    "broadcast-frame-only",
    "broadcast-conversation",
    "broadcast-event",
    "broadcast-revoked",
    "request-submit",
    "request-cursor",
    "request-delete",
    "request-typing",
    "request-edit",
    "request-react",
    "request-add-members",
    "request-remove-member",
    "request-receipts",
    "request-set-retention",
    "request-expire",
    "request-update-group",
    "request-set-role",
    "request-block",
    "reply-ack",
    "reply-conversation",
    "reply-done",
    "reply-receipts",
    "reply-purged",
    "reply-error",
    "resync",
    "left",
];

fn caller() -> Caller {
    Caller {
        user_id: "01J9USER".into(),
        device_id: "01J9DEVICE".into(),
    }
}

fn attachment() -> Attachment {
    Attachment {
        file_id: "01J9FILE".into(),
        size: 2048,
        content_type: "image/png".into(),
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        width: Some(640),
        height: Some(480),
        thumbnail: Some("/v1/files/01J9FILE/thumbnail".into()),
        placeholder: Some("3OcRJYB4d3h/iIeHeEh3eIhw+j3A".into()),
    }
}

fn group() -> Conversation {
    Conversation {
        conversation_id: "01J9CONV".into(),
        kind: ConversationKind::Group,
        title: Some("Team ✓".into()),
        members: vec!["01J9USER".into(), "01J9OTHER".into()],
        admins: vec!["01J9USER".into()],
        created_at: 1_767_225_600_000,
        last_seq: 42,
        avatar: Some("01J9FILE".into()),
    }
}

fn request(request: ConvRequest) -> NodeFrame {
    NodeFrame::Request {
        req_id: 7,
        conversation_id: "01J9CONV".into(),
        request,
    }
}

/// One real frame of every kind, each with a distinct name.
pub fn node_frames() -> Vec<NodeFrame> {
    let frame = |devices| {
        NodeFrame::Broadcast(Broadcast::Frame {
            users: vec!["01J9USER".into(), "01J9OTHER".into()],
            devices,
            frame: r#"{"type":"typing","conversation_id":"01J9CONV","user_id":"01J9USER"}"#.into(),
        })
    };
    vec![
        NodeFrame::Broadcast(Broadcast::Messages {
            conversation_id: "01J9CONV".into(),
            members: vec!["01J9USER".into(), "01J9OTHER".into()],
            messages: vec![
                Committed {
                    seq: 41,
                    message: NewMessage {
                        message_id: "01J9MSG1".into(),
                        sender_id: "01J9USER".into(),
                        sender_device_id: "01J9DEVICE".into(),
                        client_id: "c41".into(),
                        ts: 1_767_225_600_000,
                        text: Some("hi 👋".into()),
                        attachments: vec![],
                        meta: None,
                        reply_to: None,
                    },
                    quote: None,
                },
                Committed {
                    seq: 42,
                    message: NewMessage {
                        message_id: "01J9MSG2".into(),
                        sender_id: "01J9USER".into(),
                        sender_device_id: "01J9DEVICE".into(),
                        client_id: "c42".into(),
                        ts: -1,
                        text: None,
                        attachments: vec![attachment()],
                        meta: Some(r#"{"reply_to":41,"x":[1.5,null,"s"]}"#.into()),
                        reply_to: Some(41),
                    },
                    quote: Some(QuoteInfo {
                        seq: 41,
                        sender_id: "01J9USER".into(),
                        text: Some("hi 👋".into()),
                        attachments: 0,
                        deleted: false,
                    }),
                },
            ],
        }),
        frame(Devices::All),
        frame(Devices::Except("01J9DEVICE".into())),
        frame(Devices::Only("01J9DEVICE".into())),
        NodeFrame::Broadcast(Broadcast::Conversation {
            users: vec!["01J9USER".into(), "01J9OTHER".into(), "01J9GONE".into()],
            event: ConversationEvent::MemberRemoved,
            conversation: group(),
        }),
        request(ConvRequest::Submit(Submit {
            by: caller(),
            client_id: "c43".into(),
            text: Some("hello".into()),
            attachments: vec![attachment()],
            meta: Some(r#"{"k":1}"#.into()),
            reply_to: Some(41),
        })),
        request(ConvRequest::Cursor {
            by: caller(),
            kind: ReceiptKind::Read,
            seq: u64::MAX,
            id: Some("r1".into()),
        }),
        request(ConvRequest::Delete {
            by: caller(),
            id: "d1".into(),
            seq: 41,
            scope: DeleteScope::Everyone,
        }),
        request(ConvRequest::Typing {
            by: caller(),
            id: None,
        }),
        request(ConvRequest::Edit {
            by: caller(),
            id: "e1".into(),
            seq: 41,
            text: Some("hi again".into()),
            meta: None,
        }),
        request(ConvRequest::React {
            by: caller(),
            id: "r2".into(),
            seq: 41,
            emoji: "👍".into(),
            added: true,
        }),
        NodeFrame::Broadcast(Broadcast::Event {
            users: vec!["01J9USER".into(), "01J9OTHER".into()],
            devices: Devices::All,
            event: EventRef {
                conversation_id: "01J9CONV".into(),
                event_no: 3,
                seq: 41,
            },
            frame: r#"{"type":"reaction","conversation_id":"01J9CONV","seq":41,"user_id":"01J9USER","emoji":"👍","added":true}"#.into(),
        }),
        NodeFrame::Broadcast(Broadcast::Revoked {
            user_id: "01J9USER".into(),
            devices: vec!["01J9DEV1".into(), "01J9DEV2".into()],
        }),
        request(ConvRequest::AddMembers {
            by: caller(),
            user_ids: vec!["01J9NEW1".into(), "01J9NEW2".into()],
        }),
        request(ConvRequest::RemoveMember {
            by: caller(),
            user_id: "01J9OTHER".into(),
        }),
        request(ConvRequest::Receipts {
            by: caller(),
            seq: 41,
            kind: ReceiptKind::Delivered,
            after: Some("01J9OTHER".into()),
            limit: 100,
        }),
        request(ConvRequest::SetRetention {
            by: caller(),
            secs: Some(86_400),
        }),
        request(ConvRequest::Expire {
            before_ts: 1_767_225_600_000,
        }),
        request(ConvRequest::UpdateGroup {
            by: caller(),
            title: Some(Some("New name".into())),
            avatar: Some(None),
        }),
        request(ConvRequest::SetRole {
            by: caller(),
            user_id: "01J9OTHER".into(),
            admin: true,
        }),
        request(ConvRequest::Block {
            by: caller(),
            user_id: "01J9OTHER".into(),
            blocked: true,
        }),
        NodeFrame::Reply {
            req_id: 7,
            result: Ok(ConvReply::Ack(AckInfo {
                id: "c43".into(),
                conversation_id: "01J9CONV".into(),
                seq: 43,
                message_id: "01J9MSG3".into(),
                ts: 1_767_225_600_001,
                duplicate: true,
            })),
        },
        NodeFrame::Reply {
            req_id: u64::MAX,
            result: Ok(ConvReply::Conversation(group())),
        },
        NodeFrame::Reply {
            req_id: 8,
            result: Ok(ConvReply::Done),
        },
        NodeFrame::Reply {
            req_id: 10,
            result: Ok(ConvReply::Receipts(parley_protocol::ReceiptPage {
                conversation_id: "01J9CONV".into(),
                seq: 41,
                recipients: 2,
                delivered: 2,
                read: 1,
                users: vec![parley_protocol::ReceiptUser {
                    user_id: "01J9OTHER".into(),
                    at: Some(1_767_225_600_002),
                }],
                more: false,
            })),
        },
        NodeFrame::Reply {
            req_id: 11,
            result: Ok(ConvReply::Purged(500)),
        },
        NodeFrame::Reply {
            req_id: 9,
            result: Err(ApiError::new(ErrorCode::Forbidden, "not a member")),
        },
        NodeFrame::Resync,
        NodeFrame::Left,
    ]
}

/// The sender every seed claims to come from.
pub const FROM: &str = "node-01J9";

/// The whole `node_frame` corpus: `ok-<kind>.bin` for each of [`node_frames`], and refusals
/// (`bad-*.bin`) for each way `decode` can say no.
pub fn node_corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = node_frames()
        .into_iter()
        .map(|f| (format!("ok-{}.bin", kind(&f)), encode(FROM, f)))
        .collect();
    let submit = out
        .iter()
        .find(|(n, _)| n == "ok-request-submit.bin")
        .map(|(_, b)| b.clone())
        .expect("a submit seed");
    let mut newer = submit.clone();
    newer[0] = VERSION + 1;
    let mut bad_variant = encode(FROM, NodeFrame::Resync);
    *bad_variant.last_mut().unwrap() = 0x7f; // no NodeFrame variant has that index
    out.extend([
        ("bad-empty.bin".to_string(), vec![]),
        ("bad-version.bin".to_string(), newer),
        (
            "bad-truncated.bin".to_string(),
            submit[..submit.len() / 2].to_vec(),
        ),
        ("bad-variant.bin".to_string(), bad_variant),
    ]);
    out
}
