//! The providers' HTTPS client: hyper 1 over tokio-rustls (rustls with the ring provider),
//! trusting the webpki roots plus `push.extra_ca_file`.
//!
//! Why not reqwest or hyper-util's pooled client: APNs wants one long-lived HTTP/2 connection
//! that is reopened when the server sends GOAWAY, and the runtime image has no system trust
//! store; a connection per origin, kept by hand, is a few dozen lines and keeps aws-lc-sys,
//! OpenSSL and tower out of the build.
//!
//! - **Connections.** TLS with ALPN `h2`, `http/1.1` (only `h2` for a client built with
//!   `h2_only`, for APNs). An HTTP/2 connection is kept per origin and shared by every request
//!   to it, with pings every 15 s; it is replaced once closed (GOAWAY, an error, a failed
//!   ping). A request that never reached the server (queued when the connection closed, or
//!   above a graceful GOAWAY's last stream, or refused) is sent once more on a new connection.
//!   HTTP/1.1 origins get a new connection per request. Origins are kept for at most
//!   `MAX_ORIGINS`, so user-given endpoints cannot grow the table without bound.
//! - **Limits.** At most `max_in_flight` requests at once per client (each provider has its
//!   own client, so one provider's outage never takes another's slots), each bounded by
//!   `timeout` from connecting to the last byte of the answer, whose body is read up to 64 KiB.
//! - **Endpoints users give** (Web Push, webhooks) are checked before connecting: `https`
//!   (or `http` if allowed), and with `public_only` every resolved address must be public
//!   (no loopback, private, link-local, CGNAT, multicast or unspecified address), and the
//!   connection goes to the address that was checked, so DNS cannot point it elsewhere later.
//! - No redirects are followed: a 3xx is an answer like any other.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderMap, HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio_rustls::TlsConnector;

/// Origins (scheme, host, port) a client keeps connection state for.
const MAX_ORIGINS: usize = 1024;
/// The most of an answer's body that is read.
const MAX_BODY: usize = 64 * 1024;

type Body = Full<Bytes>;

/// The trust roots: webpki's, plus every certificate in `extra_ca_file` (PEM) if set.
pub fn roots(extra_ca_file: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !extra_ca_file.is_empty() {
        let pem = std::fs::read(extra_ca_file).map_err(|e| format!("{extra_ca_file}: {e}"))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{extra_ca_file}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{extra_ca_file}: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("{extra_ca_file}: no CERTIFICATE in it"));
        }
    }
    Ok(roots)
}

