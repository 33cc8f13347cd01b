//! Push notifications: what Parley owes to devices that hold no WebSocket, handed to the
//! platform providers.
//!
//! Split the way the Revolt push daemon is: the server decides *who is notified* (the
//! conversation actor marks a conversation as having new messages in the same commit, and
//! turns that into one durable job per (device, conversation) in the store's outbox: see
//! `notify`); the bridge (`bridge`, run by `parley push` or inside
//! `parley serve`) decides nothing about users: it leases due jobs, builds each notification
//! from the store (`payload`), hands it to the consumer of its provider (`providers`: FCM,
//! APNs, Web Push, webhooks), and completes the job only once the provider accepted it.
//!
//! This file holds the types the two halves and the providers share.

pub mod bridge;
pub mod ece;
pub mod http;
pub mod jws;
pub mod metrics;
pub mod notify;
pub mod payload;
pub mod providers;
pub mod sign;

use async_trait::async_trait;
use std::time::Duration;

/// The push services a device's target may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Fcm,
    Apns,
    WebPush,
    Webhook,
}

impl ProviderKind {
    pub fn parse(s: &str) -> Option<ProviderKind> {
        Some(match s {
            "fcm" => ProviderKind::Fcm,
            "apns" => ProviderKind::Apns,
            "webpush" => ProviderKind::WebPush,
            "webhook" => ProviderKind::Webhook,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Fcm => "fcm",
            ProviderKind::Apns => "apns",
            ProviderKind::WebPush => "webpush",
            ProviderKind::Webhook => "webhook",
        }
    }
}

/// Where a notification goes: a device's push target as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub provider: ProviderKind,
    pub device_id: String,
    /// FCM registration token, APNs device token (hex).
    pub token: Option<String>,
    /// Web Push subscription endpoint, webhook URL.
    pub endpoint: Option<String>,
    /// Web Push subscription keys (base64url): the UA's P-256 public key and auth secret.
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    /// When the target was (last) registered, ms since the epoch (APNs 410 timestamps are
    /// compared with it).
    pub registered_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// New messages in a conversation.
    Message,
    /// The user read the conversation elsewhere: remove its notification, update the badge.
    Clear,
}

/// What the user sees, in `full` payload mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The sender's display name (or username), and the conversation's title for groups.
    pub title: String,
    /// The latest message's text (cut by each provider to its size limit).
    pub body: String,
}

/// One notification, built by the bridge from the store for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Stable across retries of this job (APNs `apns-id`, webhook `webhook-id`): a UUID.
    pub id: String,
    pub kind: Kind,
    pub user_id: String,
    pub conversation_id: String,
    /// The newest message the notification stands for.
    pub seq: u64,
    /// The user's total unread count (the app's badge), from the server's own cursors.
    pub badge: u64,
    /// Unread messages in this conversation.
    pub unread: u64,
    /// `None` in `id_only` mode, for a muted conversation, or for a `Clear`: no content
    /// reaches the provider; the app fetches what it shows.
    pub preview: Option<Preview>,
    /// The user muted the conversation (`muted_until`): the counts go out, no alert. Carried
    /// in every payload (`"muted": true`), since in `id_only` mode the app decides what to
    /// show and must know.
    pub muted: bool,
    /// Collapses notifications of one conversation: at most 32 characters of the base64url
    /// alphabet (fits APNs collapse ids, FCM collapse keys and tags, and Web Push Topics).
    pub collapse_key: String,
    /// How long the provider may keep trying (what is left of the job's TTL).
    pub ttl: Duration,
}

/// What a provider answered, in the bridge's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The provider accepted the notification: the job is complete.
    Accepted,
    /// Try again later (429, 5xx, a timeout, a refused connection): after `retry_after` if
    /// the provider said (`Retry-After`), else with backoff.
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The target is dead (FCM UNREGISTERED, APNs 410 / BadDeviceToken, Web Push 404/410):
    /// disable it, and tell the user's devices so the app registers again. `since_ms`: when
    /// the provider says it became invalid (APNs 410 `timestamp`); a target registered later
    /// is kept.
    InvalidTarget {
        reason: String,
        since_ms: Option<i64>,
    },
    /// This notification can never be delivered (a provider rejected its content): drop it.
    Rejected { reason: String },
    /// The deployment's credentials or settings are wrong (FCM 401/403, APNs 403
    /// InvalidProviderToken): keep the job and the target, retry later, and say so loudly.
    Misconfigured { reason: String },
}

/// One consumer per provider: sends one notification to one target.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    async fn deliver(&self, target: &Target, n: &Notification) -> Outcome;
}
