//! The bodies of the HTTP API (requests and answers), besides the conversation and message
//! types it shares with the WebSocket frames.

use crate::{ConversationKind, ErrorCode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSession {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub device_name: Option<String>,
    /// v1.1: log in to this existing device of mine (keeps its identity and cursors).
    #[serde(default)]
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionToken {
    pub token: String,
    pub user_id: String,
    pub device_id: String,
    pub expires_at: i64,
    /// v1.1: the device's refresh token (`POST /v1/sessions/refresh`); single use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// v1.1: `POST /v1/sessions/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshSession {
    pub refresh_token: String,
}

/// v1.1: `PUT /v1/users/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangePassword {
    pub old: String,
    pub new: String,
    /// Revoke every other device of mine.
    #[serde(default)]
    pub sign_out_others: bool,
}

/// v1.1: `DELETE /v1/users/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteAccount {
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateConversation {
    pub kind: ConversationKind,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
}

/// v1.1: `PATCH /v1/conversations/{id}`. An absent field is unchanged, `null` clears it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateConversation {
    #[serde(default, deserialize_with = "present")]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub avatar: Option<Option<String>>,
}

/// A field that is present (possibly `null`), as opposed to absent (`default`: `None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// v1.1: `PUT /v1/conversations/{id}/members/{user_id}/role`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRole {
    /// "admin" or "member".
    pub role: String,
}

/// `PUT /v1/conversations/{id}/settings`: any of the fields (v1 sent only `muted_until`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetSettings {
    #[serde(default)]
    pub muted_until: Option<i64>,
    /// v1.1
    #[serde(default)]
    pub archived: Option<bool>,
    /// v1.1: pin (now) or unpin.
    #[serde(default)]
    pub pinned: Option<bool>,
}

/// v1.1: one row of `GET /v1/blocks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockedUser {
    pub user_id: String,
    pub blocked_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddMembers {
    pub user_ids: Vec<String>,
}

/// The answer to an upload. v1.1: the image fields as in `Attachment` (`null` for other files).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub file_id: String,
    pub size: u64,
    pub content_type: String,
    pub sha256: String,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub thumbnail: Option<String>,
    #[serde(default)]
    pub placeholder: Option<String>,
}

/// v1.1: the answer to `POST /v1/files/{id}/url`: URLs that need no token until `expires_at`
/// (ms), for `<img src>` and the like. `thumbnail_url` is set for images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedUrl {
    pub url: String,
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushTarget {
    pub provider: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Web Push: the subscription's keys (`PushSubscription.toJSON().keys`).
    #[serde(default)]
    pub keys: Option<PushKeys>,
    /// "full" (sender and text preview) or "id_only" (conversation id and seq); default: the
    /// server's `push.default_payload`.
    #[serde(default)]
    pub payload: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushKeys {
    pub p256dh: String,
    pub auth: String,
}

/// `GET /v1/push/vapid` (v1.1): the Web Push VAPID public key, base64url (an uncompressed
/// P-256 point), for `pushManager.subscribe({applicationServerKey})`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VapidKey {
    pub public_key: String,
}

/// A device as `GET /v1/devices` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub push: Option<PushState>,
    /// v1.1: when the device was last connected (ms; now if it is connected); null if never.
    #[serde(default)]
    pub last_seen_at: Option<i64>,
    /// v1.1: this is the device of the token that asked.
    #[serde(default)]
    pub current: bool,
}

/// A device's push target, as the device's user sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushState {
    pub provider: String,
    /// "active", or "disabled" once a provider declared the target dead (register again).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub registered_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// v1.1: an earlier version of an edited message (`GET .../messages/{seq}/versions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageVersion {
    pub text: Option<String>,
    pub meta: Option<serde_json::Value>,
    /// When the next version replaced it.
    pub replaced_at: i64,
}

/// v1.1: who received or read a message (`GET .../messages/{seq}/receipts`), for its sender.
/// Counts cover every recipient (members who joined before the message, not its sender); a
/// page of `users` lists the ones of the asked kind, by user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptPage {
    pub conversation_id: String,
    pub seq: u64,
    pub recipients: u64,
    pub delivered: u64,
    pub read: u64,
    pub users: Vec<ReceiptUser>,
    pub more: bool,
}

/// One user in a `ReceiptPage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptUser {
    pub user_id: String,
    /// When the user's cursor passed the message (ms since the epoch); an upper bound when
    /// the marks of that moment were dropped, `null` when none is kept (see the protocol).
    pub at: Option<i64>,
}
