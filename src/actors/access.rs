//! v1.1: who may still act. Which devices' tokens are good (revocation), and the rate limits
//! that span more than one connection: per user over all its sessions on this node, and per
//! client address on registration and login.
//!
//! A token is a signed JWT, valid until it expires; revoking a device deletes it from the
//! store, and every HTTP request and WebSocket connect checks that the token's device still
//! exists. HTTP requests check through a short cache (`DEVICE_TTL`), which a revocation
//! clears on every node through `Broadcast::Revoked`; the TTL only bounds the case where that
//! broadcast was lost with the bus. The rate limits are per node (no shared counter): cheap,
//! and approximate across nodes as documented in docs/protocol.md.

use crate::config::Config;
use crate::storage::{Store, StoreResult};
use dashmap::DashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a device found in the store is trusted without asking again.
const DEVICE_TTL: Duration = Duration::from_secs(30);
/// Entries kept per map before idle ones (full buckets, stale devices) are pruned.
const MAX_ENTRIES: usize = 100_000;

/// A token bucket: `rate` tokens per second, up to `burst`.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes one token, or says how long until one is there.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    fn idle(&self, rate: f64, burst: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

struct Limiter<K: Eq + Hash> {
    buckets: DashMap<K, Bucket>,
    rate: f64,
    burst: f64,
}

impl<K: Eq + Hash> Limiter<K> {
    fn new(rate: f64, burst: u32) -> Self {
        Limiter {
            buckets: DashMap::new(),
            rate: rate.max(1e-6),
            burst: burst.max(1) as f64,
        }
    }

    fn take<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        if let Some(mut b) = self.buckets.get_mut(key) {
            return b.take(self.rate, self.burst, now);
        }
        if self.buckets.len() > MAX_ENTRIES {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, b| !b.idle(rate, burst, now));
        }
        let mut b = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.take(self.rate, self.burst, now)
    }
}

pub struct Access {
    /// device id -> (its user, when the store last said it exists)
    devices: DashMap<String, (String, Instant)>,
    users: Limiter<String>,
    addresses: Limiter<IpAddr>,
}

impl Access {
    pub fn new(config: &Config) -> Access {
        let l = &config.limits;
        Access {
            devices: DashMap::new(),
            users: Limiter::new(l.user_rate_per_sec as f64, l.user_rate_burst),
            addresses: Limiter::new(l.ip_auth_per_min as f64 / 60.0, l.ip_auth_burst),
        }
    }

    /// Whether the device exists and belongs to the user (the token's claims).
    pub async fn device_ok(
        &self,
        store: &dyn Store,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<bool> {
        if let Some(e) = self.devices.get(device_id) {
            if e.1.elapsed() < DEVICE_TTL {
                return Ok(e.0 == user_id);
            }
        }
        let Some(d) = store.device(device_id).await? else {
            self.devices.remove(device_id);
            return Ok(false);
        };
        if self.devices.len() > MAX_ENTRIES {
            self.devices.retain(|_, e| e.1.elapsed() < DEVICE_TTL);
        }
        let ok = d.user_id == user_id;
        self.devices
            .insert(device_id.to_string(), (d.user_id, Instant::now()));
        Ok(ok)
    }

    /// Revoked devices: ask the store again next time.
    pub fn forget(&self, devices: &[String]) {
        for d in devices {
            self.devices.remove(d);
        }
    }

    /// One client frame of this user (over all its sessions on this node).
    pub fn user_frame(&self, user_id: &str) -> Result<(), Duration> {
        self.users.take(user_id)
    }

    /// One registration or login attempt from this address.
    pub fn auth_attempt(&self, ip: IpAddr) -> Result<(), Duration> {
        self.addresses.take(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_past_burst_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 2.0,
            at: t0,
        };
        assert!(b.take(1.0, 2.0, t0).is_ok());
        assert!(b.take(1.0, 2.0, t0).is_ok());
        let wait = b.take(1.0, 2.0, t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.take(1.0, 2.0, t0 + Duration::from_secs(1)).is_ok());
    }
}
