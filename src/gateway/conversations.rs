//! Conversations over HTTP: create, list, read one, change members, page through messages.
//! Membership changes go to the conversation's actor (`routing::ask`); reads check
//! membership with the same rule through `domain::reads`.

use crate::actors::routing::ask;
use crate::actors::{create, Core};
use crate::domain::{reads, rules, view, Caller, ConvRequest};
use crate::error::{ApiError, ApiResult};
use crate::storage::Order;
use actix_web::{web, HttpResponse};
use parley_protocol::{
    AddMembers, ConversationKind, ConversationSummary, CreateConversation, SetRole, SetSettings,
    UpdateConversation,
};
use serde::Deserialize;
use serde_json::json;

/// The conversation as `user`, a member, sees it.
async fn load_for(core: &Core, id: &str, user: &str) -> ApiResult<parley_protocol::Conversation> {
    let st = core
        .store
        .load_conversation(id)
        .await?
        .ok_or_else(rules::no_conversation)?;
    rules::member(&st.members, user)?;
    Ok(view::conversation(&st))
}

pub async fn create(
    core: web::Data<Core>,
    caller: Caller,
    body: web::Json<CreateConversation>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let core = core.into_inner();
    match b.kind {
        ConversationKind::Direct => {
            let others: Vec<&String> = b.members.iter().filter(|m| **m != caller.user_id).collect();
            if others.len() != 1 {
                return Err(ApiError::bad_request(
                    "a direct conversation has exactly one other member",
                ));
            }
            let (id, created) = create::direct(&core, &caller.user_id, others[0]).await?;
            let conv = load_for(&core, &id, &caller.user_id).await?;
            Ok(if created {
                HttpResponse::Created().json(conv)
            } else {
                HttpResponse::Ok().json(conv)
            })
        }
        ConversationKind::Group => {
            let id = create::group(&core, &caller.user_id, b.title, b.members).await?;
            Ok(HttpResponse::Created().json(load_for(&core, &id, &caller.user_id).await?))
        }
    }
}

pub async fn list(core: web::Data<Core>, caller: Caller) -> ApiResult<HttpResponse> {
    let dcs = core
        .store
        .device_conversations(&caller.device_id, &caller.user_id)
        .await?;
    let settings: std::collections::HashMap<String, crate::storage::ConvSettings> = core
        .store
        .conversation_settings(&caller.user_id)
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(dcs.len());
    for dc in dcs {
        let s = settings
            .get(&dc.conversation_id)
            .copied()
            .unwrap_or_default();
        let Some(st) = core.store.load_conversation(&dc.conversation_id).await? else {
            continue;
        };
        let unread = core
            .store
            .count_unread(&dc.conversation_id, &caller.user_id, dc.read_seq)
            .await?;
        out.push(ConversationSummary {
            conversation: view::conversation(&st),
            delivered_seq: dc.delivered_seq,
            read_seq: dc.read_seq,
            unread,
            muted_until: s.muted_until,
            archived: s.archived,
            pinned_at: s.pinned_at,
        });
    }
    Ok(HttpResponse::Ok().json(json!({"conversations": out})))
}

pub async fn get(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(load_for(&core, &path, &caller.user_id).await?))
}

pub async fn add_members(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<AddMembers>,
) -> ApiResult<HttpResponse> {
    let user_ids = body.into_inner().user_ids;
    if user_ids.is_empty() {
        return Err(ApiError::bad_request("user_ids is empty"));
    }
    let request = ConvRequest::AddMembers {
        by: caller,
        user_ids,
    };
    let conv = ask(&core.into_inner(), &path, request)
        .await?
        .into_conversation()?;
    Ok(HttpResponse::Ok().json(conv))
}

pub async fn remove_member(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, user_id) = path.into_inner();
    let request = ConvRequest::RemoveMember {
        by: caller,
        user_id,
    };
    ask(&core.into_inner(), &id, request).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct Paging {
    before_seq: Option<u64>,
    after_seq: Option<u64>,
    limit: Option<u32>,
}

pub async fn messages(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
    q: web::Query<Paging>,
) -> ApiResult<HttpResponse> {
    let joined = reads::member(&*core.store, &path, &caller.user_id)
        .await?
        .joined_seq;
    let l = &core.config.limits;
    let limit = q.limit.unwrap_or(l.default_page).clamp(1, l.max_page);
    let before = q.before_seq.unwrap_or(u64::MAX);
    // With after_seq: forward paging from a known position; otherwise the newest page.
    let (after, order) = match q.after_seq {
        Some(after) => (after.max(joined), Order::Asc),
        None => (joined, Order::Desc),
    };
    let messages = reads::message_page(
        &*core.store,
        &caller.user_id,
        &path,
        after,
        before,
        limit,
        order,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"messages": messages})))
}