/// A rustls client configuration with the ring provider, offering `alpn`.
pub fn tls(roots: RootCertStore, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

#[derive(Debug, Clone)]
pub struct Options {
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Refuse servers that do not negotiate HTTP/2 (APNs).
    pub h2_only: bool,
    /// Allow `http://` URLs (webhooks, if configured so).
    pub allow_http: bool,
    /// Connect only to public addresses (endpoints that users register).
    pub public_only: bool,
}

/// An answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// `Retry-After`, as delta-seconds or an HTTP-date (RFC 9110 section 10.2.3).
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.headers.get("retry-after")?.to_str().ok()?.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = httpdate::parse_http_date(v).ok()?;
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// No answer: refused, reset, TLS failure, timeout. Worth retrying.
    Transport(String),
    /// The URL may not be used (bad URL, scheme, or an address that is not allowed).
    Forbidden(String),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

enum Slot {
    Unknown,
    /// The shared connection, with its number (to tell it from a newer one).
    H2(u64, http2::SendRequest<Body>),
    /// The origin speaks HTTP/1.1 only: a connection per request.
    H1,
}

enum Sender {
    H2 {
        id: u64,
        sender: http2::SendRequest<Body>,
    },
    H1(http1::SendRequest<Body>),
}

pub struct Client {
    tls: Arc<ClientConfig>,
    opts: Options,
    permits: Semaphore,
    slots: Mutex<HashMap<Origin, Arc<AsyncMutex<Slot>>>>,
    opened: AtomicU64,
}

impl Client {
    pub fn new(tls: Arc<ClientConfig>, opts: Options) -> Client {
        Client {
            tls,
            permits: Semaphore::new(opts.max_in_flight.max(1)),
            opts,
            slots: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        }
    }

    /// Sends one request and reads the whole answer, within the client's timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Reply, Failure> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Failure::Forbidden(format!("not a URL: {url:?}")))?;
        let origin = self.origin(&uri)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Failure::Transport("client closed".into()))?;
        let req = Req {
            method,
            uri,
            headers,
            body,
        };
        match tokio::time::timeout(self.opts.timeout, self.exchange(&origin, &req)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Transport(format!(
                "{origin}: no answer within {} ms",
                self.opts.timeout.as_millis()
            ))),
        }
    }

    fn origin(&self, uri: &Uri) -> Result<Origin, Failure> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.opts.allow_http => false,
            _ => return Err(Failure::Forbidden(format!("scheme not allowed: {uri}"))),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Failure::Forbidden(format!("no host: {uri}")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Origin { tls, host, port })
    }

    fn slot(&self, origin: &Origin) -> Arc<AsyncMutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_ORIGINS && !slots.contains_key(origin) {
            // Forget origins nobody is using and that hold no open connection.
            slots.retain(|_, s| match s.try_lock() {
                Ok(g) => matches!(&*g, Slot::H2(_, c) if !c.is_closed()),
                Err(_) => true,
            });
            if slots.len() >= MAX_ORIGINS {
                slots.retain(|_, s| s.try_lock().is_err());
            }
        }
        slots
            .entry(origin.clone())
            .or_insert_with(|| Arc::new(AsyncMutex::new(Slot::Unknown)))
            .clone()
    }

    async fn exchange(&self, origin: &Origin, req: &Req) -> Result<Reply, Failure> {
        let slot = self.slot(origin);
        let mut retried = false;
        loop {
            match self.sender(origin, &slot).await? {
                Sender::H1(mut s) => {
                    let resp = s
                        .send_request(req.build(false))
                        .await
                        .map_err(|e| Failure::Transport(format!("{origin}: {}", chain(&e))))?;
                    return read(origin, resp).await;
                }
                Sender::H2 { id, mut sender } => {
                    match sender.try_send_request(req.build(true)).await {
                        Ok(resp) => return read(origin, resp).await,
                        Err(e) => {
                            // Not sent: this connection is going away, whatever it says.
                            let unsent = e.message().is_some() || never_processed(e.error());
                            forget(&slot, id, unsent).await;
                            if unsent && !retried {
                                retried = true;
                                continue;
                            }
                            return Err(Failure::Transport(format!(
                                "{origin}: {}",
                                chain(e.error())
                            )));
                        }
                    }
                }
            }
        }
    }

    /// The shared HTTP/2 connection of `origin`, or a new connection. One handshake at a time
    /// per origin: requests that arrive meanwhile wait for it and share it.
    async fn sender(&self, origin: &Origin, slot: &AsyncMutex<Slot>) -> Result<Sender, Failure> {
        let mut guard = slot.lock().await;
        match &*guard {
            Slot::H2(id, s) if !s.is_closed() => {
                return Ok(Sender::H2 {
                    id: *id,
                    sender: s.clone(),
                })
            }
            Slot::H1 => {
                drop(guard);
                return self.connect(origin).await;
            }
            _ => {}
        }
        let conn = self.connect(origin).await?;
        *guard = match &conn {
            Sender::H2 { id, sender, .. } => Slot::H2(*id, sender.clone()),
            Sender::H1(_) => Slot::H1,
        };
        Ok(conn)
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, Failure> {
        let tcp = self.tcp(origin).await?;
        let _ = tcp.set_nodelay(true);
        if !origin.tls {
            return h1(origin, TokioIo::new(tcp)).await;
        }
        let name = ServerName::try_from(origin.host.clone())
            .map_err(|_| Failure::Forbidden(format!("{origin}: not a host name")))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Transport(format!("{origin}: TLS: {e}")))?;
        let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if !is_h2 && self.opts.h2_only {
            return Err(Failure::Transport(format!(
                "{origin}: server did not offer h2"
            )));
        }
        if !is_h2 {
            return h1(origin, TokioIo::new(tls)).await;
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Failure::Transport(format!("{origin}: h2 handshake: {}", chain(&e))))?;
        let o = origin.to_string();
        tokio::spawn(async move {
            // The error, if any, reaches the requests in flight; they report it.
            if let Err(e) = conn.await {
                tracing::debug!(origin = %o, "push connection closed: {e}");
            }
        });
        Ok(Sender::H2 {
            id: self.opened.fetch_add(1, Ordering::Relaxed),
            sender,
        })
    }

    async fn tcp(&self, origin: &Origin) -> Result<TcpStream, Failure> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| Failure::Transport(format!("{origin}: DNS: {e}")))?
            .collect();
        if self.opts.public_only {
            if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Failure::Forbidden(format!(
                    "{origin}: resolves to {}, which is not a public address",
                    a.ip()
                )));
            }
        }
        let mut last = format!("{origin}: no address");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("{origin}: connect {a}: {e}"),
            }
        }
        Err(Failure::Transport(last))
    }
}

