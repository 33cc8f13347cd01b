//! Adding and removing group members. The actor owns the member list: the rules
//! (`domain::rules`) are checked against it, the store is written, then the list and every
//! member's sessions (on every node) learn of the change.

use super::{Answer, ConvActor};
use crate::domain::{rules, view, Caller, ConvReply};
use crate::error::ApiError;
use crate::storage::{MemberRow, Role};
use actix::prelude::*;
use parley_protocol::{Conversation, ConversationEvent};

impl ConvActor {
    /// The conversation as it now is, announced with `event` to the members' sessions on every
    /// node and to `also` (a removed member, so its devices drop it): the one way a change of
    /// the member list or the group's settings goes out. `None` if the state is not loaded.
    pub(super) fn announce_change(
        &self,
        event: ConversationEvent,
        also: Option<String>,
    ) -> Option<Conversation> {
        let conv = view::conversation(self.state().ok()?);
        let mut users = conv.members.clone();
        users.extend(also);
        self.core.announce(users, event, conv.clone());
        Some(conv)
    }

    pub(super) fn add_members(
        &mut self,
        by: Caller,
        user_ids: Vec<String>,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        let check = self.state().and_then(|st| {
            Ok((
                rules::add_members(&self.core.config.limits, st, &by.user_id, &user_ids)?,
                st.last_seq,
            ))
        });
        let (new, joined) = match check {
            Ok(v) => v,
            Err(e) => return answer.send(&self.core, Err(e)),
        };
        let core = self.core.clone();
        let id = self.id.clone();
        let to_add = new.clone();
        ctx.wait(
            async move {
                for u in &to_add {
                    if core.store.user_by_id(u).await?.is_none() {
                        return Err(ApiError::not_found(format!("no such user: {u}")));
                    }
                }
                if !to_add.is_empty() {
                    core.store.add_members(&id, to_add, joined).await?;
                }
                Ok(())
            }
            .into_actor(self)
            .map(move |res: Result<(), ApiError>, act, _| {
                if let Err(e) = res {
                    return answer.send(&act.core, Err(e));
                }
                let Some(st) = act.state_mut() else { return };
                for u in &new {
                    st.members.push(MemberRow {
                        user_id: u.clone(),
                        role: Role::Member,
                        joined_seq: joined,
                        delivered_seq: joined,
                        read_seq: joined,
                    });
                }
                let conv = match new.is_empty() {
                    true => view::conversation(st),
                    false => match act.announce_change(ConversationEvent::MemberAdded, None) {
                        Some(conv) => conv,
                        None => return,
                    },
                };
                answer.send(&act.core, Ok(ConvReply::Conversation(conv)));
            }),
        );
    }

    /// Removes a member (or a member leaves); if that was the last admin, the longest-standing
    /// member becomes admin (`name_successor`).
    pub(super) fn remove_member(
        &mut self,
        by: Caller,
        user_id: String,
        answer: Answer,
        ctx: &mut Context<Self>,
    ) {
        if let Err(e) = self
            .state()
            .and_then(|st| rules::remove_member(st, &by.user_id, &user_id))
        {
            return answer.send(&self.core, Err(e));
        }
        let core = self.core.clone();
        let id = self.id.clone();
        let user = user_id.clone();
        ctx.wait(
            async move { core.store.remove_member(&id, &user).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    if let Err(e) = res {
                        return answer.send(&act.core, Err(e.into()));
                    }
                    let Some(st) = act.state_mut() else { return };
                    st.members.retain(|m| m.user_id != user_id);
                    act.announce_change(ConversationEvent::MemberRemoved, Some(user_id));
                    answer.send(&act.core, Ok(ConvReply::Done));
                    act.name_successor(ctx);
                }),
        );
    }
}
