//! Local stand-ins for the push providers, speaking each one's documented API over the same
//! transport as the real service: HTTPS with a test CA (rcgen), HTTP/2 only for APNs.
//!
//! Each fake checks what the real service checks (credentials, required headers, limits),
//! answers success, each permanent error and each transient error on cue (by a prefix of the
//! device token or a path segment of the endpoint: see each fake's table), and records what
//! it received so tests can assert on it. The fakes verify signatures and decrypt payloads
//! with their own code on ring, never with the code under test, so a bug shared by the
//! signer and the verifier cannot hide.
//!
//! - `fcm`: FCM HTTP v1 `messages:send` and the OAuth2 token endpoint, on one server.
//! - `apns`: the APNs provider API, HTTP/2 only, verifying the ES256 provider token.
//! - `webpush`: a push service verifying VAPID and decrypting per RFC 8291.
//! - `webhook`: a receiver verifying the Standard Webhooks signature.

pub mod apns;
pub mod fcm;
pub mod webhook;
pub mod webpush;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parley::push::providers::Clock;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A CA made for one test, and a leaf it signed for `127.0.0.1` and `localhost`.
pub struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA certificate, PEM: what `push.extra_ca_file` names.
    pub ca_file: PathBuf,
    leaf: CertificateDer<'static>,
    leaf_key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Parley push test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, pem("CERTIFICATE", ca.der())).unwrap();
        TestCa {
            _dir: dir,
            ca_file,
            leaf: leaf.der().clone(),
            leaf_key: leaf_key.serialize_der(),
        }
    }

    /// The leaf and its key as PEM files (for a server that reads files: redis-server).
    pub fn write_leaf(&self) -> (PathBuf, PathBuf) {
        let cert = self._dir.path().join("leaf.pem");
        let key = self._dir.path().join("leaf.key");
        std::fs::write(&cert, pem("CERTIFICATE", &self.leaf)).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", &self.leaf_key)).unwrap();
        (cert, key)
    }

    /// A TLS acceptor with the leaf, offering `alpn`.
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.clone()], key)
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(cfg))
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The wall clock shared by the providers and the fakes, which tests move forward.
#[derive(Clone, Default)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn clock(&self) -> Clock {
        let off = self.0.clone();
        Arc::new(move || {
            let o = off.load(Ordering::SeqCst);
            if o >= 0 {
                SystemTime::now() + Duration::from_secs(o as u64)
            } else {
                SystemTime::now() - Duration::from_secs(o.unsigned_abs())
            }
        })
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn unix(&self) -> u64 {
        (self.clock())()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}

/// One request as a fake's handler sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Which connection (counted from 0 per server) it came on.
    pub conn: usize,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A fake's answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Send a graceful GOAWAY on this connection after answering (HTTP/2).
    pub goaway: bool,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            goaway: false,
        }
    }

    pub fn json(status: u16, v: serde_json::Value) -> Reply {
        Reply::new(status)
            .header("content-type", "application/json")
            .body(v.to_string())
    }

    pub fn header(mut self, name: &'static str, v: impl Into<String>) -> Reply {
        self.headers.push((name, v.into()));
        self
    }

    pub fn body(mut self, b: impl Into<Bytes>) -> Reply {
        self.body = b.into();
        self
    }
}

type Handler = Arc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// A running fake: stops (with every connection) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _tasks: JoinSet<()>,
}

impl Server {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

/// Serves `handler` on 127.0.0.1 over TLS (`tls`), or plain HTTP/1.1 without it. ALPN picks
/// HTTP/2 or HTTP/1.1.
pub async fn serve<F, Fut>(tls: Option<TlsAcceptor>, handler: F) -> Server
where
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let handler: Handler =
        Arc::new(move |r| -> Pin<Box<dyn Future<Output = Reply> + Send>> { Box::pin(handler(r)) });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let count = connections.clone();
    tasks.spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (tls, handler) = (tls.clone(), handler.clone());
            conns.spawn(async move {
                match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        connection(TokioIo::new(stream), h2, n, handler).await;
                    }
                    None => connection(TokioIo::new(tcp), false, n, handler).await,
                }
            });
        }
    });
    Server {
        addr,
        connections,
        _tasks: tasks,
    }
}

async fn connection<T>(io: TokioIo<T>, h2: bool, n: usize, handler: Handler)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let goaway = Arc::new(Notify::new());
    let g = goaway.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (handler, g) = (handler.clone(), g.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let r = Req {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                version: parts.version,
                headers: parts.headers,
                body,
                conn: n,
            };
            let reply = handler(r).await;
            if reply.goaway {
                g.notify_one();
            }
            let mut resp = Response::new(Full::new(reply.body));
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
            for (k, v) in reply.headers {
                resp.headers_mut().append(
                    HeaderName::from_static(k),
                    HeaderValue::from_str(&v).unwrap(),
                );
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = goaway.notified() => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}

/// `a == b` without leaking where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// A compact JWS split into its decoded header and claims, the signing input and signature.
pub struct Jws {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    pub input: String,
    pub signature: Vec<u8>,
}

pub fn split_jws(token: &str) -> Option<Jws> {
    let p: Vec<&str> = token.split('.').collect();
    if p.len() != 3 {
        return None;
    }
    Some(Jws {
        header: serde_json::from_slice(&b64url_decode(p[0])?).ok()?,
        claims: serde_json::from_slice(&b64url_decode(p[1])?).ok()?,
        input: format!("{}.{}", p[0], p[1]),
        signature: b64url_decode(p[2])?,
    })
}
