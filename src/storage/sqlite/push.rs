//! The push outbox: pending marks, jobs (collapse, lease, completion), what devices were
//! notified of, targets' state, mute settings and the badge.

use super::rows::{self, int, PUSH_JOB_COLS};
use super::sql;
use crate::storage::{PushDone, PushJob, PushKind, PushRecipient, PushSchedule, StoreResult};
use rusqlite::{params, Connection};

/// Called by `append` in its transaction: the conversation has messages to schedule, if any
/// member's device has an active push target (most conversations of a busy node have none).
/// Whether it marked.
pub(super) fn mark_pending(c: &Connection, id: &str, upto: u64) -> StoreResult<bool> {
    c.prepare_cached(
        "INSERT INTO push_pending (conversation_id, upto_seq)
         SELECT ?1, ?2 WHERE EXISTS (
             SELECT 1 FROM members m JOIN devices d ON d.user_id = m.user_id
             WHERE m.conversation_id = ?1 AND d.push_provider IS NOT NULL AND d.push_disabled_at IS NULL)
         ON CONFLICT (conversation_id) DO UPDATE SET upto_seq = MAX(upto_seq, excluded.upto_seq)",
    )
    .and_then(|mut s| s.execute(params![id, int(upto)]))
    .map(|changed| changed > 0)
    .map_err(sql)
}

