//! Rows to types: the column lists and the mapping of each row shape, shared by the entity
//! files.

use super::super::{
    DeviceRow, EventKind, FileRow, ImageMeta, MemberRow, MessageEvent, PushJob, PushKind,
    PushTargetRow, Role, StoredMessage, UserRow,
};
use crate::storage::parse_attachments;
use rusqlite::Row;

/// Seqs and counters are u64 in the code and INTEGER (i64) in SQLite.
pub(super) fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub(super) fn uint(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)? as u64)
}

pub(super) const MESSAGE_COLS: &str = "conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text, attachments, meta, deleted, deleted_by, edited_at, reply_to";

pub(super) fn message(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let attachments: Option<String> = r.get(8)?;
    Ok(StoredMessage {
        conversation_id: r.get(0)?,
        seq: uint(r, 1)?,
        message_id: r.get(2)?,
        sender_id: r.get(3)?,
        sender_device_id: r.get(4)?,
        client_id: r.get(5)?,
        ts: r.get(6)?,
        text: r.get(7)?,
        attachments: attachments
            .map(|a| parse_attachments(&a))
            .unwrap_or_default(),
        meta: r.get(9)?,
        deleted: r.get::<_, i64>(10)? != 0,
        deleted_by: r.get(11)?,
        edited_at: r.get(12)?,
        reply_to: r.get::<_, Option<i64>>(13)?.map(|s| s as u64),
    })
}

pub(super) const USER_COLS: &str = "user_id, username, display_name, password_hash, created_at";

pub(super) fn user(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        user_id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        password_hash: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub(super) const DEVICE_COLS: &str = "device_id, user_id, name, created_at, push_provider, push_token, push_endpoint, push_p256dh, push_auth, push_payload, push_registered_at, push_disabled_at, push_disabled_reason, refresh_hash, last_seen_at";

pub(super) fn device(r: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    let provider: Option<String> = r.get(4)?;
    let disabled_at: Option<i64> = r.get(11)?;
    Ok(DeviceRow {
        device_id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        push: match provider {
            Some(provider) => Some(PushTargetRow {
                provider,
                token: r.get(5)?,
                endpoint: r.get(6)?,
                p256dh: r.get(7)?,
                auth: r.get(8)?,
                payload: r.get(9)?,
                registered_at: r.get::<_, Option<i64>>(10)?.unwrap_or(0),
                disabled: match disabled_at {
                    Some(at) => Some((at, r.get::<_, Option<String>>(12)?.unwrap_or_default())),
                    None => None,
                },
            }),
            None => None,
        },
        refresh_hash: r.get(13)?,
        last_seen_at: r.get(14)?,
    })
}

pub(super) const PUSH_JOB_COLS: &str =
    "device_id, conversation_id, user_id, kind, seq, version, created_at, attempts";

pub(super) fn push_job(r: &Row<'_>) -> rusqlite::Result<PushJob> {
    let kind: String = r.get(3)?;
    Ok(PushJob {
        device_id: r.get(0)?,
        conversation_id: r.get(1)?,
        user_id: r.get(2)?,
        kind: PushKind::parse(&kind),
        seq: uint(r, 4)?,
        version: uint(r, 5)?,
        created_at: r.get(6)?,
        attempts: r.get::<_, i64>(7)? as u32,
    })
}

pub(super) const MEMBER_COLS: &str = "user_id, role, joined_seq, delivered_seq, read_seq";

pub(super) fn member(r: &Row<'_>) -> rusqlite::Result<MemberRow> {
    let role: String = r.get(1)?;
    Ok(MemberRow {
        user_id: r.get(0)?,
        role: Role::parse(&role),
        joined_seq: uint(r, 2)?,
        delivered_seq: uint(r, 3)?,
        read_seq: uint(r, 4)?,
    })
}

pub(super) const EVENT_COLS: &str =
    "conversation_id, event_no, seq, kind, scope, data, by_user, for_user, ts";

pub(super) fn event(r: &Row<'_>) -> rusqlite::Result<MessageEvent> {
    let (kind, scope, data): (Option<String>, Option<String>, Option<String>) =
        (r.get(3)?, r.get(4)?, r.get(5)?);
    Ok(MessageEvent {
        conversation_id: r.get(0)?,
        event_no: uint(r, 1)?,
        seq: uint(r, 2)?,
        kind: EventKind::parse(kind.as_deref(), scope.as_deref(), data.as_deref()),
        by_user: r.get(6)?,
        for_user: r.get(7)?,
        ts: r.get(8)?,
    })
}

pub(super) const FILE_COLS: &str = "file_id, uploader_id, size, content_type, sha256, created_at, width, height, thumb_sha256, thumb_content_type, placeholder";

pub(super) fn file(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        file_id: r.get(0)?,
        uploader_id: r.get(1)?,
        size: uint(r, 2)?,
        content_type: r.get(3)?,
        sha256: r.get(4)?,
        created_at: r.get(5)?,
        image: match (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?) {
            (
                Some(width),
                Some(height),
                Some(thumb_sha256),
                Some(thumb_content_type),
                Some(placeholder),
            ) => Some(ImageMeta {
                width,
                height,
                thumb_sha256,
                thumb_content_type,
                placeholder,
            }),
            _ => None,
        },
    })
}
