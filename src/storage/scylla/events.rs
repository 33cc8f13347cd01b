//! The event log (table `retractions`, one partition per conversation; schema 004 says why
//! it keeps that name), and what each event changes: the purge of a retracted message,
//! hides, earlier versions, reactions.

use super::rows::{EventCols, IdempotencyCols, ReactionCols, VersionCols};
use super::{bigint, cql, messages, ScyllaStore};
use crate::storage::{
    EditContent, EditOutcome, EventKind, IdemKey, MessageEvent, MessageVersion, ReactionCount,
    StoreError, StoreResult,
};
use std::collections::BTreeMap;

pub(super) async fn last_event(s: &ScyllaStore, id: &str) -> StoreResult<u64> {
    Ok(s.row::<(i64,)>(&cql::LAST_EVENT, (id,))
        .await?
        .map(|r| r.0 as u64)
        .unwrap_or(0))
}

async fn log(s: &ScyllaStore, r: &MessageEvent) -> StoreResult<()> {
    let data = r.kind.data();
    let applied = s
        .lwt(
            &cql::INSERT_EVENT,
            (
                r.conversation_id.as_str(),
                bigint(r.event_no),
                bigint(r.seq),
                r.kind.name(),
                r.kind.scope(),
                data.as_deref(),
                r.by_user.as_str(),
                r.for_user.as_deref(),
                r.ts,
            ),
        )
        .await?;
    if applied {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "event {} is taken",
            r.event_no
        )))
    }
}

/// The purge is conditional (`IF EXISTS`): the row was written by an LWT, and a plain write
/// mixed with LWTs on one row can be ordered before them and lost. Reactions are removed with
/// a plain range delete; one that survived it on a skewed clock is never shown, because reads
/// skip the reactions of a retracted message.
pub(super) async fn retract(s: &ScyllaStore, r: MessageEvent) -> StoreResult<()> {
    let Some(m) = messages::one(s, &r.conversation_id, r.seq).await? else {
        return Err(StoreError::NotFound);
    };
    let (c, b, seq) = (
        r.conversation_id.as_str(),
        cql::bucket(r.seq),
        bigint(r.seq),
    );
    if !s
        .lwt(&cql::PURGE_MESSAGE, (true, r.by_user.as_str(), c, b, seq))
        .await?
    {
        return Err(StoreError::NotFound);
    }
    for a in &m.attachments {
        s.exec(&cql::DELETE_GRANT, (a.file_id.as_str(), c, seq))
            .await?;
    }
    s.exec(&cql::DELETE_VERSIONS, (c, seq)).await?;
    s.exec(&cql::DELETE_REACTIONS_OF, (c, b, seq)).await?;
    log(s, &r).await
}

/// In order: the idempotency check, the earlier version (keyed by this event's number, so a
/// repeated write is the same row), the conditional update of the message (not retracted),
/// the event, the key. A crash part-way leaves at most an earlier version that equals the
/// current one; the client's retry then applies the edit.
pub(super) async fn edit(
    s: &ScyllaStore,
    e: MessageEvent,
    content: EditContent,
    key: IdemKey,
) -> StoreResult<EditOutcome> {
    if let Some(k) = s
        .row::<IdempotencyCols>(
            &cql::IDEMPOTENCY,
            (key.device_id.as_str(), key.client_id.as_str()),
        )
        .await?
    {
        return Ok(
            if k.payload_hash.as_deref() == Some(key.payload_hash.as_str()) {
                EditOutcome::Duplicate { ts: k.ts }
            } else {
                EditOutcome::Reused
            },
        );
    }
    let (c, b, seq) = (
        e.conversation_id.as_str(),
        cql::bucket(e.seq),
        bigint(e.seq),
    );
    let Some(m) = messages::one(s, c, e.seq).await?.filter(|m| !m.deleted) else {
        return Ok(EditOutcome::Gone);
    };
    s.exec(
        &cql::INSERT_VERSION,
        (
            c,
            seq,
            bigint(e.event_no),
            m.text.as_deref(),
            m.meta.as_deref(),
            e.ts,
        ),
    )
    .await?;
    let text = content.text.as_deref();
    let meta = content.meta.as_deref();
    if !s
        .lwt(&cql::EDIT_MESSAGE, (text, meta, e.ts, c, b, seq, false))
        .await?
    {
        return Ok(EditOutcome::Gone);
    }
    log(s, &e).await?;
    let k = (key.device_id.as_str(), key.client_id.as_str());
    messages::put_idempotency(s, k, c, e.seq, &m.message_id, e.ts, &key.payload_hash).await?;
    Ok(EditOutcome::Applied)
}