async fn h1<T>(origin: &Origin, io: TokioIo<T>) -> Result<Sender, Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| Failure::Transport(format!("{origin}: {}", chain(&e))))?;
    tokio::spawn(async move {
        let _ = conn.await; // errors reach the one request on this connection
    });
    Ok(Sender::H1(sender))
}

/// An error with its causes: hyper's own messages ("http2 error") say little alone.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Whether an h2 failure means the server never processed the stream (RFC 9113 section 8.7:
/// REFUSED_STREAM, or above a graceful GOAWAY's last stream id).
fn never_processed(e: &hyper::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<h2::Error>() {
            return h.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h.is_go_away() && h.is_remote() && h.reason() == Some(h2::Reason::NO_ERROR));
        }
        src = s.source();
    }
    false
}

/// Drops connection `id` from the slot if it is closed, or (`going`) about to be.
async fn forget(slot: &AsyncMutex<Slot>, id: u64, going: bool) {
    let mut g = slot.lock().await;
    if matches!(&*g, Slot::H2(i, s) if *i == id && (going || s.is_closed())) {
        *g = Slot::Unknown;
    }
}

async fn read(origin: &Origin, resp: Response<hyper::body::Incoming>) -> Result<Reply, Failure> {
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| Failure::Transport(format!("{origin}: reading the answer: {}", chain(&*e))))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    /// HTTP/2 takes the absolute URI (`:scheme`, `:authority`); HTTP/1.1 the path and `Host`.
    fn build(&self, h2: bool) -> Request<Body> {
        let mut r = Request::new(Full::new(self.body.clone()));
        *r.method_mut() = self.method.clone();
        *r.headers_mut() = self.headers.clone();
        if h2 {
            *r.uri_mut() = self.uri.clone();
        } else {
            let pq = self.uri.path_and_query().map_or("/", |p| p.as_str());
            *r.uri_mut() = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
            if let Some(a) = self.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    r.headers_mut().insert(HOST, v);
                }
            }
        }
        r
    }
}

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_unspecified()
                || a.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut r = Reply {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(r.retry_after(), None);
        r.headers
            .insert("retry-after", HeaderValue::from_static("120"));
        assert_eq!(r.retry_after(), Some(Duration::from_secs(120)));
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(300));
        r.headers
            .insert("retry-after", HeaderValue::from_str(&at).unwrap());
        let d = r.retry_after().unwrap();
        assert!(
            d > Duration::from_secs(290) && d <= Duration::from_secs(300),
            "{d:?}"
        );
        r.headers
            .insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(r.retry_after(), None);
    }
}
