//! Messages: the conditional append and the reads.
//!
//! How `append` keeps `(conversation, seq)` unique and gapless without a transaction across
//! partitions (the SQLite backend gets one for free):
//! 1. Idempotency keys are looked up first (and duplicates within the batch folded).
//! 2. The new messages are written with `INSERT ... IF NOT EXISTS`, one conditional batch per
//!    bucket (a conditional batch must stay in one partition): one Paxos round per bucket. A
//!    seq someone else holds fails the batch: `Conflict`, nothing of that bucket is written.
//! 3. After each bucket, its idempotency keys are written (with the TTL), so that a batch that
//!    fails in a later bucket never leaves a stored message a retry could not find.
//! 4. Last, the conversation's head (a hint of its last seq) is set.
//!
//! The truth about a conversation's end is the messages table: `last_seq` reads the head, then
//! probes the following buckets for later seqs (a writer that died between steps 2 and 4) and
//! rewrites their idempotency keys, which makes step 3 safe against a crash too.

use super::rows::{IdempotencyCols, MessageCols};
use super::{applied, bigint, cql, err, events, ScyllaStore};
use crate::storage::{
    AppendOutcome, Appended, NewMessage, Order, StoreError, StoreResult, StoredMessage,
};
use ::scylla::statement::batch::{Batch, BatchType};
use std::collections::{BTreeSet, HashMap};

/// The head and the true last seq of a conversation: any later seqs a writer stored before it
/// could move the head are found by probing the buckets after it.
async fn probe_last(s: &ScyllaStore, id: &str) -> StoreResult<(u64, u64)> {
    let head = s
        .row::<(Option<i64>,)>(&cql::HEAD, (id,))
        .await?
        .and_then(|r| r.0)
        .unwrap_or(0) as u64;
    let mut last = head;
    let mut b = cql::bucket(head + 1);
    loop {
        let top = s.row::<(i64,)>(&cql::LAST_IN_BUCKET, (id, b)).await?;
        match top {
            Some((seq,)) if seq as u64 > last => last = seq as u64,
            _ => break,
        }
        b += 1;
    }
    Ok((head, last))
}

/// The last seq of a conversation; with `repair`, what a dead writer left past the head gets
/// its idempotency keys rewritten and the head moved.
pub(super) async fn last_seq(s: &ScyllaStore, id: &str, repair: bool) -> StoreResult<u64> {
    let (head, last) = probe_last(s, id).await?;
    if repair && last > head {
        for m in page(s, id, head, last + 1, u32::MAX, Order::Asc).await? {
            let meta = m.meta.as_deref();
            let hash = crate::storage::content_hash(
                id,
                m.text.as_deref(),
                meta,
                &m.attachments,
                m.reply_to,
            );
            let key = (m.sender_device_id.as_str(), m.client_id.as_str());
            put_idempotency(s, key, id, m.seq, &m.message_id, m.ts, &hash).await?;
        }
        s.exec(&cql::SET_HEAD, (bigint(last), id)).await?;
    }
    Ok(last)
}

/// `key`: (device, client id).
pub(super) async fn put_idempotency(
    s: &ScyllaStore,
    key: (&str, &str),
    conversation_id: &str,
    seq: u64,
    message_id: &str,
    ts: i64,
    hash: &str,
) -> StoreResult<()> {
    s.exec(
        &cql::INSERT_IDEMPOTENCY,
        (
            key.0,
            key.1,
            conversation_id,
            bigint(seq),
            message_id,
            ts,
            hash,
            s.idempotency_ttl,
        ),
    )
    .await
    .map(|_| ())
}

/// Step 1: the outcome of each message that is a duplicate, and the (index, seq) of the fresh
/// ones, numbered from `first_seq`.
async fn fold_duplicates(
    s: &ScyllaStore,
    id: &str,
    first_seq: u64,
    batch: &[NewMessage],
) -> StoreResult<(Vec<Option<AppendOutcome>>, Vec<(usize, u64)>)> {
    let mut out = Vec::with_capacity(batch.len());
    let mut fresh: Vec<(usize, u64)> = Vec::new();
    // (device, client id) -> (index, seq) of its first occurrence in this batch
    let mut seen: HashMap<(&str, &str), (usize, u64)> = HashMap::new();
    let mut seq = first_seq;
    for (k, m) in batch.iter().enumerate() {
        let key = (m.sender_device_id.as_str(), m.client_id.as_str());
        let hash = crate::storage::payload_hash(id, m);
        if let Some(&(first, at)) = seen.get(&key) {
            let same = crate::storage::payload_hash(id, &batch[first]) == hash;
            out.push(Some(if same {
                AppendOutcome::Duplicate {
                    conversation_id: id.to_string(),
                    seq: at,
                    message_id: batch[first].message_id.clone(),
                    ts: batch[first].ts,
                }
            } else {
                AppendOutcome::Reused {
                    conversation_id: id.to_string(),
                    seq: at,
                }
            }));
            continue;
        }
        if let Some(d) = s.row::<IdempotencyCols>(&cql::IDEMPOTENCY, key).await? {
            let reused = d.payload_hash.as_ref().is_some_and(|h| *h != hash);
            out.push(Some(if reused {
                AppendOutcome::Reused {
                    conversation_id: d.conversation_id,
                    seq: d.seq as u64,
                }
            } else {
                AppendOutcome::Duplicate {
                    conversation_id: d.conversation_id,
                    seq: d.seq as u64,
                    message_id: d.message_id,
                    ts: d.ts,
                }
            }));
            continue;
        }

        seen.insert(key, (k, seq));
        fresh.push((k, seq));
        out.push(None);
        seq += 1;
    }
    Ok((out, fresh))
}

