//! Blobs as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, Garage, R2...), so every
//! node of a cluster across hosts reads what any node stored. Object key: `<prefix><sha256>`.
//!
//! Requests are signed by `rusty-s3` (a sans-IO SigV4 signer: it only builds presigned URLs,
//! so the bytes never pass through a client library we do not control) and sent by hyper 1
//! over tokio-rustls, the stack the push providers already use: a PUT streams the staged
//! file with its Content-Length (UNSIGNED-PAYLOAD, so nothing is read twice), a GET streams
//! the object (or a `Range` of it) straight to the client. One connection per request: object
//! requests are large and few next to the messages; no pool to keep healthy.

use super::{Backend, ByteStream};
use crate::config::BlobsConfig;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a signature is good for: only as long as the request takes to start.
const SIGNED_FOR: Duration = Duration::from_secs(300);

type Body = UnsyncBoxBody<Bytes, io::Error>;

pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

/// A config value, or the first environment variable of `vars` that is set.
fn value_or_env(v: &str, vars: &[&str]) -> String {
    if !v.is_empty() {
        return v.to_string();
    }
    vars.iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_default()
}

impl S3 {
    pub fn new(cfg: &BlobsConfig) -> Result<S3, String> {
        let endpoint: url::Url = cfg
            .endpoint
            .parse()
            .map_err(|e| format!("blobs.endpoint {:?}: {e}", cfg.endpoint))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let tls = match endpoint.scheme() {
            "https" => {
                let roots = crate::push::http::roots(&cfg.extra_ca_file)?;
                Some(crate::push::http::tls(roots, &[b"http/1.1"])?)
            }
            _ => None,
        };
        let bucket =
            Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone()).map_err(|e| {
                format!(
                    "blobs: bucket {:?} at {:?}: {e:?}",
                    cfg.bucket, cfg.endpoint
                )
            })?;
        let key = value_or_env(
            &cfg.access_key,
            &["PARLEY_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"],
        );
        let secret = value_or_env(
            &cfg.secret_key,
            &["PARLEY_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"],
        );
        if key.is_empty() || secret.is_empty() {
            return Err("blobs: the s3 backend needs access_key and secret_key (or PARLEY_S3_ACCESS_KEY and PARLEY_S3_SECRET_KEY)".into());
        }
        Ok(S3 {
            bucket,
            credentials: Credentials::new(key, secret),
            prefix: cfg.prefix.clone(),
            tls,
            timeout: Duration::from_millis(cfg.request_timeout_ms),
        })
    }

    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Sends one request on a new connection; the answer's body streams as it arrives.
    async fn send(&self, req: Request<Body>) -> io::Result<Response<hyper::body::Incoming>> {
        let uri = req.uri().clone();
        let host = uri
            .host()
            .ok_or_else(|| io::Error::other("no host"))?
            .to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let go = async {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            match &self.tls {
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(io::Error::other)?;
                    let stream = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await?;
                    exchange(TokioIo::new(stream), req).await
                }
                None => exchange(TokioIo::new(tcp), req).await,
            }
        };
        tokio::time::timeout(self.timeout, go)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "S3 request timed out"))?
    }
}

async fn exchange<T>(
    io: TokioIo<T>,
    req: Request<Body>,
) -> io::Result<Response<hyper::body::Incoming>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(io::Error::other)
}

fn request(method: &str, url: url::Url, body: Body) -> io::Result<Request<Body>> {
    let uri: hyper::Uri = url.as_str().parse().map_err(io::Error::other)?;
    let host = match (uri.host(), uri.port_u16()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return Err(io::Error::other("no host")),
    };
    Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, host)
        .body(body)
        .map_err(io::Error::other)
}

/// The first `len` bytes of `body`: a server that ignored the Range sends more, which is
/// cut; one that sends fewer is an error, never a short answer under a longer Content-Length.
fn exactly(body: ByteStream, len: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (body, len),
        |(mut body, left)| async move {
            if left == 0 {
                return None;
            }
            match body.next().await {
                Some(Ok(mut b)) => {
                    b.truncate(b.len().min(left as usize));
                    let n = b.len() as u64;
                    Some((Ok(b), (body, left - n)))
                }
                Some(Err(e)) => Some((Err(e), (body, 0))),
                None => Some((
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "S3 get: short body",
                    )),
                    (body, 0),
                )),
            }
        },
    ))
}

fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

fn failed(what: &str, status: StatusCode) -> io::Error {
    io::Error::other(format!("S3 {what}: HTTP {status}"))
}

#[async_trait::async_trait]
impl Backend for S3 {
    async fn put(&self, key: &str, staged: &Path, size: u64) -> io::Result<()> {
        let object = self.object(key);
        let url = rusty_s3::actions::PutObject::new(&self.bucket, Some(&self.credentials), &object)
            .sign(SIGNED_FOR);
        let file = tokio::fs::File::open(staged).await?;
        let frames = super::file_stream(file, size).map_ok(Frame::data);
        let mut req = request("PUT", url, BodyExt::boxed_unsync(StreamBody::new(frames)))?;
        req.headers_mut()
            .insert(hyper::header::CONTENT_LENGTH, size.into());
        let resp = self.send(req).await?;
        let status = resp.status();
        // Read the (small) answer so the connection ends cleanly.
        let _ = resp.into_body().collect().await;
        match status.is_success() {
            true => Ok(()),
            false => Err(failed("put", status)),
        }
    }

    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        let object = self.object(key);
        let url =
            rusty_s3::actions::HeadObject::new(&self.bucket, Some(&self.credentials), &object)
                .sign(SIGNED_FOR);
        let resp = self.send(request("HEAD", url, empty())?).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| io::Error::other("S3 head: no Content-Length")),
            s => Err(failed("head", s)),
        }
    }

    async fn read(&self, key: &str, start: u64, end: u64) -> io::Result<ByteStream> {
        if end <= start {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let object = self.object(key);
        let url = rusty_s3::actions::GetObject::new(&self.bucket, Some(&self.credentials), &object)
            .sign(SIGNED_FOR);
        let mut req = request("GET", url, empty())?;
        let range = format!("bytes={start}-{}", end - 1);
        req.headers_mut().insert(
            hyper::header::RANGE,
            range.parse().map_err(io::Error::other)?,
        );
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT | StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(io::ErrorKind::NotFound.into()),
            s => return Err(failed("get", s)),
        }
        if resp.status() == StatusCode::OK && start > 0 {
            // A whole object where a part was asked: skipping to `start` is not worth it.
            return Err(io::Error::other("S3 get: the server ignored Range"));
        }
        let body = Box::pin(
            resp.into_body()
                .into_data_stream()
                .map_err(io::Error::other),
        );
        Ok(exactly(body, end - start))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let object = self.object(key);
        let url =
            rusty_s3::actions::DeleteObject::new(&self.bucket, Some(&self.credentials), &object)
                .sign(SIGNED_FOR);
        let resp = self.send(request("DELETE", url, empty())?).await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(failed("delete", s)),
        }
    }
}