/// v1.1: an admin changes a group's title and/or avatar; the members get `updated`.
pub async fn update(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<UpdateConversation>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    if b.title.is_none() && b.avatar.is_none() {
        return Err(ApiError::bad_request("give title and/or avatar"));
    }
    let request = ConvRequest::UpdateGroup {
        by: caller,
        title: b.title,
        avatar: b.avatar,
    };
    let conv = ask(&core.into_inner(), &path, request)
        .await?
        .into_conversation()?;
    Ok(HttpResponse::Ok().json(conv))
}

/// v1.1: an admin promotes a member to admin or demotes an admin.
pub async fn set_role(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<SetRole>,
) -> ApiResult<HttpResponse> {
    let (id, user_id) = path.into_inner();
    let admin = match body.role.as_str() {
        "admin" => true,
        "member" => false,
        _ => {
            return Err(ApiError::bad_request(
                "role must be \"admin\" or \"member\"",
            ))
        }
    };
    let request = ConvRequest::SetRole {
        by: caller,
        user_id,
        admin,
    };
    let conv = ask(&core.into_inner(), &id, request)
        .await?
        .into_conversation()?;
    Ok(HttpResponse::Ok().json(conv))
}

/// The caller's own settings of a conversation it is a member of: stored, then sent to every
/// session of the user on every node as a `settings` frame (v1.1).
pub async fn set_settings(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<SetSettings>,
) -> ApiResult<HttpResponse> {
    reads::member(&*core.store, &path, &caller.user_id).await?;
    let b = body.into_inner();
    let patch = rules::settings(b.muted_until, b.archived, b.pinned, crate::ids::now_ms())?;
    core.store
        .update_settings(&caller.user_id, &path, patch)
        .await?;
    let stored = core
        .store
        .conversation_settings(&caller.user_id)
        .await?
        .into_iter()
        .find(|(id, _)| *id == *path)
        .map(|(_, s)| s)
        .unwrap_or_default();
    let settings = view::settings(&path, &stored);
    let frame = view::settings_frame(&settings);
    core.send_frame(
        &[&caller.user_id],
        &frame,
        crate::domain::broadcast::Devices::All,
    );
    Ok(HttpResponse::Ok().json(settings))
}

/// The earlier versions of an edited message, oldest first (none once it is retracted: the
/// retraction purges them).
pub async fn versions(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<(String, u64)>,
) -> ApiResult<HttpResponse> {
    let (id, seq) = path.into_inner();
    let joined = reads::member(&*core.store, &id, &caller.user_id)
        .await?
        .joined_seq;
    let hidden = core
        .store
        .hidden_seqs(
            &caller.user_id,
            &id,
            seq.saturating_sub(1),
            seq.saturating_add(1),
        )
        .await?;
    let msg = core.store.message(&id, seq).await?;
    let Some(msg) = msg.filter(|_| seq > joined && !hidden.contains(&seq)) else {
        return Err(ApiError::not_found("no such message"));
    };
    let versions = core.store.message_versions(&id, seq).await?;
    Ok(HttpResponse::Ok().json(json!({
        "conversation_id": id,
        "seq": seq,
        "edited_at": msg.edited_at,
        "versions": versions.into_iter().map(view::version).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
pub struct ReceiptQuery {
    kind: Option<parley_protocol::ReceiptKind>,
    after: Option<String>,
    limit: Option<u32>,
}

/// v1.1: who received and read a message, for its sender: counts and a page of users with
/// times. The conversation's actor answers, from the positions it owns.
pub async fn receipts(
    core: web::Data<Core>,
    caller: Caller,
    path: web::Path<(String, u64)>,
    q: web::Query<ReceiptQuery>,
) -> ApiResult<HttpResponse> {
    let (id, seq) = path.into_inner();
    let q = q.into_inner();
    let l = &core.config.limits;
    let request = ConvRequest::Receipts {
        by: caller,
        seq,
        kind: q.kind.unwrap_or(parley_protocol::ReceiptKind::Read),
        after: q.after,
        limit: q
            .limit
            .unwrap_or(l.default_page)
            .clamp(1, l.max_group_members as u32),
    };
    let page = ask(&core.into_inner(), &id, request)
        .await?
        .into_receipts()?;
    Ok(HttpResponse::Ok().json(page))
}
