//! Retention on ScyllaDB (schema 008): the `retention` and `undeliverable` tables, the purge
//! of a conversation's oldest messages, and `conversation_index`, which the sweep pages
//! through (ScyllaDB has no cheap scan of a table's partition keys).
//!
//! Hidden marks are partitioned by user and stay after a purge: they carry no content, and
//! nothing reads them below `expired_through`.

use super::push::{shard, SHARDS};
use super::rows::UndeliverableCols;
use super::{bigint, conversations, cql, users, ScyllaStore};
use crate::storage::{Expired, MemberDevice, Retention, StoreResult, StoredMessage, Undeliverable};

pub(super) async fn get(s: &ScyllaStore, id: &str) -> StoreResult<Retention> {
    let row = s
        .row::<(Option<i64>, Option<i64>)>(&cql::RETENTION, (id,))
        .await?;
    Ok(row
        .map(|(secs, through)| Retention {
            secs: secs.map(|v| v.max(0) as u64),
            expired_through: through.unwrap_or(0).max(0) as u64,
        })
        .unwrap_or_default())
}

pub(super) async fn set(s: &ScyllaStore, id: &str, secs: Option<u64>) -> StoreResult<()> {
    s.exec(&cql::SET_RETENTION_SECS, (secs.map(bigint), id))
        .await?;
    Ok(())
}

/// Deletes row by row from the lowest seq, then moves `expired_through`: a crash part-way
/// leaves rows below a lower mark, which the next purge deletes again (deletes are
/// idempotent), and never a mark above a row that is still there.
pub(super) async fn expire(
    s: &ScyllaStore,
    id: &str,
    before_ts: i64,
    limit: u32,
) -> StoreResult<Expired> {
    let from = get(s, id).await?.expired_through;
    let msgs: Vec<StoredMessage> =
        super::messages::page(s, id, from, u64::MAX, limit, crate::storage::Order::Asc).await?;
    let mut out = Expired {
        through: from,
        ..Default::default()
    };
    for m in msgs.into_iter().take_while(|m| m.ts < before_ts) {
        let (b, seq) = (cql::bucket(m.seq), bigint(m.seq));
        for a in &m.attachments {
            s.exec(&cql::DELETE_GRANT, (a.file_id.as_str(), id, seq))
                .await?;
            out.file_ids.push(a.file_id.clone());
        }
        s.exec(&cql::DELETE_VERSIONS, (id, seq)).await?;
        s.exec(&cql::DELETE_REACTIONS_OF, (id, b, seq)).await?;
        s.lwt(&cql::DELETE_MESSAGE, (id, b, seq)).await?;
        out.through = m.seq;
        out.messages.push((m.seq, m.sender_id, m.ts));
    }
    if out.through > from {
        s.exec(&cql::SET_EXPIRED_THROUGH, (bigint(out.through), id))
            .await?;
    }
    Ok(out)
}

pub(super) async fn member_devices(s: &ScyllaStore, id: &str) -> StoreResult<Vec<MemberDevice>> {
    let mut out = Vec::new();
    for m in conversations::members_of(s, id).await? {
        for device in users::device_ids_of_user(s, &m.user_id).await? {
            let Some(d) = users::device(s, &device).await? else {
                continue;
            };
            let delivered = conversations::device_cursor(s, &device, id)
                .await?
                .unwrap_or(m.joined_seq);
            out.push(MemberDevice {
                device_id: device,
                user_id: m.user_id.clone(),
                created_at: d.created_at,
                delivered_seq: delivered,
            });
        }
    }
    Ok(out)
}

/// Read, merge, write: one sweep at a time purges a conversation (its owner's), so the rows
/// of one (sender, conversation, device) have one writer.
pub(super) async fn add_undeliverable(
    s: &ScyllaStore,
    rows: Vec<Undeliverable>,
) -> StoreResult<()> {
    for mut u in rows {
        let key = (
            u.user_id.as_str(),
            u.conversation_id.as_str(),
            u.device_id.as_str(),
        );
        if let Some((from, to, lost)) = s
            .row::<(Option<i64>, Option<i64>, Option<i64>)>(&cql::UNDELIVERABLE_ONE, key)
            .await?
        {
            u.from_seq = u.from_seq.min(from.unwrap_or(i64::MAX).max(0) as u64);
            u.to_seq = u.to_seq.max(to.unwrap_or(0).max(0) as u64);
            u.lost += lost.unwrap_or(0).max(0) as u64;
        }
        s.exec(
            &cql::SET_UNDELIVERABLE,
            (
                u.user_id.as_str(),
                u.conversation_id.as_str(),
                u.device_id.as_str(),
                bigint(u.to_seq),
                bigint(u.from_seq),
                u.recipient_id.as_str(),
                bigint(u.lost),
                u.ts,
            ),
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn undeliverable(s: &ScyllaStore, user: &str) -> StoreResult<Vec<Undeliverable>> {
    let rows = s
        .rows::<UndeliverableCols>(&cql::UNDELIVERABLE_OF_USER, (user,))
        .await?;
    Ok(rows.into_iter().map(Undeliverable::from).collect())
}

pub(super) async fn clear_undeliverable(
    s: &ScyllaStore,
    user: &str,
    upto_ts: i64,
) -> StoreResult<u64> {
    let mut n = 0;
    for u in undeliverable(s, user).await? {
        if u.ts <= upto_ts {
            let key = (user, u.conversation_id.as_str(), u.device_id.as_str());
            s.exec(&cql::DELETE_UNDELIVERABLE, key).await?;
            n += 1;
        }
    }
    Ok(n)
}

pub(super) async fn index(s: &ScyllaStore, id: &str) -> StoreResult<()> {
    s.exec(&cql::INDEX_CONVERSATION, (shard(id), id)).await?;
    Ok(())
}

/// Ordered by (shard, id): after `after`, the rest of its shard, then the next shards.
pub(super) async fn conversation_ids(
    s: &ScyllaStore,
    after: &str,
    limit: u32,
) -> StoreResult<Vec<String>> {
    let (mut sh, mut from) = if after.is_empty() {
        (0, String::new())
    } else {
        (shard(after), after.to_string())
    };
    let mut out = Vec::new();
    while sh < SHARDS && out.len() < limit as usize {
        let left = (limit as usize - out.len()) as i32;
        let rows = s
            .rows::<(String,)>(&cql::INDEXED_CONVERSATIONS, (sh, from.as_str(), left))
            .await?;
        let short = rows.len() < left as usize;
        out.extend(rows.into_iter().map(|r| r.0));
        if short {
            sh += 1;
            from.clear();
        } else {
            break;
        }
    }
    Ok(out)
}
