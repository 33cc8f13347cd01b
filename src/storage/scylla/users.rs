//! Users (with the username index that enforces uniqueness), devices and push targets.

use super::rows::{DeviceCols, UserCols};
use super::{bigint, conversations, cql, ScyllaStore};
use crate::storage::{DeviceRow, PushTargetRow, StoreError, StoreResult, UserRow};

pub(super) async fn create_user(s: &ScyllaStore, u: UserRow) -> StoreResult<()> {
    if !s
        .lwt(
            &cql::CLAIM_USERNAME,
            (u.username.as_str(), u.user_id.as_str()),
        )
        .await?
    {
        return Err(StoreError::Conflict("username is taken".into()));
    }
    s.exec(
        &cql::INSERT_USER,
        (
            u.user_id,
            u.username,
            u.display_name,
            u.password_hash,
            u.created_at,
        ),
    )
    .await
    .map(|_| ())
}

pub(super) async fn user_by_name(s: &ScyllaStore, username: &str) -> StoreResult<Option<UserRow>> {
    match s
        .row::<(String,)>(&cql::USER_ID_BY_NAME, (username,))
        .await?
    {
        Some((id,)) => user_by_id(s, &id).await,
        None => Ok(None),
    }
}

pub(super) async fn user_by_id(s: &ScyllaStore, user_id: &str) -> StoreResult<Option<UserRow>> {
    Ok(s.row::<UserCols>(&cql::USER_BY_ID, (user_id,))
        .await?
        .map(UserRow::from))
}

/// A new device is owed only what is sent after it exists: each cursor starts at its
/// conversation's current end.
pub(super) async fn create_device(s: &ScyllaStore, d: DeviceRow) -> StoreResult<()> {
    s.exec(
        &cql::INSERT_DEVICE,
        (
            d.device_id.as_str(),
            d.user_id.as_str(),
            d.name.as_deref(),
            d.created_at,
        ),
    )
    .await?;
    s.exec(
        &cql::INSERT_DEVICE_BY_USER,
        (d.user_id.as_str(), d.device_id.as_str()),
    )
    .await?;
    for conv in conversations::ids_of_user(s, &d.user_id).await? {
        let joined = conversations::member(s, &conv, &d.user_id)
            .await?
            .map(|m| m.joined_seq)
            .unwrap_or(0);
        let last = super::messages::last_seq(s, &conv, false).await?;
        let events = super::events::last_event(s, &conv).await?;
        s.exec(
            &cql::SET_DEVICE_CURSOR,
            (
                d.device_id.as_str(),
                conv.as_str(),
                bigint(last.max(joined)),
                bigint(events),
            ),
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn device(s: &ScyllaStore, device_id: &str) -> StoreResult<Option<DeviceRow>> {
    let Some(d) = s
        .row::<DeviceCols>(&cql::DEVICE_BY_ID, (device_id,))
        .await?
    else {
        return Ok(None);
    };
    let push = super::push::target(s, device_id).await?;
    Ok(Some(d.with_push(push)))
}

pub(super) async fn device_ids_of_user(s: &ScyllaStore, user_id: &str) -> StoreResult<Vec<String>> {
    Ok(s.rows::<(String,)>(&cql::DEVICES_OF_USER, (user_id,))
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

pub(super) async fn devices_of_user(s: &ScyllaStore, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
    let mut out = Vec::new();
    for id in device_ids_of_user(s, user_id).await? {
        out.extend(device(s, &id).await?);
    }
    out.sort_by(|a, b| (a.created_at, &a.device_id).cmp(&(b.created_at, &b.device_id)));
    Ok(out)
}

/// Registering (again) enables the target: a disabled one is live again. (Plain writes:
/// registration and a provider's verdict touch different cells of the row.)
pub(super) async fn set_push_target(
    s: &ScyllaStore,
    device_id: &str,
    t: PushTargetRow,
) -> StoreResult<()> {
    let Some(d) = s
        .row::<DeviceCols>(&cql::DEVICE_BY_ID, (device_id,))
        .await?
    else {
        return Err(StoreError::NotFound);
    };
    s.exec(
        &cql::SET_PUSH_TARGET_ROW,
        (
            device_id,
            d.user_id.as_str(),
            t.provider.as_str(),
            t.token.as_deref(),
            t.endpoint.as_deref(),
            t.p256dh.as_deref(),
            t.auth.as_deref(),
            t.payload.as_deref(),
            t.registered_at,
        ),
    )
    .await
    .map(|_| ())
}

/// The device's rows go: the device, its index entry, its cursors and its push target. Its
/// push jobs stay until a bridge leases them and finds no target (they are then dropped).
pub(super) async fn delete_device(s: &ScyllaStore, device_id: &str) -> StoreResult<()> {
    let Some(d) = s
        .row::<DeviceCols>(&cql::DEVICE_BY_ID, (device_id,))
        .await?
    else {
        return Err(StoreError::NotFound);
    };
    let user_id = d.user_id;
    s.exec(&cql::DELETE_DEVICE_BY_USER, (user_id.as_str(), device_id))
        .await?;
    s.exec(&cql::DELETE_DEVICE_CURSORS, (device_id,)).await?;
    s.exec(&cql::DELETE_PUSH_TARGET, (device_id,)).await?;
    s.exec(&cql::DELETE_DEVICE, (device_id,)).await?;
    Ok(())
}

/// Lightweight transactions: two refreshes racing with one token, only one rotates.
pub(super) async fn set_refresh_hash(
    s: &ScyllaStore,
    device_id: &str,
    expected: Option<String>,
    new_hash: String,
) -> StoreResult<bool> {
    match expected {
        None => {
            s.lwt(&cql::SET_REFRESH_HASH, (new_hash.as_str(), device_id))
                .await
        }
        Some(old) => {
            s.lwt(
                &cql::ROTATE_REFRESH_HASH,
                (new_hash.as_str(), device_id, old.as_str()),
            )
            .await
        }
    }
}

/// `IF EXISTS`: a touch racing a deletion must not leave a partial row behind.
/// One conditional update per device (`IF EXISTS`: a touch creates no row), a few at a time.
pub(super) async fn touch_devices(s: &ScyllaStore, seen: &[(String, i64)]) -> StoreResult<()> {
    for chunk in seen.chunks(16) {
        let touches = chunk
            .iter()
            .map(|(device_id, at)| s.lwt(&cql::TOUCH_DEVICE, (*at, device_id.as_str())));
        futures_util::future::try_join_all(touches).await?;
    }
    Ok(())
}

pub(super) async fn delete_user(s: &ScyllaStore, user_id: &str) -> StoreResult<()> {
    let Some(u) = user_by_id(s, user_id).await? else {
        return Err(StoreError::NotFound);
    };
    s.exec(&cql::FREE_USERNAME, (u.username.as_str(),)).await?;
    s.exec(&cql::DELETE_USER, (user_id,)).await?;
    Ok(())
}

pub(super) async fn set_password_hash(
    s: &ScyllaStore,
    user_id: &str,
    hash: String,
) -> StoreResult<()> {
    if !s
        .lwt(&cql::SET_PASSWORD_HASH, (hash.as_str(), user_id))
        .await?
    {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
