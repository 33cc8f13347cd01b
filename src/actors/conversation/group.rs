//! v1.1 group administration and blocking, as the actor that owns the member list sees them:
//! a group's title and avatar, admin roles, the successor when the last admin goes, and the
//! blocks between the two members of a direct conversation.
//!
//! The blocks are kept in the actor's state (loaded with the conversation, refreshed by a
//! `ConvRequest::Block` after each block or unblock is stored) so that a send is checked
//! without a store read.

use super::{Answer, ConvActor};
use crate::domain::{rules, view, Caller, ConvReply};
use crate::error::ApiError;
use crate::storage::{MemberRow, Role, Store, StoreResult};
use actix::prelude::*;
use parley_protocol::ConversationEvent;

/// The blocks between the members of a direct conversation, as (blocker, blocked).
pub(super) async fn direct_blocks(
    store: &dyn Store,
    members: &[MemberRow],
) -> StoreResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for m in members {
        for (blocked, _) in store.blocks(&m.user_id).await? {
            if members.iter().any(|o| o.user_id == blocked) {
                out.push((m.user_id.clone(), blocked));
            }
        }
    }
    Ok(out)
}

impl ConvActor {
    pub(super) fn update_group(
        &mut self,
        by: Caller,
        title: Option<Option<String>>,
        avatar: Option<Option<String>>,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let check = self.state().and_then(|st| {
            let title = title.unwrap_or_else(|| st.row.title.clone());
            rules::update_group(st, &by.user_id, title.as_deref())?;
            let new_avatar = avatar.clone().unwrap_or_else(|| st.row.avatar.clone());
            Ok((title, new_avatar))
        });
        let (title, new_avatar) = match check {
            Ok(v) => v,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        let core = self.core.clone();
        let id = self.id.clone();
        let (t, a, changed_avatar) = (title.clone(), new_avatar.clone(), avatar.flatten());
        ctx.wait(
            async move {
                if let Some(f) = &changed_avatar {
                    let file = core.store.file(f).await?;
                    let visible = core.store.file_visible_to(f, &by.user_id).await?;
                    rules::avatar(file.as_ref(), visible)?;
                }
                core.store.update_conversation(&id, t, a).await?;
                Ok(())
            }
            .into_actor(self)
            .map(move |res: Result<(), ApiError>, act, _| {
                if let Err(e) = res {
                    return answer.send(&act.core, Err(e));
                }
                let Some(st) = act.state_mut() else { return };
                st.row.title = title;
                st.row.avatar = new_avatar;
                if let Some(conv) = act.announce_change(ConversationEvent::Updated, None) {
                    answer.send(&act.core, Ok(ConvReply::Conversation(conv)));
                }
            }),
        );
    }

    pub(super) fn set_role(
        &mut self,
        by: Caller,
        user_id: String,
        admin: bool,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        if let Err(e) = self
            .state()
            .and_then(|st| rules::set_role(st, &by.user_id, &user_id, admin))
        {
            return answer.send(&self.core, Err(e));
        }
        let role = if admin { Role::Admin } else { Role::Member };
        let core = self.core.clone();
        let id = self.id.clone();
        let user = user_id.clone();
        ctx.wait(
            async move { core.store.set_role(&id, &user, role).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = res {
                        return answer.send(&act.core, Err(e.into()));
                    }
                    let Some(st) = act.state_mut() else { return };
                    let changed = st.members.iter_mut().find(|m| m.user_id == user_id);
                    let changed = changed.map(|m| std::mem::replace(&mut m.role, role) != role);
                    let conv = match changed {
                        Some(true) => act.announce_change(ConversationEvent::Updated, None),
                        _ => Some(view::conversation(st)),
                    };
                    if let Some(conv) = conv {
                        answer.send(&act.core, Ok(ConvReply::Conversation(conv)));
                    }
                }),
        );
    }

    /// After a member left: if the group has no admin any more, its longest-standing member
    /// becomes one (stored, then `updated` to the members). A failed write is logged; the
    /// next departure or reload tries again.
    pub(super) fn name_successor(&mut self, ctx: &mut Context<Self>) {
        let Some(user) = self
            .state()
            .ok()
            .and_then(rules::successor)
            .map(str::to_string)
        else {
            return;
        };
        let core = self.core.clone();
        let id = self.id.clone();
        let u = user.clone();
        ctx.wait(
            async move { core.store.set_role(&id, &u, Role::Admin).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = res {
                        tracing::warn!(conversation = %act.id, error = %e, "could not name a successor admin");
                        return;
                    }
                    let Some(st) = act.state_mut() else { return };
                    if let Some(m) = st.members.iter_mut().find(|m| m.user_id == user) {
                        m.role = Role::Admin;
                    }
                    act.announce_change(ConversationEvent::Updated, None);
                }),
        );
    }

    /// A block or unblock by `by` of `user_id` was stored: the cached blocks follow.
    pub(super) fn block(&mut self, by: Caller, user_id: String, blocked: bool, answer: Answer) {
        let result = self.member(&by.user_id).map(|_| ());
        if result.is_ok() {
            let pair = (by.user_id.clone(), user_id);
            self.blocks.retain(|p| *p != pair);
            if blocked {
                self.blocks.push(pair);
            }
        }
        answer.send(&self.core, result.map(|_| ConvReply::Done));
    }
}
