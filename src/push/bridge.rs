//! The bridge: leases due jobs from the store's outbox and delivers them, one consumer per
//! provider, with bounded concurrency.
//!
//! Competing consumers: any number of bridges (in `parley push` processes, or one inside
//! `parley serve`) share one outbox. A lease holds a job for `lease_ms`; a bridge that dies
//! loses its leases when they expire and another bridge takes the jobs. A job is completed
//! only after the provider accepted it (so delivery is at least once: a bridge killed between
//! the provider's answer and the completion delivers again after the lease), and only for the
//! version it delivered (a newer message collapsed into it meanwhile goes out next).
//!
//! Before sending it checks that the push is still owed: a device that holds the message (its
//! cursor moved: it was in the foreground) or a user who read it gets nothing. Failures:
//! transient ones retry with exponential backoff and full jitter (a provider's `Retry-After`
//! wins when longer) until the job's TTL; a dead target is disabled and its user's devices
//! are told (`TargetEvents`); rejected content is dropped; a misconfigured provider keeps the
//! job and retries slowly, logged once a minute.

use super::metrics::{ByFailure, ByProvider, PushMetrics};
use super::{payload, Outcome, Provider, ProviderKind, Target};
use crate::config::PushConfig;
use crate::ids::now_ms;
use crate::storage::{PushDone, PushJob, PushKind, PushTargetRow, Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Told when a provider declared a device's target dead, so that the user's connected devices
/// learn it (and the app registers again) instead of push going silently dead.
pub trait TargetEvents: Send + Sync {
    fn target_disabled(&self, user_id: &str, device_id: &str, target: &PushTargetRow);
}

/// A bridge outside the nodes tells them over the cluster bus: each node hands the frame to
/// the user's sessions it holds.
pub struct BusEvents(pub Arc<crate::bus::Bus>);

impl TargetEvents for BusEvents {
    fn target_disabled(&self, user_id: &str, device_id: &str, target: &PushTargetRow) {
        use crate::domain::broadcast::{Broadcast, Devices};
        let frame = crate::domain::view::push_target(device_id, target).to_string();
        self.0
            .broadcast(crate::bus::frame::NodeFrame::Broadcast(Broadcast::Frame {
                users: vec![user_id.to_string()],
                devices: Devices::All,
                frame,
            }));
    }
}

/// Nobody to tell: devices learn the state on their next `ready` or `GET /v1/devices`.
pub struct NoEvents;

impl TargetEvents for NoEvents {
    fn target_disabled(&self, _: &str, _: &str, _: &PushTargetRow) {}
}

pub struct Bridge {
    store: Arc<dyn Store>,
    providers: HashMap<ProviderKind, Arc<dyn Provider>>,
    cfg: PushConfig,
    /// This bridge's name on its leases.
    owner: String,
    pub metrics: Arc<PushMetrics>,
    events: Arc<dyn TargetEvents>,
    /// When each provider's misconfiguration was last logged.
    warned: Mutex<HashMap<ProviderKind, Instant>>,
}

/// How long to wait when nothing was due.
const IDLE: Duration = Duration::from_millis(200);

impl Bridge {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Vec<Arc<dyn Provider>>,
        cfg: PushConfig,
        events: Arc<dyn TargetEvents>,
    ) -> Arc<Bridge> {
        Arc::new(Bridge {
            store,
            providers: providers.into_iter().map(|p| (p.kind(), p)).collect(),
            cfg,
            owner: format!("bridge-{}", crate::ids::new_id()),
            metrics: Arc::new(PushMetrics::new()),
            events,
            warned: Mutex::new(HashMap::new()),
        })
    }

    /// Leases and delivers until the process stops.
    pub async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.cfg.concurrency));
        let mut last_stats = Instant::now() - Duration::from_secs(60);
        loop {
            if last_stats.elapsed() >= Duration::from_secs(2) {
                last_stats = Instant::now();
                self.sample_queue().await;
            }
            let free = slots.available_permits();
            if free == 0 {
                let _ = slots.acquire().await.map(drop);
                continue;
            }
            let now = now_ms();
            let until = now + self.cfg.lease_ms as i64;
            let jobs = match self
                .store
                .push_lease(&self.owner, now, until, free as u32)
                .await
            {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "push: leasing failed");
                    tokio::time::sleep(IDLE * 5).await;
                    continue;
                }
            };
            if jobs.is_empty() {
                tokio::time::sleep(IDLE).await;
                continue;
            }
            for job in jobs {
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let me = self.clone();
                tokio::spawn(async move {
                    me.metrics.in_flight.inc();
                    if let Err(e) = me.deliver(&job).await {
                        // Its lease expires and it is tried again.
                        tracing::warn!(error = %e, device = %job.device_id, "push: store failed mid-delivery");
                    }
                    me.metrics.in_flight.dec();
                    drop(permit);
                });
            }
        }
    }

    async fn sample_queue(&self) {
        if let Ok((n, oldest)) = self.store.push_queue().await {
            self.metrics.queued.set(n as i64);
            let age = oldest.map_or(0, |t| (now_ms() - t).max(0) / 1000);
            self.metrics.oldest_job_age_seconds.set(age);
        }
    }

    /// One job, end to end.
    async fn deliver(&self, job: &PushJob) -> StoreResult<()> {
        let now = now_ms();
        let expires = job.created_at + self.cfg.job_ttl_secs as i64 * 1000;
        let Some(device) = self.store.device(&job.device_id).await? else {
            return self.store.push_done(job, PushDone::Dropped).await;
        };
        let Some(row) = device.push.filter(|t| t.disabled.is_none()) else {
            return self.store.push_done(job, PushDone::Dropped).await;
        };
        let Some(kind) = ProviderKind::parse(&row.provider) else {
            return self.store.push_done(job, PushDone::Dropped).await;
        };
        if now >= expires {
            self.failed(kind, "permanent");
            tracing::info!(device = %job.device_id, "push: job expired undelivered (TTL)");
            return self.store.push_done(job, PushDone::Dropped).await;
        }
        if job.kind == PushKind::Message && !self.still_owed(job).await? {
            self.metrics.skipped.inc();
            return self.store.push_done(job, PushDone::Skipped).await;
        }
        let Some(provider) = self.providers.get(&kind) else {
            return self
                .misconfigured(job, kind, "no credentials for this provider")
                .await;
        };
        let mode = row
            .payload
            .clone()
            .unwrap_or_else(|| self.cfg.default_payload.clone());
        let ttl = Duration::from_millis((expires - now) as u64);
        let built = payload::build(&*self.store, job, &mode, ttl, now).await?;
        let target = Target {
            provider: kind,
            device_id: job.device_id.clone(),
            token: row.token.clone(),
            endpoint: row.endpoint.clone(),
            p256dh: row.p256dh.clone(),
            auth: row.auth.clone(),
            registered_at: row.registered_at,
        };
        let outcome = provider.deliver(&target, &built.notification).await;
        self.settle(job, kind, &device.user_id, &row, outcome, expires)
            .await
    }

    /// A message job is owed unless the device already holds it or the user has read it.
    async fn still_owed(&self, job: &PushJob) -> StoreResult<bool> {
        let held = self
            .store
            .device_cursor(&job.device_id, &job.conversation_id)
            .await?
            .unwrap_or(0);
        if held >= job.seq {
            return Ok(false);
        }
        let read = self
            .store
            .member(&job.conversation_id, &job.user_id)
            .await?
            .map_or(u64::MAX, |m| m.read_seq);
        Ok(read < job.seq)
    }

    async fn settle(
        &self,
        job: &PushJob,
        kind: ProviderKind,
        user_id: &str,
        row: &PushTargetRow,
        outcome: Outcome,
        expires: i64,
    ) -> StoreResult<()> {
        let by = ByProvider {
            provider: kind.as_str().to_string(),
        };
        match outcome {
            Outcome::Accepted => {
                self.metrics.delivered.get_or_create(&by).inc();
                self.store.push_done(job, PushDone::Delivered).await
            }
            Outcome::Transient {
                retry_after,
                reason,
            } => {
                self.failed(kind, "transient");
                let due = now_ms() + self.backoff(job.attempts, retry_after).as_millis() as i64;
                if due >= expires {
                    self.failed(kind, "permanent");
                    return self.store.push_done(job, PushDone::Dropped).await;
                }
                self.metrics.retried.get_or_create(&by).inc();
                self.store.push_retry(job, due, &reason).await
            }
            Outcome::InvalidTarget { reason, since_ms } => {
                self.failed(kind, "permanent");
                let at = now_ms();
                if self
                    .store
                    .disable_push_target(&job.device_id, &reason, at, since_ms)
                    .await?
                {
                    self.metrics.targets_disabled.get_or_create(&by).inc();
                    tracing::info!(device = %job.device_id, provider = kind.as_str(), %reason, "push target disabled");
                    let mut dead = row.clone();
                    dead.disabled = Some((at, reason));
                    self.events.target_disabled(user_id, &job.device_id, &dead);
                }
                self.store.push_done(job, PushDone::Dropped).await
            }
            Outcome::Rejected { reason } => {
                self.failed(kind, "permanent");
                tracing::warn!(device = %job.device_id, provider = kind.as_str(), %reason, "push: notification rejected; dropped");
                self.store.push_done(job, PushDone::Dropped).await
            }
            Outcome::Misconfigured { reason } => self.misconfigured(job, kind, &reason).await,
        }
    }

    /// Kept, retried at the slowest pace, and said loudly (once a minute per provider).
    async fn misconfigured(&self, job: &PushJob, kind: ProviderKind, why: &str) -> StoreResult<()> {
        self.failed(kind, "transient");
        let loud = {
            let mut w = self.warned.lock().unwrap();
            let due = w
                .get(&kind)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
            if due {
                w.insert(kind, Instant::now());
            }
            due
        };
        if loud {
            tracing::error!(
                provider = kind.as_str(),
                reason = why,
                "push provider misconfigured; jobs wait"
            );
        }
        let due = now_ms() + self.cfg.backoff_max_ms as i64;
        self.store.push_retry(job, due, why).await
    }

    fn failed(&self, kind: ProviderKind, how: &str) {
        self.metrics
            .failed
            .get_or_create(&ByFailure {
                provider: kind.as_str().to_string(),
                kind: how.to_string(),
            })
            .inc();
    }

    /// Full jitter: uniform in [0, min(max, base * 2^attempts)], at least `retry_after`.
    fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .cfg
            .backoff_base_ms
            .saturating_mul(1u64 << attempts.min(30))
            .min(self.cfg.backoff_max_ms);
        let jitter = Duration::from_millis(rand::random_range(0..=cap));
        retry_after.map_or(jitter, |r| r.max(jitter))
    }
}
