//! Creating conversations: a direct conversation for a pair (at most one per pair) and groups.
//!
//! Creation is not an operation of a conversation's actor (there is none yet): the store's
//! conditional create decides, and the new conversation is announced to its members' sessions
//! on every node, so that they start receiving it at once.

use super::core::Core;
use crate::domain::{rules, view};
use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, now_ms};
use crate::storage::{ConversationRow, CreateOutcome, Role};
use parley_protocol::{ConversationEvent, ConversationKind};
use std::sync::Arc;

/// The direct conversation of `a` and `b`, created (and announced) if the pair has none;
/// returns its id and whether it was created now.
pub async fn direct(core: &Arc<Core>, a: &str, b: &str) -> ApiResult<(String, bool)> {
    if a == b {
        return Err(ApiError::bad_request(
            "a direct conversation needs another user",
        ));
    }
    if core.store.user_by_id(b).await?.is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    // A block either way: neither starts (or reopens) the pair's conversation (v1.1).
    let mut blocks = Vec::new();
    for (x, y) in [(a, b), (b, a)] {
        if core.store.blocks(x).await?.iter().any(|(u, _)| u == y) {
            blocks.push((x.to_string(), y.to_string()));
        }
    }
    rules::not_blocked(&blocks, a, b)?;
    let row = ConversationRow {
        conversation_id: new_id(),
        kind: ConversationKind::Direct,
        title: None,
        created_by: a.to_string(),
        created_at: now_ms(),
        avatar: None,
    };
    let id = row.conversation_id.clone();
    let members = vec![(a.to_string(), Role::Member), (b.to_string(), Role::Member)];
    let key = rules::direct_key(a, b);
    match core
        .store
        .create_conversation(row, members, Some(key))
        .await?
    {
        CreateOutcome::Existing(existing) => Ok((existing, false)),
        CreateOutcome::Created => {
            announce_created(core, &id).await;
            Ok((id, true))
        }
    }
}

/// Creates a group with `creator` as its admin; returns its id.
pub async fn group(
    core: &Arc<Core>,
    creator: &str,
    title: Option<String>,
    members: Vec<String>,
) -> ApiResult<String> {
    rules::short_text("title", title.as_deref())?;
    let mut all: Vec<String> = vec![creator.to_string()];
    for m in members {
        if !all.contains(&m) {
            all.push(m);
        }
    }
    rules::group_size(&core.config.limits, all.len())?;
    for m in &all[1..] {
        if core.store.user_by_id(m).await?.is_none() {
            return Err(ApiError::not_found(format!("no such user: {m}")));
        }
    }
    let row = ConversationRow {
        conversation_id: new_id(),
        kind: ConversationKind::Group,
        title,
        created_by: creator.to_string(),
        created_at: now_ms(),
        avatar: None,
    };
    let id = row.conversation_id.clone();
    let members = all
        .into_iter()
        .map(|u| {
            let role = if u == creator {
                Role::Admin
            } else {
                Role::Member
            };
            (u, role)
        })
        .collect();
    core.store.create_conversation(row, members, None).await?;
    announce_created(core, &id).await;
    Ok(id)
}

/// Tells the members' sessions. The conversation exists whatever happens here: a failure is
/// logged, and the members' devices still find it on their next `ready` or refresh.
async fn announce_created(core: &Core, id: &str) {
    match core.store.load_conversation(id).await {
        Ok(Some(state)) => {
            let conv = view::conversation(&state);
            core.announce(conv.members.clone(), ConversationEvent::Created, conv);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, conversation = id, "could not announce a new conversation")
        }
    }
}