pub(super) async fn versions(
    s: &ScyllaStore,
    id: &str,
    seq: u64,
) -> StoreResult<Vec<MessageVersion>> {
    Ok(s.rows::<VersionCols>(&cql::VERSIONS, (id, bigint(seq)))
        .await?
        .into_iter()
        .map(|v| MessageVersion {
            text: v.text,
            meta: v.meta,
            replaced_at: v.replaced_at,
        })
        .collect())
}

/// Adds or removes one reaction (conditionally, so that only a change is logged).
pub(super) async fn react(s: &ScyllaStore, e: MessageEvent) -> StoreResult<bool> {
    let EventKind::React { emoji, added } = &e.kind else {
        return Err(StoreError::Internal("react without a reaction".into()));
    };
    let (c, b, seq) = (
        e.conversation_id.as_str(),
        cql::bucket(e.seq),
        bigint(e.seq),
    );
    let (emoji, user) = (emoji.as_str(), e.by_user.as_str());
    let changed = if *added {
        s.lwt(&cql::INSERT_REACTION, (c, b, seq, emoji, user, e.ts))
            .await?
    } else {
        s.lwt(&cql::DELETE_REACTION, (c, b, seq, emoji, user))
            .await?
    };
    if changed {
        log(s, &e).await?;
    }
    Ok(changed)
}

/// Per message of `seqs`: emojis by count (then by first use), and whether `viewer` reacted
/// with each. One query per bucket the seqs span.
pub(super) async fn reactions(
    s: &ScyllaStore,
    id: &str,
    seqs: &[u64],
    viewer: &str,
) -> StoreResult<Vec<(u64, Vec<ReactionCount>)>> {
    let (Some(&lo), Some(&hi)) = (seqs.iter().min(), seqs.iter().max()) else {
        return Ok(Vec::new());
    };
    // (seq, emoji) -> (count, me, first use)
    let mut acc: BTreeMap<(u64, String), (u32, bool, i64)> = BTreeMap::new();
    for b in cql::bucket(lo)..=cql::bucket(hi) {
        let rows = s
            .rows::<ReactionCols>(&cql::REACTIONS_BETWEEN, (id, b, bigint(lo), bigint(hi)))
            .await?;
        for r in rows {
            let seq = r.seq as u64;
            if !seqs.contains(&seq) {
                continue;
            }
            let e = acc.entry((seq, r.emoji)).or_insert((0, false, i64::MAX));
            e.0 += 1;
            e.1 |= r.user_id == viewer;
            e.2 = e.2.min(r.ts);
        }
    }
    let mut out: BTreeMap<u64, Vec<(ReactionCount, i64)>> = BTreeMap::new();
    for ((seq, emoji), (count, me, first)) in acc {
        out.entry(seq)
            .or_default()
            .push((ReactionCount { emoji, count, me }, first));
    }
    Ok(out
        .into_iter()
        .map(|(seq, mut v)| {
            v.sort_by(|a, b| b.0.count.cmp(&a.0.count).then(a.1.cmp(&b.1)));
            (seq, v.into_iter().map(|x| x.0).collect())
        })
        .collect())
}

pub(super) async fn hide(s: &ScyllaStore, r: MessageEvent) -> StoreResult<()> {
    let user = r.for_user.clone().unwrap_or_default();
    s.exec(
        &cql::INSERT_HIDDEN,
        (user.as_str(), r.conversation_id.as_str(), bigint(r.seq)),
    )
    .await?;
    log(s, &r).await
}

/// Everyone's events and the user's own hides after `after_event`, read in pages of
/// 500 (hides of other users are skipped, not counted).
pub(super) async fn since(
    s: &ScyllaStore,
    id: &str,
    user_id: &str,
    after_event: u64,
    limit: u32,
) -> StoreResult<Vec<MessageEvent>> {
    let mut out = Vec::new();
    let mut after = after_event;
    loop {
        let page = s
            .rows::<EventCols>(&cql::EVENTS_SINCE, (id, bigint(after), 500i32))
            .await?;
        let n = page.len();
        for r in page.into_iter().map(MessageEvent::from) {
            after = r.event_no;
            if r.for_user.as_deref().is_none_or(|u| u == user_id) {
                out.push(r);
                if out.len() >= limit as usize {
                    return Ok(out);
                }
            }
        }
        if n < 500 {
            return Ok(out);
        }
    }
}

pub(super) async fn hidden_seqs(
    s: &ScyllaStore,
    user_id: &str,
    id: &str,
    after: u64,
    before: u64,
) -> StoreResult<Vec<u64>> {
    Ok(s.rows::<(i64,)>(
        &cql::HIDDEN_BETWEEN,
        (user_id, id, bigint(after), bigint(before)),
    )
    .await?
    .into_iter()
    .map(|r| r.0 as u64)
    .collect())
}
