//! Users, devices and push targets.

use super::rows::{self, DEVICE_COLS, USER_COLS};
use super::{is_unique_violation, sql};
use crate::storage::{DeviceRow, PushTargetRow, StoreError, StoreResult, UserRow};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn create_user(c: &Connection, u: &UserRow) -> StoreResult<()> {
    c.prepare_cached(&format!(
        "INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            u.user_id,
            u.username,
            u.display_name,
            u.password_hash,
            u.created_at
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("username is taken".into())
        } else {
            sql(e)
        }
    })?;
    Ok(())
}

pub(super) fn user_by_name(c: &Connection, username: &str) -> StoreResult<Option<UserRow>> {
    c.prepare_cached(&format!(
        "SELECT {USER_COLS} FROM users WHERE username = ?1"
    ))
    .and_then(|mut s| s.query_row([username], rows::user).optional())
    .map_err(sql)
}

pub(super) fn user_by_id(c: &Connection, user_id: &str) -> StoreResult<Option<UserRow>> {
    c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE user_id = ?1"))
        .and_then(|mut s| s.query_row([user_id], rows::user).optional())
        .map_err(sql)
}

/// A new device starts each cursor at its conversation's current end: it is owed only what is
/// sent after it exists.
pub(super) fn create_device(c: &Connection, d: &DeviceRow) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO devices (device_id, user_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![d.device_id, d.user_id, d.name, d.created_at]))
    .map_err(sql)?;
    c.prepare_cached(&format!(
        "INSERT OR IGNORE INTO device_cursors (device_id, conversation_id, delivered_seq, event_cursor)
         SELECT ?1, m.conversation_id,
                MAX(m.joined_seq, {}),
                COALESCE((SELECT MAX(event_no) FROM events r WHERE r.conversation_id = m.conversation_id), 0)
         FROM members m WHERE m.user_id = ?2",
        super::retention::last_seq_sql("m")
    ))

    .and_then(|mut s| s.execute(params![d.device_id, d.user_id]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn device(c: &Connection, device_id: &str) -> StoreResult<Option<DeviceRow>> {
    c.prepare_cached(&format!(
        "SELECT {DEVICE_COLS} FROM devices WHERE device_id = ?1"
    ))
    .and_then(|mut s| s.query_row([device_id], rows::device).optional())
    .map_err(sql)
}

/// Registering (again) enables the target: a disabled one is live again.
pub(super) fn set_push_target(
    c: &Connection,
    device_id: &str,
    t: &PushTargetRow,
) -> StoreResult<()> {
    let n = c
        .prepare_cached(
            "UPDATE devices SET push_provider = ?2, push_token = ?3, push_endpoint = ?4, push_p256dh = ?5,
                    push_auth = ?6, push_payload = ?7, push_registered_at = ?8,
                    push_disabled_at = NULL, push_disabled_reason = NULL
             WHERE device_id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                device_id,
                t.provider,
                t.token,
                t.endpoint,
                t.p256dh,
                t.auth,
                t.payload,
                t.registered_at
            ])
        })
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) fn devices_of_user(c: &Connection, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE user_id = ?1 ORDER BY created_at, device_id"
        ))
        .map_err(sql)?;
    let rows = s.query_map([user_id], rows::device).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// The device's row goes, and with it its cursors, its push target (a column of the row) and
/// its push jobs: nothing is owed to a revoked device any more.
pub(super) fn delete_device(c: &Connection, device_id: &str) -> StoreResult<()> {
    let n = c
        .prepare_cached("DELETE FROM devices WHERE device_id = ?1")
        .and_then(|mut s| s.execute([device_id]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    for table in ["device_cursors", "push_jobs", "push_shown"] {
        c.prepare_cached(&format!("DELETE FROM {table} WHERE device_id = ?1"))
            .and_then(|mut s| s.execute([device_id]))
            .map_err(sql)?;
    }
    Ok(())
}

pub(super) fn set_refresh_hash(
    c: &Connection,
    device_id: &str,
    expected: Option<&str>,
    new_hash: &str,
) -> StoreResult<bool> {
    let n = match expected {
        None => c
            .prepare_cached("UPDATE devices SET refresh_hash = ?2 WHERE device_id = ?1")
            .and_then(|mut s| s.execute(params![device_id, new_hash])),
        Some(old) => c
            .prepare_cached(
                "UPDATE devices SET refresh_hash = ?2 WHERE device_id = ?1 AND refresh_hash = ?3",
            )
            .and_then(|mut s| s.execute(params![device_id, new_hash, old])),
    }
    .map_err(sql)?;
    Ok(n == 1)
}

pub(super) fn touch_devices(c: &Connection, seen: &[(String, i64)]) -> StoreResult<()> {
    let mut s = c
        .prepare_cached(
            "UPDATE devices SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?2) WHERE device_id = ?1",
        )
        .map_err(sql)?;
    for (device_id, at) in seen {
        s.execute(params![device_id, at]).map_err(sql)?;
    }
    Ok(())
}

pub(super) fn delete_user(c: &Connection, user_id: &str) -> StoreResult<()> {
    let n = c
        .prepare_cached("DELETE FROM users WHERE user_id = ?1")
        .and_then(|mut s| s.execute([user_id]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) fn set_password_hash(c: &Connection, user_id: &str, hash: &str) -> StoreResult<()> {
    let n = c
        .prepare_cached("UPDATE users SET password_hash = ?2 WHERE user_id = ?1")
        .and_then(|mut s| s.execute(params![user_id, hash]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
