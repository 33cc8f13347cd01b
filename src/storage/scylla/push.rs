//! The push outbox on ScyllaDB. Pending marks and jobs are spread over `SHARDS` partitions
//! (by conversation and by device); a bridge leasing work scans the shards. Jobs change only
//! by lightweight transactions on their `version` (and the lease they saw), so one bridge
//! holds a lease and a completion never removes content that arrived meanwhile. Pending marks
//! are plain writes cleared `USING TIMESTAMP` of the mark that was processed, so a newer mark
//! survives. Costs: scheduling reads each member's devices (one query per member); the badge
//! counts per conversation; leasing scans the shards. Fine for thousands of pushes a second,
//! not tuned beyond.

use super::rows::{PushJobCols, PushTargetCols};
use super::{bigint, conversations, cql, messages, users, ScyllaStore};
use crate::storage::{
    PushDone, PushJob, PushKind, PushRecipient, PushSchedule, PushTargetRow, StoreResult,
};

pub(super) const SHARDS: i32 = 16;

pub(super) fn shard(key: &str) -> i32 {
    // FNV-1a: fixed, so every node and bridge agrees.
    let mut h: u32 = 0x811c9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    (h % SHARDS as u32) as i32
}

pub(super) async fn target(s: &ScyllaStore, device_id: &str) -> StoreResult<Option<PushTargetRow>> {
    Ok(s.row::<PushTargetCols>(&cql::PUSH_TARGET, (device_id,))
        .await?
        .map(PushTargetRow::from))
}

/// Written by `append` before the messages: an intent, never a lost push.
pub(super) async fn mark_pending(s: &ScyllaStore, id: &str, upto: u64) -> StoreResult<()> {
    s.exec(&cql::MARK_PUSH_PENDING, (bigint(upto), shard(id), id))
        .await
        .map(|_| ())
}

pub(super) async fn recipients(s: &ScyllaStore, id: &str) -> StoreResult<Vec<PushRecipient>> {
    let mut out = Vec::new();
    for m in conversations::members_of(s, id).await? {
        for device in users::device_ids_of_user(s, &m.user_id).await? {
            let Some(t) = target(s, &device).await? else {
                continue;
            };
            if t.disabled.is_some() {
                continue;
            }
            let delivered = conversations::device_cursor(s, &device, id)
                .await?
                .unwrap_or(m.joined_seq);
            out.push(PushRecipient {
                device_id: device,
                user_id: m.user_id.clone(),
                delivered_seq: delivered,
            });
        }
    }
    Ok(out)
}

pub(super) async fn pending(s: &ScyllaStore, limit: u32) -> StoreResult<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for sh in 0..SHARDS {
        let left = (limit as usize).saturating_sub(out.len());
        if left == 0 {
            break;
        }
        for (conv, upto, _) in s
            .rows::<(String, i64, i64)>(&cql::PUSH_PENDING, (sh, left as i32))
            .await?
        {
            out.push((conv, upto as u64));
        }
    }
    Ok(out)
}

async fn job(s: &ScyllaStore, device: &str, id: &str) -> StoreResult<Option<PushJobCols>> {
    s.row::<PushJobCols>(&cql::PUSH_JOB, (shard(device), device, id))
        .await
}

/// Creates the job, or collapses into the existing one (retried on a lost race).
async fn upsert(s: &ScyllaStore, id: &str, j: &PushSchedule, kind: PushKind) -> StoreResult<()> {
    let sh = shard(&j.device_id);
    for _ in 0..5 {
        let Some(cur) = job(s, &j.device_id, id).await? else {
            let row = (
                sh,
                j.device_id.as_str(),
                id,
                j.user_id.as_str(),
                kind.as_str(),
            );
            let rest = (bigint(j.seq), 1i64, j.due_at, j.now, 0i32, 0i64);
            if s.lwt(
                &cql::INSERT_PUSH_JOB,
                (
                    row.0, row.1, row.2, row.3, row.4, rest.0, rest.1, rest.2, rest.3, rest.4,
                    rest.5,
                ),
            )
            .await?
            {
                return Ok(());
            }
            continue;
        };
        let existing = PushKind::parse(&cur.kind);
        let newer = j.seq as i64 > cur.seq || existing == PushKind::Clear;
        let keep = match kind {
            PushKind::Message => !newer,
            PushKind::Clear => existing == PushKind::Message && cur.seq > j.seq as i64,
        };
        if keep {
            return Ok(());
        }
        let due = if kind == PushKind::Message && existing == PushKind::Message {
            cur.due_at.min(j.due_at)
        } else {
            j.due_at
        };
        let v = (
            kind.as_str(),
            bigint(j.seq),
            cur.version + 1,
            due,
            j.now,
            0i32,
        );
        if s.lwt(
            &cql::UPDATE_PUSH_JOB,
            (
                v.0,
                v.1,
                v.2,
                v.3,
                v.4,
                v.5,
                sh,
                j.device_id.as_str(),
                id,
                cur.version,
            ),
        )
        .await?
        {
            return Ok(());
        }
    }
    Err(crate::storage::StoreError::Unavailable(
        "push job kept changing".into(),
    ))
}

