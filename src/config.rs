//! Configuration: one embedded default file, merged with the operator's file, then flags.
//!
//! The defaults live in `default-config.toml` (printed by `parley config`), so the documented
//! defaults and the running defaults can never drift apart.

use serde::Deserialize;
use std::path::PathBuf;

pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub shutdown_grace_secs: u64,
    pub data_dir_lock_wait_ms: u64,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub gateway: GatewayConfig,
    pub actors: ActorConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    pub cluster: ClusterConfig,
    pub push: PushConfig,
    pub blobs: BlobsConfig,
    pub uploads: UploadsConfig,
    pub media: MediaConfig,
}

/// v1.1: image processing (`crate::media`) and media URLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub max_pixels: u64,
    pub max_dimension: u32,
    pub max_decode_mib: u64,
    pub max_long_edge: u32,
    pub reencode_above_bytes: u64,
    pub quality: u8,
    pub thumbnail_long_edge: u32,
    pub thumbnail_quality: u8,
    pub concurrency: usize,
    pub queue_wait_ms: u64,
    pub url_secret: String,
    pub url_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: String,
    pub token_ttl_secs: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub auth_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    Fsync,
    Os,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub durability: Durability,
    pub max_batch: usize,
    pub cache_kib: u64,
    pub readers: usize,
    pub idempotency_ttl_secs: u64,
    pub url: String,
    pub scylla_consistency: String,
    pub scylla_replication: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_text_bytes: usize,
    pub max_meta_bytes: usize,
    pub max_attachments: usize,
    pub max_client_id_bytes: usize,
    pub max_group_members: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub rate_strikes: u32,
    pub user_rate_per_sec: u32,
    pub user_rate_burst: u32,
    pub ip_auth_per_min: u32,
    pub ip_auth_burst: u32,
    pub typing_interval_ms: u64,
    pub outbound_queue: usize,
    pub slow_consumer_grace_ms: u64,
    pub max_page: u32,
    pub default_page: u32,
    pub retract_window_secs: u64,
    pub edit_window_secs: u64,
    pub max_emoji_bytes: usize,
    pub max_reactions_per_message: usize,
    pub max_file_bytes: u64,
    pub max_json_bytes: usize,
    pub max_concurrent_uploads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub heartbeat_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub max_connections: usize,
    pub max_pending_auth: usize,
    pub request_header_timeout_ms: u64,
    pub body_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorConfig {
    pub conversation_idle_secs: u64,
    /// Groups with at least this many members send their senders `receipt_summary` frames
    /// instead of one `receipt` per member (v1.1).
    pub receipt_summary_min_members: usize,
    /// At most one `receipt_summary` per message per this many ms.
    pub receipt_summary_interval_ms: u64,
}

/// The forms of `cluster.bus` (`bus::backend` opens them): one Redis, a Redis Cluster, the
/// primary Sentinel names; each also over TLS.
pub const BUS_SCHEMES: [&str; 6] = [
    "redis://",
    "rediss://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
    "rediss+sentinel://",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub bus: String,
    pub prefix: String,
    pub heartbeat_ms: u64,
    pub node_ttl_ms: u64,
    pub forward_timeout_ms: u64,
    /// PEM file of the CAs for a TLS bus (empty: the system's roots).
    pub tls_ca: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    pub in_process: bool,
    pub confirm_delay_ms: u64,
    pub job_ttl_secs: u64,
    pub lease_ms: u64,
    pub concurrency: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub default_payload: String,
    pub listen: String,
    pub extra_ca_file: String,
    pub request_timeout_ms: u64,
    pub allow_private_endpoints: bool,
    pub fcm: FcmConfig,
    pub apns: ApnsConfig,
    pub webpush: WebPushConfig,
    pub webhook: WebhookConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    pub credentials_file: String,
    pub project_id: String,
    pub base_url: String,
    pub token_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    pub key_file: String,
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
    pub base_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    pub vapid_key_file: String,
    pub subject: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub secret: String,
    pub secret_file: String,
    pub allow_http: bool,
}

