//! Conversations and their members, and a device's view of its conversations.

use super::rows::{self, int, MEMBER_COLS};
use super::sql;
use crate::storage::{
    ConversationRow, ConversationState, CreateOutcome, DeviceConversation, MemberRow, Role,
    StoreError, StoreResult,
};
use parley_protocol::ConversationKind;
use rusqlite::{params, Connection, OptionalExtension};

/// Gives every device of `user_id` a cursor at `seq` in the conversation (if it has none).
fn init_device_cursors(
    c: &Connection,
    conversation_id: &str,
    user_id: &str,
    seq: u64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO device_cursors (device_id, conversation_id, delivered_seq, event_cursor)
         SELECT device_id, ?1, ?2,
                COALESCE((SELECT MAX(event_no) FROM events WHERE conversation_id = ?1), 0)
         FROM devices WHERE user_id = ?3",
    )?
    .execute(params![conversation_id, int(seq), user_id])?;
    Ok(())
}

pub(super) fn create(
    c: &Connection,
    row: &ConversationRow,
    members: &[(String, Role)],
    direct_key: Option<&str>,
) -> StoreResult<CreateOutcome> {
    if let Some(key) = direct_key {
        let existing: Option<String> = c
            .prepare_cached("SELECT conversation_id FROM conversations WHERE direct_key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(sql)?;
        if let Some(id) = existing {
            return Ok(CreateOutcome::Existing(id));
        }
    }
    c.prepare_cached(
        "INSERT INTO conversations (conversation_id, kind, title, created_by, created_at, direct_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.conversation_id,
            row.kind.as_str(),
            row.title,
            row.created_by,
            row.created_at,
            direct_key
        ])
    })
    .map_err(sql)?;
    for (user_id, role) in members {
        c.prepare_cached(
            "INSERT INTO members (conversation_id, user_id, role, joined_seq) VALUES (?1, ?2, ?3, 0)",
        )
        .and_then(|mut s| s.execute(params![row.conversation_id, user_id, role.as_str()]))
        .map_err(sql)?;
        init_device_cursors(c, &row.conversation_id, user_id, 0).map_err(sql)?;
    }
    Ok(CreateOutcome::Created)
}

pub(super) fn load(c: &Connection, id: &str) -> StoreResult<Option<ConversationState>> {
    let row = c
        .prepare_cached(
            "SELECT conversation_id, kind, title, created_by, created_at, avatar FROM conversations WHERE conversation_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id], |r| {
                let kind: String = r.get(1)?;
                Ok(ConversationRow {
                    conversation_id: r.get(0)?,
                    kind: if kind == "direct" {
                        ConversationKind::Direct
                    } else {
                        ConversationKind::Group
                    },
                    title: r.get(2)?,
                    created_by: r.get(3)?,
                    created_at: r.get(4)?,
                    avatar: r.get(5)?,
                })
            })
            .optional()
        })
        .map_err(sql)?;
    let Some(row) = row else { return Ok(None) };
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLS} FROM members WHERE conversation_id = ?1"
        ))
        .map_err(sql)?;
    let members = s
        .query_map([id], rows::member)
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let last_seq: i64 = c
        .prepare_cached(&format!(
            "SELECT {} FROM conversations c WHERE conversation_id = ?1",
            super::retention::last_seq_sql("c")
        ))
        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
        .map_err(sql)?;
    let last_event: i64 = c
        .prepare_cached("SELECT COALESCE(MAX(event_no), 0) FROM events WHERE conversation_id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
        .map_err(sql)?;
    Ok(Some(ConversationState {
        row,
        members,
        last_seq: last_seq as u64,
        last_event_no: last_event as u64,
    }))
}

pub(super) fn member(c: &Connection, id: &str, user: &str) -> StoreResult<Option<MemberRow>> {
    c.prepare_cached(&format!(
        "SELECT {MEMBER_COLS} FROM members WHERE conversation_id = ?1 AND user_id = ?2"
    ))
    .and_then(|mut s| s.query_row([id, user], rows::member).optional())
    .map_err(sql)
}