/// Steps 2-3 for the fresh messages of one bucket.
async fn insert_bucket(
    s: &ScyllaStore,
    id: &str,
    bucket: i64,
    fresh: &[(usize, u64)],
    batch: &[NewMessage],
) -> StoreResult<()> {
    let mut b = Batch::new(BatchType::Unlogged);
    b.set_consistency(s.consistency.0);
    b.set_serial_consistency(Some(s.consistency.1));
    let mut values = Vec::new();
    for (k, seq) in fresh {
        let m = &batch[*k];
        let attachments = if m.attachments.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&m.attachments).map_err(err)?)
        };
        b.append_statement(s.ps(&cql::INSERT_MESSAGE).clone());
        values.push((
            id,
            bucket,
            bigint(*seq),
            m.message_id.as_str(),
            m.sender_id.as_str(),
            m.sender_device_id.as_str(),
            m.client_id.as_str(),
            m.ts,
            m.text.as_deref(),
            attachments,
            m.meta.as_deref(),
            false,
            m.reply_to.map(bigint),
        ));
    }
    let res = s.session.batch(&b, values).await.map_err(err)?;
    if !applied(res)? {
        return Err(StoreError::Conflict(format!("seq {} is taken", fresh[0].1)));
    }
    for (k, seq) in fresh {
        let m = &batch[*k];
        let key = (m.sender_device_id.as_str(), m.client_id.as_str());
        let hash = crate::storage::payload_hash(id, m);
        put_idempotency(s, key, id, *seq, &m.message_id, m.ts, &hash).await?;

        for a in &m.attachments {
            s.exec(&cql::INSERT_GRANT, (a.file_id.as_str(), id, bigint(*seq)))
                .await?;
        }
    }
    Ok(())
}

pub(super) async fn append(
    s: &ScyllaStore,
    id: &str,
    first_seq: u64,
    batch: &[NewMessage],
) -> StoreResult<Appended> {
    let (out, fresh) = fold_duplicates(s, id, first_seq, batch).await?;
    if let Some((_, last)) = fresh.last() {
        // Before the messages: a crash after them still finds the conversation to notify.
        super::push::mark_pending(s, id, *last).await?;
    }
    let mut start = 0;
    while start < fresh.len() {
        let bucket = cql::bucket(fresh[start].1);
        let end = fresh[start..]
            .iter()
            .position(|(_, seq)| cql::bucket(*seq) != bucket)
            .map_or(fresh.len(), |p| start + p);
        insert_bucket(s, id, bucket, &fresh[start..end], batch).await?;
        start = end;
    }
    // 4. The head: a hint for readers, who probe past it anyway.
    if let Some((_, last)) = fresh.last() {
        s.exec(&cql::SET_HEAD, (bigint(*last), id)).await?;
    }
    let mut fresh_iter = fresh.iter();
    let outcomes = out
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| AppendOutcome::Stored {
                seq: fresh_iter.next().expect("one per fresh message").1,
            })
        })
        .collect();
    Ok(Appended {
        outcomes,
        push_pending: !fresh.is_empty(),
    })
}

/// Messages with `after < seq < before`, walking the buckets in `order`.
pub(super) async fn page(
    s: &ScyllaStore,
    id: &str,
    after: u64,
    before: u64,
    limit: u32,
    order: Order,
) -> StoreResult<Vec<StoredMessage>> {
    let mut out = Vec::new();
    if before <= after + 1 || limit == 0 {
        return Ok(out);
    }
    let lo = cql::bucket(after + 1);
    let hi = if before == u64::MAX {
        cql::bucket(probe_last(s, id).await?.1.max(after + 1))
    } else {
        cql::bucket(before - 1)
    };
    let buckets: Vec<i64> = match order {
        Order::Asc => (lo..=hi).collect(),
        Order::Desc => (lo..=hi).rev().collect(),
    };
    let stmt = match order {
        Order::Asc => &cql::MESSAGES_ASC,
        Order::Desc => &cql::MESSAGES_DESC,
    };
    for b in buckets {
        let left = (limit as usize - out.len()).min(i32::MAX as usize) as i32;
        let rows = s
            .rows::<MessageCols>(stmt, (id, b, bigint(after), bigint(before), left))
            .await?;
        out.extend(rows.into_iter().map(StoredMessage::from));
        if out.len() >= limit as usize {
            break;
        }
    }
    Ok(out)
}

pub(super) async fn one(s: &ScyllaStore, id: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
    Ok(
        s.row::<MessageCols>(&cql::MESSAGE, (id, cql::bucket(seq), bigint(seq)))
            .await?
            .map(StoredMessage::from),
    )
}

pub(super) async fn senders_between(
    s: &ScyllaStore,
    id: &str,
    after: u64,
    upto: u64,
) -> StoreResult<Vec<String>> {
    let msgs = page(s, id, after, upto.saturating_add(1), u32::MAX, Order::Asc).await?;
    let set: BTreeSet<String> = msgs.into_iter().map(|m| m.sender_id).collect();
    Ok(set.into_iter().collect())
}

pub(super) async fn count_unread(
    s: &ScyllaStore,
    id: &str,
    user_id: &str,
    after: u64,
) -> StoreResult<u64> {
    let hidden: BTreeSet<u64> = events::hidden_seqs(s, user_id, id, after, u64::MAX)
        .await?
        .into_iter()
        .collect();
    let msgs = page(s, id, after, u64::MAX, u32::MAX, Order::Asc).await?;
    Ok(msgs
        .iter()
        .filter(|m| m.sender_id != user_id && !m.deleted && !hidden.contains(&m.seq))
        .count() as u64)
}