impl PushConfig {
    /// Whether any provider has credentials, in the config or in the environment variables
    /// `push::providers` reads them from (then `parley serve` runs a bridge itself).
    pub fn any_provider(&self) -> bool {
        let env = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        !self.fcm.credentials_file.is_empty()
            || !self.apns.key_file.is_empty()
            || !self.webpush.vapid_key_file.is_empty()
            || !self.webhook.secret.is_empty()
            || !self.webhook.secret_file.is_empty()
            || [
                "PARLEY_FCM_CREDENTIALS",
                "PARLEY_APNS_KEY",
                "PARLEY_VAPID_KEY",
                "PARLEY_WEBHOOK_SECRET",
            ]
            .into_iter()
            .any(env)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub default_secs: u64,
    pub min_secs: u64,
    pub sweep_interval_ms: u64,
    pub batch: u32,
}

/// v1.1: where blob bytes live (`crate::blobs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsConfig {
    pub backend: String,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub path_style: bool,
    pub prefix: String,
    pub extra_ca_file: String,
    pub request_timeout_ms: u64,
}

/// v1.1: resumable uploads and the housekeeping of uploaded files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    pub resumable_expire_secs: u64,
    pub unattached_secs: u64,
    pub user_quota_bytes: u64,
    pub sweep_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: String,
}