pub(super) fn contacts_of_user(c: &Connection, user_id: &str) -> StoreResult<Vec<String>> {
    let mut s = c
        .prepare_cached(
            "SELECT DISTINCT m2.user_id FROM members m1 JOIN members m2 ON m2.conversation_id = m1.conversation_id
             WHERE m1.user_id = ?1 AND m2.user_id != ?1",
        )
        .map_err(sql)?;
    let rows = s.query_map([user_id], |r| r.get(0)).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// `contacts_of_user` less the users across a block either way, in one statement (both
/// block lookups are primary-key lookups).
pub(super) fn presence_contacts(c: &Connection, user_id: &str) -> StoreResult<Vec<String>> {
    let mut s = c
        .prepare_cached(
            "SELECT DISTINCT m2.user_id FROM members m1 JOIN members m2 ON m2.conversation_id = m1.conversation_id
             WHERE m1.user_id = ?1 AND m2.user_id != ?1
             AND NOT EXISTS (SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = m2.user_id)
             AND NOT EXISTS (SELECT 1 FROM blocks WHERE user_id = m2.user_id AND blocked_id = ?1)",
        )
        .map_err(sql)?;
    let rows = s.query_map([user_id], |r| r.get(0)).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn add_members(
    c: &Connection,
    id: &str,
    user_ids: &[String],
    joined_seq: u64,
) -> StoreResult<()> {
    for u in user_ids {
        let added = c
            .prepare_cached(
                "INSERT INTO members (conversation_id, user_id, role, joined_seq, delivered_seq, read_seq)
                 VALUES (?1, ?2, 'member', ?3, ?3, ?3)
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![id, u, int(joined_seq)]))
            .map_err(sql)?;
        if added == 0 {
            continue; // already a member: keep its cursors
        }
        // A re-added member starts again at its new join: drop cursors from before it left.
        c.prepare_cached(
            "DELETE FROM device_cursors WHERE conversation_id = ?1 AND device_id IN (SELECT device_id FROM devices WHERE user_id = ?2)",
        )
        .and_then(|mut s| s.execute(params![id, u]))
        .map_err(sql)?;
        init_device_cursors(c, id, u, joined_seq).map_err(sql)?;
    }
    Ok(())
}

pub(super) fn remove_member(c: &Connection, id: &str, user: &str) -> StoreResult<()> {
    let n = c
        .prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")
        .and_then(|mut s| s.execute(params![id, user]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) fn update(
    c: &Connection,
    id: &str,
    title: Option<&str>,
    avatar: Option<&str>,
) -> StoreResult<()> {
    let old: Option<Option<String>> = c
        .prepare_cached("SELECT avatar FROM conversations WHERE conversation_id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(sql)?;
    let Some(old) = old else {
        return Err(StoreError::NotFound);
    };
    c.prepare_cached("UPDATE conversations SET title = ?2, avatar = ?3 WHERE conversation_id = ?1")
        .and_then(|mut s| s.execute(params![id, title, avatar]))
        .map_err(sql)?;
    // The avatar is readable by the members: a grant at seq 0 (no message has it).
    if old.as_deref() != avatar {
        if let Some(old) = old {
            c.prepare_cached(
                "DELETE FROM file_grants WHERE file_id = ?1 AND conversation_id = ?2 AND seq = 0",
            )
            .and_then(|mut s| s.execute(params![old, id]))
            .map_err(sql)?;
        }
        if let Some(new) = avatar {
            c.prepare_cached(
                "INSERT OR IGNORE INTO file_grants (file_id, conversation_id, seq) VALUES (?1, ?2, 0)",
            )
            .and_then(|mut s| s.execute(params![new, id]))
            .map_err(sql)?;
        }
    }
    Ok(())
}

pub(super) fn set_role(c: &Connection, id: &str, user: &str, role: Role) -> StoreResult<()> {
    let n = c
        .prepare_cached("UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2")
        .and_then(|mut s| s.execute(params![id, user, role.as_str()]))
        .map_err(sql)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) fn direct(c: &Connection, key: &str) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT conversation_id FROM conversations WHERE direct_key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(sql)
}

pub(super) fn block(c: &Connection, user: &str, blocked: &str, at: i64) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![user, blocked, at]))
    .map_err(sql)?;
    Ok(())
}

pub(super) fn unblock(c: &Connection, user: &str, blocked: &str) -> StoreResult<bool> {
    c.prepare_cached("DELETE FROM blocks WHERE user_id = ?1 AND blocked_id = ?2")
        .and_then(|mut s| s.execute(params![user, blocked]))
        .map(|n| n > 0)
        .map_err(sql)
}

pub(super) fn blocks(c: &Connection, user: &str) -> StoreResult<Vec<(String, i64)>> {
    let mut s = c
        .prepare_cached(
            "SELECT blocked_id, created_at FROM blocks WHERE user_id = ?1 ORDER BY blocked_id",
        )
        .map_err(sql)?;
    let rows = s
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn blocked_by(c: &Connection, user: &str) -> StoreResult<Vec<String>> {
    let mut s = c
        .prepare_cached("SELECT user_id FROM blocks WHERE blocked_id = ?1 ORDER BY user_id")
        .map_err(sql)?;
    let rows = s.query_map([user], |r| r.get(0)).map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

pub(super) fn device_cursor(c: &Connection, device: &str, id: &str) -> StoreResult<Option<u64>> {
    c.prepare_cached(
        "SELECT delivered_seq FROM device_cursors WHERE device_id = ?1 AND conversation_id = ?2",
    )
    .and_then(|mut s| s.query_row([device, id], |r| rows::uint(r, 0)).optional())
    .map_err(sql)
}

/// Every conversation of the device's user, with this device's cursors.
pub(super) fn of_device(
    c: &Connection,
    device_id: &str,
    user_id: &str,
) -> StoreResult<Vec<DeviceConversation>> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT m.conversation_id,
                    {},
                    COALESCE(dc.delivered_seq, m.joined_seq),
                    m.read_seq,
                    COALESCE(dc.event_cursor, 0),
                    m.joined_seq
             FROM members m
             LEFT JOIN device_cursors dc ON dc.device_id = ?1 AND dc.conversation_id = m.conversation_id
             WHERE m.user_id = ?2
             ORDER BY m.conversation_id",
            super::retention::last_seq_sql("m")
        ))

        .map_err(sql)?;
    let rows = s
        .query_map(params![device_id, user_id], |r| {
            Ok(DeviceConversation {
                conversation_id: r.get(0)?,
                last_seq: rows::uint(r, 1)?,
                delivered_seq: rows::uint(r, 2)?,
                read_seq: rows::uint(r, 3)?,
                event_cursor: rows::uint(r, 4)?,
                joined_seq: rows::uint(r, 5)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}
