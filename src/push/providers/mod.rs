//! One consumer per provider: FCM, APNs, Web Push, webhooks, each behind `Provider`.
//!
//! `build` makes one for each provider that has credentials: from the file named in the
//! config, else from an environment variable holding the file's content (for containers and
//! secret stores): `PARLEY_FCM_CREDENTIALS` (the service account's JSON), `PARLEY_APNS_KEY`
//! (the `.p8` PEM), `PARLEY_VAPID_KEY` (the VAPID PEM), `PARLEY_WEBHOOK_SECRET`.
//!
//! Each provider has its own HTTPS client (`push::http`), so one provider's slow or dead
//! service only ever holds its own connections and in-flight slots. FCM and APNs talk to the
//! deployment's configured hosts; Web Push endpoints and webhook URLs come from users, so
//! their clients refuse non-public addresses unless `push.allow_private_endpoints` is set.
//!
//! Each provider's module doc gives its exact request, payload and error classification:
//! `fcm`, `apns`, `webpush`, `webhook`.

pub mod apns;
mod common;
pub mod fcm;
pub mod webhook;
pub mod webpush;

pub use common::{system_clock, Clock};

use super::http::{self, Client, Options};
use super::Provider;
use crate::config::PushConfig;
use std::sync::Arc;
use std::time::Duration;

/// The providers `cfg` has credentials for.
pub fn build(cfg: &PushConfig) -> Result<Vec<Arc<dyn Provider>>, String> {
    build_with_clock(cfg, system_clock())
}

/// `build`, with the clock credentials are timed by (the tests move it).
pub fn build_with_clock(cfg: &PushConfig, clock: Clock) -> Result<Vec<Arc<dyn Provider>>, String> {
    let roots = http::roots(&cfg.extra_ca_file)?;
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let client = |alpn: &[&[u8]], o: Options| -> Result<Client, String> {
        Ok(Client::new(http::tls(roots.clone(), alpn)?, o))
    };
    let opts = Options {
        timeout: Duration::from_millis(cfg.request_timeout_ms),
        max_in_flight: cfg.concurrency,
        h2_only: false,
        allow_http: false,
        public_only: false,
    };
    let user_urls = Options {
        public_only: !cfg.allow_private_endpoints,
        ..opts.clone()
    };
    let mut out: Vec<Arc<dyn Provider>> = Vec::new();
    if let Some(json) = credential(&cfg.fcm.credentials_file, "PARLEY_FCM_CREDENTIALS")? {
        let c = client(both, opts.clone())?;
        out.push(Arc::new(fcm::Fcm::new(&cfg.fcm, &json, c, clock.clone())?));
    }
    if let Some(p8) = credential(&cfg.apns.key_file, "PARLEY_APNS_KEY")? {
        let o = Options {
            h2_only: true,
            ..opts.clone()
        };
        let c = client(&[b"h2"], o)?;
        out.push(Arc::new(apns::Apns::new(&cfg.apns, &p8, c, clock.clone())?));
    }
    if let Some(pem) = credential(&cfg.webpush.vapid_key_file, "PARLEY_VAPID_KEY")? {
        let c = client(both, user_urls.clone())?;
        out.push(Arc::new(webpush::WebPush::new(
            &cfg.webpush,
            &pem,
            c,
            clock.clone(),
        )?));
    }
    let w = &cfg.webhook;
    let secret = if w.secret.is_empty() {
        credential(&w.secret_file, "PARLEY_WEBHOOK_SECRET")?
    } else {
        Some(w.secret.clone())
    };
    if let Some(secret) = secret {
        let o = Options {
            allow_http: w.allow_http,
            ..user_urls
        };
        let c = client(both, o)?;
        out.push(Arc::new(webhook::Webhook::new(&secret, c, clock)?));
    }
    Ok(out)
}

/// The VAPID public key (base64url, 65-byte point) if Web Push is configured: what web
/// clients pass to `pushManager.subscribe` as `applicationServerKey`.
pub fn vapid_public_key(cfg: &PushConfig) -> Result<Option<String>, String> {
    let Some(pem) = credential(&cfg.webpush.vapid_key_file, "PARLEY_VAPID_KEY")? else {
        return Ok(None);
    };
    let key = super::jws::Es256::from_pem(&pem).map_err(|e| format!("VAPID key: {e}"))?;
    Ok(Some(super::jws::b64url(key.public_key())))
}

/// The content of `file` if it is set, else of the environment variable `env` if set.
fn credential(file: &str, env: &str) -> Result<Option<String>, String> {
    if !file.is_empty() {
        return std::fs::read_to_string(file)
            .map(Some)
            .map_err(|e| format!("{file}: {e}"));
    }
    Ok(std::env::var(env).ok().filter(|v| !v.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_file_else_the_environment() {
        let var = "PARLEY_TEST_ONLY_PUSH_CREDENTIAL";
        std::env::remove_var(var);
        assert_eq!(credential("", var).unwrap(), None);
        std::env::set_var(var, "from env");
        assert_eq!(credential("", var).unwrap().as_deref(), Some("from env"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "from file").unwrap();
        let f = f.to_str().unwrap();
        assert_eq!(credential(f, var).unwrap().as_deref(), Some("from file"));
        assert!(credential("/nonexistent/k", var).is_err());
        std::env::remove_var(var);
    }

    #[test]
    fn no_credentials_no_providers() {
        let cfg = crate::config::Config::load(None).unwrap();
        assert!(build(&cfg.push).unwrap().is_empty());
        let bad =
            crate::config::Config::load(Some("[push]\nextra_ca_file = \"/nonexistent/ca.pem\"\n"))
                .unwrap();
        assert!(build(&bad.push).is_err());
    }
}
