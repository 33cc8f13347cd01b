//! Retractions, hides, and their log (`retractions`, one partition per conversation).

use super::rows::RetractionCols;
use super::{bigint, cql, messages, ScyllaStore};
use crate::storage::{Retraction, StoreError, StoreResult};

pub(super) async fn last_event(s: &ScyllaStore, id: &str) -> StoreResult<u64> {
    Ok(s.row::<(i64,)>(&cql::LAST_RETRACTION, (id,))
        .await?
        .map(|r| r.0 as u64)
        .unwrap_or(0))
}

async fn log(s: &ScyllaStore, r: &Retraction) -> StoreResult<()> {
    let applied = s
        .lwt(
            &cql::INSERT_RETRACTION,
            (
                r.conversation_id.as_str(),
                bigint(r.event_no),
                bigint(r.seq),
                r.scope.as_str(),
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
            "retraction event {} is taken",
            r.event_no
        )))
    }
}

/// The purge is conditional (`IF EXISTS`): the row was written by an LWT, and a plain write
/// mixed with LWTs on one row can be ordered before them and lost.
pub(super) async fn retract(s: &ScyllaStore, r: Retraction) -> StoreResult<()> {
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
    log(s, &r).await
}

pub(super) async fn hide(s: &ScyllaStore, r: Retraction) -> StoreResult<()> {
    let user = r.for_user.clone().unwrap_or_default();
    s.exec(
        &cql::INSERT_HIDDEN,
        (user.as_str(), r.conversation_id.as_str(), bigint(r.seq)),
    )
    .await?;
    log(s, &r).await
}

/// Everyone's retractions and the user's own hides after `after_event`, read in pages of
/// 500 (hides of other users are skipped, not counted).
pub(super) async fn since(
    s: &ScyllaStore,
    id: &str,
    user_id: &str,
    after_event: u64,
    limit: u32,
) -> StoreResult<Vec<Retraction>> {
    let mut out = Vec::new();
    let mut after = after_event;
    loop {
        let page = s
            .rows::<RetractionCols>(&cql::RETRACTIONS_SINCE, (id, bigint(after), 500i32))
            .await?;
        let n = page.len();
        for r in page.into_iter().map(Retraction::from) {
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