pub(super) async fn schedule(
    s: &ScyllaStore,
    id: &str,
    upto: u64,
    jobs: Vec<PushSchedule>,
) -> StoreResult<()> {
    for j in &jobs {
        upsert(s, id, j, PushKind::Message).await?;
    }
    if let Some((seen, written)) = s
        .row::<(i64, i64)>(&cql::PUSH_PENDING_ONE, (shard(id), id))
        .await?
    {
        if seen as u64 <= upto {
            s.exec(&cql::CLEAR_PUSH_PENDING, (written, shard(id), id))
                .await?;
        }
    }
    Ok(())
}

pub(super) async fn clear(
    s: &ScyllaStore,
    user: &str,
    id: &str,
    read_seq: u64,
    reader: &str,
    now: i64,
) -> StoreResult<()> {
    for (device, seq) in s
        .rows::<(String, i64)>(&cql::PUSH_SHOWN, (user, id))
        .await?
    {
        if device == reader || seq as u64 > read_seq {
            continue;
        }
        let j = PushSchedule {
            device_id: device,
            user_id: user.to_string(),
            seq: read_seq,
            due_at: now,
            now,
        };
        upsert(s, id, &j, PushKind::Clear).await?;
    }
    Ok(())
}

pub(super) async fn lease(
    s: &ScyllaStore,
    owner: &str,
    now: i64,
    until: i64,
    limit: u32,
) -> StoreResult<Vec<PushJob>> {
    let mut out = Vec::new();
    // Start at a random shard so that bridges spread over the shards.
    let first = rand::random::<u32>() as i32 % SHARDS;
    for k in 0..SHARDS {
        let sh = (first + k) % SHARDS;
        for row in s
            .rows::<PushJobCols>(&cql::PUSH_JOBS_OF_SHARD, (sh,))
            .await?
        {
            if out.len() >= limit as usize {
                return Ok(out);
            }
            if row.due_at > now || row.lease_until > now {
                continue;
            }
            let key = (sh, row.device_id.as_str(), row.conversation_id.as_str());
            if s.lwt(
                &cql::LEASE_PUSH_JOB,
                (
                    owner,
                    until,
                    key.0,
                    key.1,
                    key.2,
                    row.version,
                    row.lease_until,
                ),
            )
            .await?
            {
                out.push(row.job());
            }
        }
    }
    Ok(out)
}

pub(super) async fn done(s: &ScyllaStore, job: &PushJob, how: PushDone) -> StoreResult<()> {
    let (d, id) = (job.device_id.as_str(), job.conversation_id.as_str());
    match (how, job.kind) {
        (PushDone::Delivered, PushKind::Message) => {
            s.exec(
                &cql::SET_PUSH_SHOWN,
                (job.user_id.as_str(), id, d, bigint(job.seq)),
            )
            .await?;
        }
        (PushDone::Delivered, PushKind::Clear) => {
            s.exec(&cql::DELETE_PUSH_SHOWN, (job.user_id.as_str(), id, d))
                .await?;
        }
        _ => {}
    }
    let key = (shard(d), d, id);
    if !s
        .lwt(
            &cql::DELETE_PUSH_JOB,
            (key.0, key.1, key.2, bigint(job.version)),
        )
        .await?
    {
        // Changed while in flight: deliver the newer content next.
        s.lwt(&cql::RELEASE_PUSH_JOB, (0i64, key.0, key.1, key.2))
            .await?;
    }
    Ok(())
}

