//! One consumer per provider: FCM, APNs, Web Push, webhooks, each behind `Provider`.
//!
//! (Skeleton: the providers are being written; `build` returns the ones with credentials.)

use super::Provider;
use crate::config::PushConfig;
use std::sync::Arc;

/// The providers `cfg` has credentials for.
pub fn build(_cfg: &PushConfig) -> Result<Vec<Arc<dyn Provider>>, String> {
    Ok(Vec::new())
}
