//! The end-to-end set-up: every provider's fake, a `[push]` section that points real
//! `parley serve` and `parley push` processes at them with timings small enough for tests
//! (a lease of seconds, backoff of tens of milliseconds), `parley push` processes, and the
//! client-side steps the tests repeat (register a target, confirm a message, read metrics).

use crate::common::{eventually, free_port, Client, Dev, TestServer};
use crate::push::fakes::apns::{FakeApns, KEY_ID, TEAM_ID, TOPIC};
use crate::push::fakes::fcm::FakeFcm;
use crate::push::fakes::webhook::{FakeReceiver, Hook};
use crate::push::fakes::webpush::FakePushService;
use crate::push::fakes::{TestCa, TestClock};
use crate::push::providers::p256_key;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/push/test-only-service-account.json"
);
/// How long the tests wait for a push that must come.
pub const PUSH_WAIT: Duration = Duration::from_secs(20);

pub struct Fakes {
    pub ca: TestCa,
    pub hook: FakeReceiver,
    pub apns: FakeApns,
    pub fcm: FakeFcm,
    pub webpush: FakePushService,
    _dir: tempfile::TempDir,
    apns_key: PathBuf,
    vapid_key: PathBuf,
}

impl Fakes {
    pub async fn start() -> Fakes {
        let ca = TestCa::new();
        let clock = TestClock::default();
        let dir = tempfile::tempdir().unwrap();
        let (apns_key, apns_public) = p256_key(dir.path(), "AuthKey.p8");
        let (vapid_key, vapid_public) = p256_key(dir.path(), "vapid.pem");
        Fakes {
            hook: FakeReceiver::start(&ca, &clock, SECRET).await,
            apns: FakeApns::start(&ca, &clock, apns_public).await,
            fcm: FakeFcm::start(&ca, &clock).await,
            webpush: FakePushService::start(&ca, &clock, URL_SAFE_NO_PAD.encode(vapid_public))
                .await,
            ca,
            _dir: dir,
            apns_key,
            vapid_key,
        }
    }