pub(super) async fn retry(
    s: &ScyllaStore,
    job: &PushJob,
    due_at: i64,
    error: &str,
) -> StoreResult<()> {
    let attempts = job.attempts.saturating_add(1).min(i32::MAX as u32) as i32;
    let d = job.device_id.as_str();
    s.lwt(
        &cql::RETRY_PUSH_JOB,
        (
            attempts,
            due_at,
            error,
            0i64,
            shard(d),
            d,
            job.conversation_id.as_str(),
        ),
    )
    .await
    .map(|_| ())
}

pub(super) async fn queue(s: &ScyllaStore) -> StoreResult<(u64, Option<i64>)> {
    let (mut n, mut oldest) = (0u64, None::<i64>);
    for sh in 0..SHARDS {
        for row in s
            .rows::<PushJobCols>(&cql::PUSH_JOBS_OF_SHARD, (sh,))
            .await?
        {
            n += 1;
            oldest = Some(oldest.map_or(row.created_at, |o| o.min(row.created_at)));
        }
    }
    Ok((n, oldest))
}

pub(super) async fn disable_target(
    s: &ScyllaStore,
    device: &str,
    reason: &str,
    at: i64,
    registered_before: Option<i64>,
) -> StoreResult<bool> {
    let Some(t) = target(s, device).await? else {
        return Ok(false);
    };
    if t.disabled.is_some() || registered_before.is_some_and(|b| t.registered_at >= b) {
        return Ok(false);
    }
    s.exec(&cql::DISABLE_PUSH_TARGET, (at, reason, device))
        .await?;
    let sh = shard(device);
    for row in s
        .rows::<PushJobCols>(&cql::PUSH_JOBS_OF_SHARD, (sh,))
        .await?
    {
        if row.device_id == device {
            s.lwt(
                &cql::DROP_PUSH_JOB,
                (sh, device, row.conversation_id.as_str()),
            )
            .await?;
            s.exec(
                &cql::DELETE_PUSH_SHOWN,
                (row.user_id.as_str(), row.conversation_id.as_str(), device),
            )
            .await?;
        }
    }
    Ok(true)
}

pub(super) async fn set_muted_until(
    s: &ScyllaStore,
    user: &str,
    id: &str,
    until: i64,
) -> StoreResult<()> {
    s.exec(&cql::SET_MUTED_UNTIL, (user, id, until))
        .await
        .map(|_| ())
}

pub(super) async fn update_settings(
    s: &ScyllaStore,
    user: &str,
    id: &str,
    p: crate::storage::SettingsPatch,
) -> StoreResult<()> {
    if let Some(until) = p.muted_until {
        s.exec(&cql::SET_MUTED_UNTIL, (user, id, until)).await?;
    }
    if let Some(archived) = p.archived {
        s.exec(&cql::SET_ARCHIVED, (archived, user, id)).await?;
    }
    if let Some(at) = p.pinned_at {
        s.exec(&cql::SET_PINNED_AT, (at, user, id)).await?;
    }
    Ok(())
}

pub(super) async fn settings_of_user(
    s: &ScyllaStore,
    user: &str,
) -> StoreResult<Vec<(String, crate::storage::ConvSettings)>> {
    type Cols = (String, Option<i64>, Option<bool>, Option<i64>);
    Ok(s.rows::<Cols>(&cql::SETTINGS_OF_USER, (user,))
        .await?
        .into_iter()
        .map(|(id, muted, archived, pinned)| {
            let settings = crate::storage::ConvSettings {
                muted_until: muted.unwrap_or(0),
                archived: archived.unwrap_or(false),
                pinned_at: pinned.unwrap_or(0),
            };
            (id, settings)
        })
        .collect())
}

pub(super) async fn muted_until(s: &ScyllaStore, user: &str, id: &str) -> StoreResult<i64> {
    Ok(s.row::<(Option<i64>,)>(&cql::MUTED_UNTIL, (user, id))
        .await?
        .and_then(|r| r.0)
        .unwrap_or(0))
}

pub(super) async fn unread_total(s: &ScyllaStore, user: &str) -> StoreResult<u64> {
    let mut n = 0;
    for id in conversations::ids_of_user(s, user).await? {
        if let Some(m) = conversations::member(s, &id, user).await? {
            n += messages::count_unread(s, &id, user, m.read_seq).await?;
        }
    }
    Ok(n)
}
