//! Receipt marks (v1.1): one small partition per (conversation, user, kind), trimmed to the
//! latest `RECEIPT_MARKS_KEPT` after each insert, so a lookup reads one row per user.
//! Marks are plain writes (no LWT): a mark is never updated, only inserted or range-deleted.

use super::cql;
use super::{bigint, ScyllaStore};
use crate::storage::{receipt_kind_str, StoreResult, RECEIPT_MARKS_KEPT};
use parley_protocol::ReceiptKind;

pub(super) async fn record(
    s: &ScyllaStore,
    (conv, user, kind): (&str, &str, ReceiptKind),
    seq: u64,
    ts: i64,
) -> StoreResult<()> {
    let k = receipt_kind_str(kind);
    s.exec(&cql::INSERT_RECEIPT_MARK, (conv, user, k, bigint(seq), ts))
        .await?;
    let keep = RECEIPT_MARKS_KEPT as i32;
    let seqs = s
        .rows::<(i64,)>(&cql::RECEIPT_MARK_SEQS, (conv, user, k, keep + 1))
        .await?;
    if seqs.len() > RECEIPT_MARKS_KEPT {
        let oldest_kept = seqs[RECEIPT_MARKS_KEPT - 1].0;
        s.exec(&cql::DROP_RECEIPT_MARKS_BELOW, (conv, user, k, oldest_kept))
            .await?;
    }
    Ok(())
}

pub(super) async fn times(
    s: &ScyllaStore,
    conv: &str,
    kind: ReceiptKind,
    seq: u64,
    user_ids: Vec<String>,
) -> StoreResult<Vec<(String, Option<i64>)>> {
    let k = receipt_kind_str(kind);
    let lookups = user_ids.iter().map(|u| async move {
        let rows = s
            .rows::<(i64, i64)>(&cql::RECEIPT_MARK_FROM, (conv, u.as_str(), k, bigint(seq)))
            .await?;
        Ok::<_, crate::storage::StoreError>((u.clone(), rows.first().map(|r| r.1)))
    });
    futures_util::future::try_join_all(lookups).await
}
