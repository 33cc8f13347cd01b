//! Building one job's notification from the store: the badge and unread count from the
//! server's own cursors (so badges never drift from what the user actually has unread), the
//! preview only in `full` mode and never for a muted conversation or a clear, a collapse key
//! per conversation and an id that stays the same across retries of one job version.

use super::{Kind, Notification, Preview};
use crate::storage::{PushJob, PushKind, Store, StoreResult};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// At most this much text goes into a preview before a provider cuts it to its own limit.
const PREVIEW_BYTES: usize = 1024;

/// The conversation's collapse key: 32 hex digits of its id's SHA-256 (within the base64url
/// alphabet every provider accepts).
pub fn collapse_key(conversation_id: &str) -> String {
    hex::encode(&Sha256::digest(conversation_id.as_bytes())[..16])
}

/// A UUID (canonical form, version 4 bits set) derived from the job and its version: the
/// same on every retry of that content, new when the content changes.
pub fn notification_id(job: &PushJob) -> String {
    let key = format!(
        "{}\0{}\0{}",
        job.device_id, job.conversation_id, job.version
    );
    let mut b: [u8; 16] = Sha256::digest(key.as_bytes())[..16]
        .try_into()
        .expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub struct Built {
    pub notification: Notification,
}

/// The notification for `job` to `target`, `full` or `id_only` per `mode`.
pub async fn build(
    store: &dyn Store,
    job: &PushJob,
    mode: &str,
    ttl: Duration,
    now: i64,
) -> StoreResult<Built> {
    let member = store.member(&job.conversation_id, &job.user_id).await?;
    let read = member.as_ref().map_or(0, |m| m.read_seq);
    let unread = store
        .count_unread(&job.conversation_id, &job.user_id, read)
        .await?;
    let badge = store.unread_total(&job.user_id).await?;
    let muted = store
        .muted_until(&job.user_id, &job.conversation_id)
        .await?
        > now;
    let kind = match job.kind {
        PushKind::Message => Kind::Message,
        PushKind::Clear => Kind::Clear,
    };
    let preview = if kind == Kind::Message && !muted && mode == "full" {
        preview(store, job).await?
    } else {
        None
    };
    Ok(Built {
        notification: Notification {
            id: notification_id(job),
            kind,
            user_id: job.user_id.clone(),
            conversation_id: job.conversation_id.clone(),
            seq: job.seq,
            badge,
            unread,
            preview,
            muted: muted && kind == Kind::Message,
            collapse_key: collapse_key(&job.conversation_id),
            ttl,
        },
    })
}

/// The sender's name and the message's text (a file's type when it has none).
async fn preview(store: &dyn Store, job: &PushJob) -> StoreResult<Option<Preview>> {
    let Some(m) = store.message(&job.conversation_id, job.seq).await? else {
        return Ok(None);
    };
    if m.deleted {
        return Ok(None);
    }
    let sender = store.user_by_id(&m.sender_id).await?;
    let title = sender
        .map(|u| u.display_name.unwrap_or(u.username))
        .unwrap_or_default();
    let body = match (&m.text, m.attachments.first()) {
        (Some(t), _) if !t.is_empty() => cut(t, PREVIEW_BYTES),
        (_, Some(a)) => format!("[{}]", a.content_type),
        _ => String::new(),
    };
    Ok(Some(Preview { title, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_version_and_keys_fit_every_provider() {
        let job = PushJob {
            device_id: "d".into(),
            conversation_id: "c".into(),
            user_id: "u".into(),
            kind: PushKind::Message,
            seq: 3,
            version: 1,
            created_at: 0,
            attempts: 0,
        };
        let id = notification_id(&job);
        assert_eq!(id, notification_id(&job.clone()));
        assert_ne!(id, notification_id(&PushJob { version: 2, ..job }));
        assert_eq!((id.len(), &id[14..15]), (36, "4"), "{id}");
        let k = collapse_key("some conversation");
        assert!(k.len() <= 32 && k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(cut("héllo", 2), "h…");
    }
}
