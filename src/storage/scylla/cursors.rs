//! Cursor moves: conditional updates (`IF x < new`), so a cursor never moves backwards even
//! when two nodes write it at once. One Paxos round each; receipts are not on the send path.

use super::cql::{self, Stmt};
use super::{bigint, ScyllaStore};
use crate::storage::{CursorUpdate, StoreResult};

pub(super) async fn advance(s: &ScyllaStore, updates: Vec<CursorUpdate>) -> StoreResult<()> {
    for u in updates {
        // The statements to run, their two key columns in bind order, and the new value (a
        // read also moves delivered).
        let (stmts, a, b, v): (&[&Stmt], _, _, _) = match u {
            CursorUpdate::DeviceDelivered {
                device_id,
                conversation_id,
                seq,
            } => (
                &[&cql::ADVANCE_DEVICE_DELIVERED],
                device_id,
                conversation_id,
                seq,
            ),
            CursorUpdate::DeviceEvents {
                device_id,
                conversation_id,
                event_no,
            } => (
                &[&cql::ADVANCE_DEVICE_EVENTS],
                device_id,
                conversation_id,
                event_no,
            ),
            CursorUpdate::UserDelivered {
                user_id,
                conversation_id,
                seq,
            } => (
                &[&cql::ADVANCE_MEMBER_DELIVERED],
                conversation_id,
                user_id,
                seq,
            ),
            CursorUpdate::UserRead {
                user_id,
                conversation_id,
                seq,
            } => (
                &[&cql::ADVANCE_MEMBER_READ, &cql::ADVANCE_MEMBER_DELIVERED],
                conversation_id,
                user_id,
                seq,
            ),
            CursorUpdate::Mark {
                conversation_id,
                user_id,
                kind,
                seq,
                ts,
            } => {
                let key = (conversation_id.as_str(), user_id.as_str(), kind);
                super::receipts::record(s, key, seq, ts).await?;
                continue;
            }
        };
        for stmt in stmts {
            s.lwt(stmt, (bigint(v), a.as_str(), b.as_str(), bigint(v)))
                .await?;
        }
    }
    Ok(())
}
