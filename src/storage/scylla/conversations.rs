//! Conversations, members (by conversation, and conversations by user), and a device's view
//! of its conversations.

use super::rows::{ConversationCols, DeviceCursorCols, MemberCols};
use super::{bigint, cql, events, messages, users, ScyllaStore};
use crate::storage::{
    ConversationRow, ConversationState, CreateOutcome, DeviceConversation, MemberRow, Role,
    StoreError, StoreResult,
};
use std::collections::{BTreeSet, HashMap};

pub(super) async fn ids_of_user(s: &ScyllaStore, user_id: &str) -> StoreResult<Vec<String>> {
    Ok(s.rows::<(String,)>(&cql::CONVERSATIONS_OF_USER, (user_id,))
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

pub(super) async fn members_of(s: &ScyllaStore, id: &str) -> StoreResult<Vec<MemberRow>> {
    Ok(s.rows::<MemberCols>(&cql::MEMBERS, (id,))
        .await?
        .into_iter()
        .map(MemberRow::from)
        .collect())
}

/// A device's delivered cursor in one conversation, if it has one.
pub(super) async fn device_cursor(
    s: &ScyllaStore,
    device: &str,
    id: &str,
) -> StoreResult<Option<u64>> {
    Ok(s.row::<(Option<i64>,)>(&cql::DEVICE_CURSOR, (device, id))
        .await?
        .and_then(|r| r.0)
        .map(|v| v as u64))
}

pub(super) async fn member(
    s: &ScyllaStore,
    id: &str,
    user: &str,
) -> StoreResult<Option<MemberRow>> {
    Ok(s.row::<MemberCols>(&cql::MEMBER, (id, user))
        .await?
        .map(MemberRow::from))
}

/// Gives each device of `user_id` a cursor at `seq` in the conversation.
async fn set_device_cursors(s: &ScyllaStore, id: &str, user_id: &str, seq: u64) -> StoreResult<()> {
    let events = events::last_event(s, id).await?;
    for device in users::device_ids_of_user(s, user_id).await? {
        s.exec(
            &cql::SET_DEVICE_CURSOR,
            (device.as_str(), id, bigint(seq), bigint(events)),
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn create(
    s: &ScyllaStore,
    row: ConversationRow,
    members: Vec<(String, Role)>,
    direct_key: Option<String>,
) -> StoreResult<CreateOutcome> {
    let id = row.conversation_id.as_str();
    if let Some(key) = &direct_key {
        if !s.lwt(&cql::CLAIM_DIRECT_PAIR, (key.as_str(), id)).await? {
            let existing = s
                .row::<(Option<String>,)>(&cql::DIRECT_PAIR, (key.as_str(),))
                .await?
                .and_then(|r| r.0)
                .ok_or_else(|| StoreError::Unavailable("direct pair claim vanished".into()))?;
            return Ok(CreateOutcome::Existing(existing));
        }
    }
    s.exec(
        &cql::INSERT_CONVERSATION,
        (
            id,
            row.kind.as_str(),
            row.title.as_deref(),
            row.created_by.as_str(),
            row.created_at,
        ),
    )
    .await?;
    s.exec(&cql::SET_HEAD, (0i64, id)).await?;
    for (user, role) in &members {
        s.exec(
            &cql::INSERT_MEMBER,
            (id, user.as_str(), role.as_str(), 0i64, 0i64, 0i64),
        )
        .await?;
        s.exec(&cql::INSERT_CONVERSATION_BY_USER, (user.as_str(), id))
            .await?;
        set_device_cursors(s, id, user, 0).await?;
    }
    super::retention::index(s, id).await?;
    Ok(CreateOutcome::Created)
}

pub(super) async fn load(s: &ScyllaStore, id: &str) -> StoreResult<Option<ConversationState>> {
    let Some(r) = s
        .row::<ConversationCols>(&cql::CONVERSATION_BY_ID, (id,))
        .await?
    else {
        return Ok(None);
    };
    let row = ConversationRow {
        kind: r.kind(),
        conversation_id: r.conversation_id,
        title: r.title,
        created_by: r.created_by,
        created_at: r.created_at,
        avatar: r.avatar,
    };
    let members = members_of(s, id).await?;
    // A new owner continues from the stored maximum, repairing what a dead writer left.
    let last_seq = messages::last_seq(s, id, true).await?;
    let retention = super::retention::get(s, id).await?;
    let last_seq = last_seq.max(retention.expired_through);
    super::retention::index(s, id).await?;

    let last_event_no = events::last_event(s, id).await?;
    Ok(Some(ConversationState {
        row,
        members,
        last_seq,
        last_event_no,
    }))
}

pub(super) async fn contacts_of_user(s: &ScyllaStore, user_id: &str) -> StoreResult<Vec<String>> {
    let mut out = BTreeSet::new();
    for conv in ids_of_user(s, user_id).await? {
        for m in members_of(s, &conv).await? {
            if m.user_id != user_id {
                out.insert(m.user_id);
            }
        }
    }
    Ok(out.into_iter().collect())
}

pub(super) async fn add_members(
    s: &ScyllaStore,
    id: &str,
    user_ids: Vec<String>,
    joined_seq: u64,
) -> StoreResult<()> {
    for u in &user_ids {
        if member(s, id, u).await?.is_some() {
            continue;
        }
        let j = bigint(joined_seq);
        s.exec(&cql::INSERT_MEMBER, (id, u.as_str(), "member", j, j, j))
            .await?;
        s.exec(&cql::INSERT_CONVERSATION_BY_USER, (u.as_str(), id))
            .await?;
        set_device_cursors(s, id, u, joined_seq).await?;
    }
    Ok(())
}

pub(super) async fn remove_member(s: &ScyllaStore, id: &str, user_id: &str) -> StoreResult<()> {
    if member(s, id, user_id).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    s.exec(&cql::DELETE_MEMBER, (id, user_id)).await?;
    s.exec(&cql::DELETE_CONVERSATION_BY_USER, (user_id, id))
        .await?;
    Ok(())
}

pub(super) async fn update(
    s: &ScyllaStore,
    id: &str,
    title: Option<&str>,
    avatar: Option<&str>,
) -> StoreResult<()> {
    let Some(row) = s
        .row::<ConversationCols>(&cql::CONVERSATION_BY_ID, (id,))
        .await?
    else {
        return Err(StoreError::NotFound);
    };
    // The avatar is readable by the members: a grant at seq 0 (no message has it).
    if let Some(new) = avatar {
        s.exec(&cql::INSERT_GRANT, (new, id, 0i64)).await?;
    }
    s.exec(&cql::UPDATE_CONVERSATION, (title, avatar, id))
        .await?;
    if let Some(old) = row.avatar.as_deref().filter(|o| Some(*o) != avatar) {
        s.exec(&cql::DELETE_GRANT, (old, id, 0i64)).await?;
    }
    Ok(())
}

pub(super) async fn set_role(s: &ScyllaStore, id: &str, user: &str, role: Role) -> StoreResult<()> {
    if member(s, id, user).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    s.exec(&cql::SET_ROLE, (role.as_str(), id, user)).await?;
    Ok(())
}

pub(super) async fn direct(s: &ScyllaStore, key: &str) -> StoreResult<Option<String>> {
    Ok(s.row::<(Option<String>,)>(&cql::DIRECT_PAIR, (key,))
        .await?
        .and_then(|r| r.0))
}

pub(super) async fn block(s: &ScyllaStore, user: &str, blocked: &str, at: i64) -> StoreResult<()> {
    s.exec(&cql::INSERT_BLOCK, (user, blocked, at)).await?;
    s.exec(&cql::INSERT_BLOCKED_BY, (blocked, user)).await?;
    Ok(())
}

pub(super) async fn unblock(s: &ScyllaStore, user: &str, blocked: &str) -> StoreResult<bool> {
    // The block row is written by an LWT, so it is deleted by one (see ARCHITECTURE.md).
    s.exec(&cql::DELETE_BLOCKED_BY, (blocked, user)).await?;
    s.lwt(&cql::DELETE_BLOCK, (user, blocked)).await
}

pub(super) async fn blocks(s: &ScyllaStore, user: &str) -> StoreResult<Vec<(String, i64)>> {
    Ok(s.rows::<(String, Option<i64>)>(&cql::BLOCKS, (user,))
        .await?
        .into_iter()
        .map(|(b, at)| (b, at.unwrap_or(0)))
        .collect())
}

pub(super) async fn blocked_by(s: &ScyllaStore, user: &str) -> StoreResult<Vec<String>> {
    Ok(s.rows::<(String,)>(&cql::BLOCKED_BY, (user,))
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

pub(super) async fn of_device(
    s: &ScyllaStore,
    device_id: &str,
    user_id: &str,
) -> StoreResult<Vec<DeviceConversation>> {
    let cursors: HashMap<String, (u64, u64)> = s
        .rows::<DeviceCursorCols>(&cql::DEVICE_CURSORS, (device_id,))
        .await?
        .into_iter()
        .map(|c| {
            let pos = (c.delivered_seq as u64, c.retraction_cursor as u64);
            (c.conversation_id, pos)
        })
        .collect();
    let mut out = Vec::new();
    for conv in ids_of_user(s, user_id).await? {
        let Some(m) = member(s, &conv, user_id).await? else {
            continue;
        };
        let (delivered, retractions) = cursors.get(&conv).copied().unwrap_or((m.joined_seq, 0));
        out.push(DeviceConversation {
            last_seq: messages::last_seq(s, &conv, false).await?,
            conversation_id: conv,
            delivered_seq: delivered,
            read_seq: m.read_seq,
            event_cursor: retractions,
            joined_seq: m.joined_seq,
        });
    }
    Ok(out)
}