pub(super) fn recipients(c: &Connection, id: &str) -> StoreResult<Vec<PushRecipient>> {
    let mut s = c
        .prepare_cached(
            "SELECT d.device_id, d.user_id, COALESCE(dc.delivered_seq, m.joined_seq)
             FROM members m
             JOIN devices d ON d.user_id = m.user_id
             LEFT JOIN device_cursors dc ON dc.device_id = d.device_id AND dc.conversation_id = m.conversation_id
             WHERE m.conversation_id = ?1 AND d.push_provider IS NOT NULL AND d.push_disabled_at IS NULL",
        )
        .map_err(sql)?;
    let rows = s
        .query_map([id], |r| {
            Ok(PushRecipient {
                device_id: r.get(0)?,
                user_id: r.get(1)?,
                delivered_seq: rows::uint(r, 2)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn pending(c: &Connection, limit: u32) -> StoreResult<Vec<(String, u64)>> {
    let mut s = c
        .prepare_cached("SELECT conversation_id, upto_seq FROM push_pending LIMIT ?1")
        .map_err(sql)?;
    let rows = s
        .query_map([limit], |r| Ok((r.get(0)?, rows::uint(r, 1)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn schedule(
    c: &Connection,
    id: &str,
    upto: u64,
    jobs: &[PushSchedule],
) -> StoreResult<()> {
    for j in jobs {
        c.prepare_cached(
            "INSERT INTO push_jobs (device_id, conversation_id, user_id, kind, seq, version, due_at, created_at)
             VALUES (?1, ?2, ?3, 'message', ?4, 1, ?5, ?6)
             ON CONFLICT (device_id, conversation_id) DO UPDATE SET
                 kind = 'message', seq = excluded.seq, version = version + 1,
                 due_at = CASE WHEN kind = 'message' THEN MIN(due_at, excluded.due_at) ELSE excluded.due_at END,
                 created_at = excluded.created_at, attempts = 0
             WHERE excluded.seq > push_jobs.seq OR push_jobs.kind = 'clear'",
        )
        .and_then(|mut s| {
            s.execute(params![j.device_id, id, j.user_id, int(j.seq), j.due_at, j.now])
        })
        .map_err(sql)?;
    }
    c.prepare_cached("DELETE FROM push_pending WHERE conversation_id = ?1 AND upto_seq <= ?2")
        .and_then(|mut s| s.execute(params![id, int(upto)]))
        .map_err(sql)?;
    Ok(())
}

/// A pending message job for newer messages stays: it replaces the notification anyway.
pub(super) fn clear(
    c: &Connection,
    user: &str,
    id: &str,
    read_seq: u64,
    reader: &str,
    now: i64,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO push_jobs (device_id, conversation_id, user_id, kind, seq, version, due_at, created_at)
         SELECT s.device_id, s.conversation_id, s.user_id, 'clear', ?3, 1, ?5, ?5 FROM push_shown s
         WHERE s.user_id = ?1 AND s.conversation_id = ?2 AND s.seq <= ?3 AND s.device_id != ?4
         ON CONFLICT (device_id, conversation_id) DO UPDATE SET
             kind = 'clear', seq = excluded.seq, version = version + 1, due_at = excluded.due_at,
             created_at = excluded.created_at, attempts = 0
         WHERE push_jobs.kind = 'clear' OR push_jobs.seq <= excluded.seq",
    )
    .and_then(|mut s| s.execute(params![user, id, int(read_seq), reader, now]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn lease(
    c: &Connection,
    owner: &str,
    now: i64,
    until: i64,
    limit: u32,
) -> StoreResult<Vec<PushJob>> {
    let mut s = c
        .prepare_cached(&format!(
            "UPDATE push_jobs SET lease_owner = ?1, lease_until = ?3
             WHERE (device_id, conversation_id) IN (
                 SELECT device_id, conversation_id FROM push_jobs
                 WHERE due_at <= ?2 AND lease_until <= ?2 ORDER BY due_at LIMIT ?4)
             RETURNING {PUSH_JOB_COLS}"
        ))
        .map_err(sql)?;
    let rows = s
        .query_map(params![owner, now, until, limit], rows::push_job)
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn done(c: &Connection, job: &PushJob, how: PushDone) -> StoreResult<()> {
    let (d, conv) = (&job.device_id, &job.conversation_id);
    match (how, job.kind) {
        (PushDone::Delivered, PushKind::Message) => c
            .prepare_cached(
                "INSERT INTO push_shown (device_id, conversation_id, user_id, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device_id, conversation_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            )
            .and_then(|mut s| s.execute(params![d, conv, job.user_id, int(job.seq)])),
        (PushDone::Delivered, PushKind::Clear) => c
            .prepare_cached(
                "DELETE FROM push_shown WHERE device_id = ?1 AND conversation_id = ?2 AND seq <= ?3",
            )
            .and_then(|mut s| s.execute(params![d, conv, int(job.seq)])),
        _ => Ok(0),
    }
    .map_err(sql)?;
    let removed = c
        .prepare_cached(
            "DELETE FROM push_jobs WHERE device_id = ?1 AND conversation_id = ?2 AND version = ?3",
        )
        .and_then(|mut s| s.execute(params![d, conv, int(job.version)]))
        .map_err(sql)?;
    if removed == 0 {
        // Changed while in flight (a newer message collapsed into it): deliver that next.
        c.prepare_cached(
            "UPDATE push_jobs SET lease_owner = NULL, lease_until = 0 WHERE device_id = ?1 AND conversation_id = ?2",
        )
        .and_then(|mut s| s.execute(params![d, conv]))
        .map_err(sql)?;
    }
    Ok(())
}

pub(super) fn retry(c: &Connection, job: &PushJob, due_at: i64, error: &str) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE push_jobs SET attempts = attempts + 1, due_at = ?3, last_error = ?4,
                lease_owner = NULL, lease_until = 0
         WHERE device_id = ?1 AND conversation_id = ?2",
    )
    .and_then(|mut s| s.execute(params![job.device_id, job.conversation_id, due_at, error]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn queue(c: &Connection) -> StoreResult<(u64, Option<i64>)> {
    c.prepare_cached("SELECT COUNT(*), MIN(created_at) FROM push_jobs")
        .and_then(|mut s| s.query_row([], |r| Ok((rows::uint(r, 0)?, r.get(1)?))))
        .map_err(sql)
}

pub(super) fn disable_target(
    c: &Connection,
    device: &str,
    reason: &str,
    at: i64,
    registered_before: Option<i64>,
) -> StoreResult<bool> {
    let n = c
        .prepare_cached(
            "UPDATE devices SET push_disabled_at = ?2, push_disabled_reason = ?3
             WHERE device_id = ?1 AND push_provider IS NOT NULL AND push_disabled_at IS NULL
               AND (?4 IS NULL OR COALESCE(push_registered_at, 0) < ?4)",
        )
        .and_then(|mut s| s.execute(params![device, at, reason, registered_before]))
        .map_err(sql)?;
    if n == 0 {
        return Ok(false);
    }
    for table in ["push_jobs", "push_shown"] {
        c.prepare_cached(&format!("DELETE FROM {table} WHERE device_id = ?1"))
            .and_then(|mut s| s.execute([device]))
            .map_err(sql)?;
    }
    Ok(true)
}

pub(super) fn set_muted_until(c: &Connection, user: &str, id: &str, until: i64) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO conversation_settings (user_id, conversation_id, muted_until) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET muted_until = excluded.muted_until",
    )
    .and_then(|mut s| s.execute(params![user, id, until]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn update_settings(
    c: &Connection,
    user: &str,
    id: &str,
    p: &crate::storage::SettingsPatch,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO conversation_settings (user_id, conversation_id, muted_until, archived, pinned_at)
         VALUES (?1, ?2, COALESCE(?3, 0), COALESCE(?4, 0), COALESCE(?5, 0))
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET
             muted_until = COALESCE(?3, muted_until),
             archived = COALESCE(?4, archived),
             pinned_at = COALESCE(?5, pinned_at)",
    )
    .and_then(|mut s| s.execute(params![user, id, p.muted_until, p.archived, p.pinned_at]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn settings_of_user(
    c: &Connection,
    user: &str,
) -> StoreResult<Vec<(String, crate::storage::ConvSettings)>> {
    let mut s = c
        .prepare_cached(
            "SELECT conversation_id, muted_until, archived, pinned_at FROM conversation_settings
             WHERE user_id = ?1 ORDER BY conversation_id",
        )
        .map_err(sql)?;
    let rows = s
        .query_map([user], |r| {
            Ok((
                r.get(0)?,
                crate::storage::ConvSettings {
                    muted_until: r.get(1)?,
                    archived: r.get(2)?,
                    pinned_at: r.get(3)?,
                },
            ))
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn muted_until(c: &Connection, user: &str, id: &str) -> StoreResult<i64> {
    c.prepare_cached(
        "SELECT COALESCE((SELECT muted_until FROM conversation_settings WHERE user_id = ?1 AND conversation_id = ?2), 0)",
    )
    .and_then(|mut s| s.query_row(params![user, id], |r| r.get(0)))
    .map_err(sql)
}

/// Messages after the user's read position in each of its conversations, not its own, not
/// retracted, not hidden: the badge.
pub(super) fn unread_total(c: &Connection, user: &str) -> StoreResult<u64> {
    c.prepare_cached(
        "SELECT COUNT(*) FROM members m
         JOIN messages g ON g.conversation_id = m.conversation_id AND g.seq > m.read_seq
         WHERE m.user_id = ?1 AND g.sender_id != ?1 AND g.deleted = 0
           AND NOT EXISTS (SELECT 1 FROM hidden h
                           WHERE h.user_id = ?1 AND h.conversation_id = g.conversation_id AND h.seq = g.seq)",
    )
    .and_then(|mut s| s.query_row([user], |r| rows::uint(r, 0)))
    .map_err(sql)
}