    /// The `[push]` section: every provider pointed at its fake, small timings, `set` over
    /// them (key, TOML value).
    pub fn toml(&self, in_process: bool, set: &[(&str, &str)]) -> String {
        let ca = self.ca.ca_file.display().to_string();
        let mut push: BTreeMap<&str, String> = [
            ("in_process", in_process.to_string()),
            ("confirm_delay_ms", "1000".into()),
            ("lease_ms", "3000".into()),
            ("request_timeout_ms", "2500".into()),
            ("backoff_base_ms", "50".into()),
            ("backoff_max_ms", "400".into()),
            ("concurrency", "8".into()),
            ("allow_private_endpoints", "true".into()),
            ("extra_ca_file", format!("{ca:?}")),
        ]
        .into_iter()
        .collect();
        for (k, v) in set {
            push.insert(k, v.to_string());
        }
        let mut out = String::from("[push]\n");
        for (k, v) in push {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push_str(&format!(
            "[push.webhook]\nsecret = \"{SECRET}\"\n\
             [push.fcm]\ncredentials_file = \"{SA}\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\n\
             [push.apns]\nkey_file = \"{}\"\nkey_id = \"{KEY_ID}\"\nteam_id = \"{TEAM_ID}\"\n\
             topic = \"{TOPIC}\"\nbase_url = \"{}\"\n\
             [push.webpush]\nvapid_key_file = \"{}\"\nsubject = \"mailto:ops@parley.test\"\n",
            self.fcm.base_url(),
            self.fcm.token_url(),
            self.apns_key.display(),
            self.apns.base_url(),
            self.vapid_key.display(),
        ));
        out
    }

    /// The webhook requests that `pred` selects.
    pub fn hooks_where(&self, pred: impl Fn(&Hook) -> bool) -> Vec<Hook> {
        self.hook.hooks().into_iter().filter(|h| pred(h)).collect()
    }

    /// Waits until `n` webhook requests match `pred`; returns them.
    pub async fn wait_hooks(&self, n: usize, pred: impl Fn(&Hook) -> bool) -> Vec<Hook> {
        let ok = eventually(PUSH_WAIT, || async { self.hooks_where(&pred).len() >= n }).await;
        let got = self.hooks_where(&pred);
        assert!(
            ok,
            "expected {n} matching webhooks, got {}: {got:#?}",
            got.len()
        );
        got
    }
}

/// A webhook request to `dev` about `conv` (any kind).
pub fn to(h: &Hook, dev: &Dev, conv: &str) -> bool {
    h.body["device_id"] == dev.device_id.as_str() && h.body["conversation_id"] == conv
}

/// One node with its in-process bridge (or none), configured by `toml`.
pub fn node(toml: &str) -> TestServer {
    tokio::task::block_in_place(|| TestServer::builder().nodes(1).config(toml).start())
}

/// `PUT /v1/devices/{id}/push`; asserts 204.
pub async fn register(srv: &TestServer, dev: &Dev, body: Value) {
    let path = format!("/v1/devices/{}/push", dev.device_id);
    let (s, v) = srv.http("PUT", &path, Some(&dev.token), Some(body)).await;
    assert_eq!(s, 204, "register push target: {v}");
}

/// A webhook target at the fake receiver's `cue`.
pub async fn register_hook(srv: &TestServer, fakes: &Fakes, dev: &Dev, cue: &str, payload: &str) {
    let body = json!({"provider": "webhook", "endpoint": fakes.hook.url(cue), "payload": payload});
    register(srv, dev, body).await;
}

/// Waits for the message `seq` of `conv` on `c` and confirms it (`received`).
pub async fn confirm(c: &mut Client, conv: &str, seq: u64) {
    c.next_where(|v| v["type"] == "message" && v["conversation_id"] == conv && v["seq"] == seq)
        .await;
    c.send(json!({"type": "received", "conversation_id": conv, "seq": seq}))
        .await;
}

fn get_text(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default()
}

/// The sum of a metric's samples (every label set that contains `labels`) at `addr`.
pub async fn metric(addr: &str, name: &str, labels: &str) -> f64 {
    let url = format!("http://{addr}/metrics");
    let text = tokio::task::spawn_blocking(move || get_text(&url))
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && (labels.is_empty() || l.contains(labels))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `parley push` process on the data directory (and bus) of a test server; killed on drop.
pub struct BridgeProc {
    child: Option<Child>,
    pub listen: String,
    log: PathBuf,
}

impl BridgeProc {
    /// Starts `parley push` with `toml` (plus `bus` when set) and waits for its `/readyz`.
    pub async fn start(data_dir: &Path, toml: &str, bus: Option<String>, name: &str) -> Self {
        let dir = data_dir.to_path_buf();
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley"));
        cmd.arg("push")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", &listen])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(b) = bus {
            cmd.args(["--bus", &b]);
        }
        let mut b = BridgeProc {
            child: Some(cmd.spawn().expect("spawn parley push")),
            listen,
            log,
        };
        let addr = b.listen.clone();
        let ready = eventually(Duration::from_secs(30), || {
            let addr = addr.clone();
            async move {
                let url = format!("http://{addr}/readyz");
                let body = tokio::task::spawn_blocking(move || get_text(&url))
                    .await
                    .unwrap();
                body.contains("ready")
            }
        })
        .await;
        if !ready {
            let _ = b.child.as_mut().unwrap().kill();
            panic!("parley push did not become ready; log:\n{}", b.log());
        }
        b
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9: no shutdown code runs, its leases stay until they expire.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Notifications a provider accepted from this bridge.
    pub async fn delivered(&self) -> f64 {
        metric(&self.listen, "parley_push_delivered_total", "").await
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- parley push log ---\n{}", self.log());
        }
        self.kill9();
    }
}