impl Config {
    /// Defaults merged with the TOML text of an operator's file (if any).
    pub fn load(file_text: Option<&str>) -> Result<Config, String> {
        let mut base: toml::Table = DEFAULT_CONFIG
            .parse()
            .map_err(|e| format!("embedded config: {e}"))?;
        if let Some(text) = file_text {
            let over: toml::Table = text.parse().map_err(|e| format!("config file: {e}"))?;
            merge(&mut base, over);
        }
        let cfg: Config = toml::Value::Table(base)
            .try_into()
            .map_err(|e| format!("config: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_page == 0 || l.default_page == 0 || l.default_page > l.max_page {
            return Err("limits: need 0 < default_page <= max_page".into());
        }
        if l.outbound_queue == 0 || self.storage.max_batch == 0 || self.storage.readers == 0 {
            return Err("outbound_queue, max_batch and readers must be positive".into());
        }
        // 0 would be "forever" to ScyllaDB's TTL and "at once" to SQLite's expiry.
        if self.storage.idempotency_ttl_secs == 0 {
            return Err("storage.idempotency_ttl_secs must be positive".into());
        }
        let g = &self.gateway;
        if g.max_pending_auth == 0 || l.max_concurrent_uploads == 0 {
            return Err("max_pending_auth and max_concurrent_uploads must be positive".into());
        }
        // actix-web computes the header deadline from a clock it refreshes every 500 ms: a
        // shorter timeout can expire before the first byte is read.
        if g.request_header_timeout_ms < 1000 || g.body_timeout_ms == 0 {
            return Err(
                "gateway: need request_header_timeout_ms >= 1000 and body_timeout_ms > 0".into(),
            );
        }
        let c = &self.cluster;
        if !c.bus.is_empty() && !BUS_SCHEMES.iter().any(|s| c.bus.starts_with(s)) {
            return Err(
                "cluster.bus must be empty (one node) or a redis://, rediss://, \
                 redis+cluster://, redis+sentinel:// URL (docs/deployment)"
                    .into(),
            );
        }
        if c.heartbeat_ms == 0 || c.node_ttl_ms < 2 * c.heartbeat_ms || c.forward_timeout_ms == 0 {
            return Err("cluster: need heartbeat_ms > 0, node_ttl_ms >= 2 x heartbeat_ms".into());
        }
        let p = &self.push;
        if !matches!(p.default_payload.as_str(), "full" | "id_only") {
            return Err("push.default_payload must be \"full\" or \"id_only\"".into());
        }
        if p.lease_ms == 0
            || p.concurrency == 0
            || p.backoff_base_ms == 0
            || p.request_timeout_ms == 0
        {
            return Err(
                "push: lease_ms, concurrency, backoff_base_ms and request_timeout_ms must be positive"
                    .into(),
            );
        }
        // A delivery that outlives its lease can be leased and sent by another bridge while
        // the first is still waiting for the provider.
        if p.lease_ms <= p.request_timeout_ms {
            return Err("push.lease_ms must be greater than push.request_timeout_ms".into());
        }
        let r = &self.retention;
        if r.min_secs == 0 || r.sweep_interval_ms == 0 || r.batch == 0 {
            return Err("retention: min_secs, sweep_interval_ms and batch must be positive".into());
        }
        let u = &self.uploads;
        if u.sweep_interval_ms == 0 || u.resumable_expire_secs == 0 {
            return Err(
                "uploads: sweep_interval_ms and resumable_expire_secs must be positive".into(),
            );
        }
        if !matches!(self.blobs.backend.as_str(), "local" | "s3") {
            return Err("blobs.backend must be \"local\" or \"s3\"".into());
        }
        let m = &self.media;
        if m.concurrency == 0
            || m.max_long_edge == 0
            || m.thumbnail_long_edge == 0
            || m.url_ttl_secs == 0
            || m.url_ttl_secs > 24 * 3600
            || !(1..=100).contains(&m.quality)
            || !(1..=100).contains(&m.thumbnail_quality)
        {
            return Err("media: need concurrency, long edges > 0, qualities in 1..=100, 0 < url_ttl_secs <= 86400".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err("log.format must be \"text\" or \"json\"".into());
        }
        self.validate_bounds()
    }

    /// Durations and sizes the code does arithmetic with (milliseconds in an i64, a queue
    /// bound times eight) stay far from overflow; the bounds are far past any sane setting.
    fn validate_bounds(&self) -> Result<(), String> {
        const TEN_YEARS_SECS: u64 = 10 * 366 * 24 * 3600;
        let l = &self.limits;
        let durations = [
            ("auth.token_ttl_secs", self.auth.token_ttl_secs),
            ("limits.retract_window_secs", l.retract_window_secs),
            ("limits.edit_window_secs", l.edit_window_secs),
            ("retention.default_secs", self.retention.default_secs),
            ("uploads.unattached_secs", self.uploads.unattached_secs),
            (
                "uploads.resumable_expire_secs",
                self.uploads.resumable_expire_secs,
            ),
            (
                "storage.idempotency_ttl_secs",
                self.storage.idempotency_ttl_secs,
            ),
        ];
        for (name, v) in durations {
            if v > TEN_YEARS_SECS {
                return Err(format!("{name} is at most {TEN_YEARS_SECS} (ten years)"));
            }
        }
        if l.outbound_queue > 1 << 20 {
            return Err("limits.outbound_queue is at most 1048576".into());
        }
        Ok(())
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.limits.max_frame_bytes, 65536);
        assert_eq!(c.storage.durability, Durability::Fsync);
    }

    #[test]
    fn file_overrides_one_key_and_keeps_the_rest() {
        let c = Config::load(Some("[limits]\nmax_text_bytes = 10\n")).unwrap();
        assert_eq!(c.limits.max_text_bytes, 10);
        assert_eq!(c.limits.max_meta_bytes, 4096);
        // Durations the code turns into milliseconds are bounded (found by fuzzing).
        let huge = "[auth]\ntoken_ttl_secs = 9223372036854775807\n";
        assert!(Config::load(Some(huge))
            .unwrap_err()
            .contains("token_ttl_secs"));
        let huge = "[limits]\nedit_window_secs = 400000000\n";
        assert!(Config::load(Some(huge)).is_err());
        let zero = "[storage]\nidempotency_ttl_secs = 0\n";
        assert!(Config::load(Some(zero))
            .unwrap_err()
            .contains("idempotency_ttl_secs"));
    }

    #[test]
    fn a_push_lease_outlasts_a_request_to_a_provider() {
        let short = "[push]\nlease_ms = 15000\nrequest_timeout_ms = 15000\n";
        assert!(Config::load(Some(short)).unwrap_err().contains("lease_ms"));
        assert!(Config::load(Some("[push]\nlease_ms = 15001\n")).is_ok());
    }

    #[test]
    fn push_credentials_in_the_environment_count_as_a_provider() {
        let c = Config::load(None).unwrap();
        std::env::remove_var("PARLEY_WEBHOOK_SECRET");
        let before = c.push.any_provider();
        std::env::set_var(
            "PARLEY_WEBHOOK_SECRET",
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        );
        let with = c.push.any_provider();
        std::env::remove_var("PARLEY_WEBHOOK_SECRET");
        assert_eq!((before, with), (false, true));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::load(Some("[limits]\nmax_txt = 10\n")).is_err());
    }
}
