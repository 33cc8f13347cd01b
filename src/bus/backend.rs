//! Which Redis the bus talks to, and how: one server (`redis://`), a primary found through
//! Sentinel (`redis+sentinel://`), or a Redis Cluster (`redis+cluster://`), each also over TLS
//! (`rediss…`) and with ACL credentials in the URL.
//!
//! It exists so that the bus logic (`bus::Bus`) has one shape for all three: it asks for a
//! command connection (`Conn`), a classic pub/sub connection (one server, Sentinel), or the
//! cluster's push stream (sharded pub/sub). Everything about finding a server lives here; the
//! redis crate does the rest: `SentinelClient` asks the sentinels for the current primary on
//! every (re)connect, and the cluster client follows `MOVED`/`ASK`, refreshes its slot map
//! and resubscribes sharded channels after a reconnect or a resharding.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, PushInfo,
    RedisFuture, RedisResult, TlsCertificates, TlsMode, Value,
};
use std::time::Duration;
use tokio::sync::mpsc;

pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) enum Backend {
    Single(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster {
        client: ClusterClient,
        /// One connection for the node's whole life: it reconnects by itself and keeps the
        /// sharded subscriptions (they are tracked per connection).
        conn: tokio::sync::Mutex<Option<ClusterConnection>>,
        pushes: std::sync::Mutex<Option<mpsc::UnboundedReceiver<PushInfo>>>,
    },
}

/// A command connection: a multiplexed one to one server, or the cluster connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// `cluster.bus` split up: scheme flavour, TLS, credentials, hosts, and the path.
struct BusUrl<'a> {
    tls: bool,
    userinfo: Option<&'a str>,
    hosts: Vec<&'a str>,
    path: &'a str,
    fragment: &'a str,
}

fn split(url: &str, scheme_len: usize, tls: bool) -> Result<BusUrl<'_>, String> {
    let rest = &url[scheme_len..];
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err(format!("cluster.bus {url}: no host"));
    }
    Ok(BusUrl {
        tls,
        userinfo,
        hosts,
        path,
        fragment,
    })
}

impl BusUrl<'_> {
    /// A plain redis URL for one host, with this URL's TLS, credentials and `db`.
    fn node_url(&self, host: &str, db: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = self.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let db = if db.is_empty() {
            String::new()
        } else {
            format!("/{db}")
        };
        let frag = if self.fragment.is_empty() {
            String::new()
        } else {
            format!("#{}", self.fragment)
        };
        format!("{scheme}://{auth}{host}{db}{frag}")
    }
}

const CLUSTER_SCHEMES: [&str; 2] = ["redis+cluster://", "rediss+cluster://"];
const SENTINEL_SCHEMES: [&str; 2] = ["redis+sentinel://", "rediss+sentinel://"];

impl Backend {
    /// `tls_ca`: a PEM file of CAs to trust for TLS instead of the system's roots.
    pub fn open(url: &str, tls_ca: &str) -> Result<Backend, String> {
        let err = |e: redis::RedisError| format!("cluster.bus {url}: {e}");
        let certs = if tls_ca.is_empty() {
            None
        } else {
            let pem = std::fs::read(tls_ca).map_err(|e| format!("cluster.tls_ca {tls_ca}: {e}"))?;
            Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            })
        };
        if let Some(s) = CLUSTER_SCHEMES.iter().find(|s| url.starts_with(**s)) {
            let u = split(url, s.len(), s.starts_with("rediss"))?;
            let nodes: Vec<String> = u.hosts.iter().map(|h| u.node_url(h, "")).collect();
            let (tx, rx) = mpsc::unbounded_channel();
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes);
            if let Some(c) = certs {
                builder = builder.certs(c);
            }
            let client = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .connection_timeout(IO_TIMEOUT)
                .response_timeout(IO_TIMEOUT)
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .build()
                .map_err(err)?;
            return Ok(Backend::Cluster {
                client,
                conn: Default::default(),
                pushes: std::sync::Mutex::new(Some(rx)),
            });
        }
        if let Some(s) = SENTINEL_SCHEMES.iter().find(|s| url.starts_with(**s)) {
            let u = split(url, s.len(), s.starts_with("rediss"))?;
            return Ok(Backend::Sentinel(tokio::sync::Mutex::new(
                sentinel(&u, certs).map_err(|e| format!("cluster.bus {url}: {e}"))?,
            )));
        }
        let client = match certs {
            Some(c) => redis::Client::build_with_tls(url, c),
            None => redis::Client::open(url),
        };
        Ok(Backend::Single(client.map_err(err)?))
    }

    /// Sharded pub/sub (SPUBLISH/SSUBSCRIBE, one slot per pipeline) instead of the classic one.
    pub fn sharded(&self) -> bool {
        matches!(self, Backend::Cluster { .. })
    }

    /// The single server to talk to now (for Sentinel, the current primary).
    async fn server(&self) -> RedisResult<redis::Client> {
        match self {
            Backend::Single(c) => Ok(c.clone()),
            Backend::Sentinel(s) => s.lock().await.async_get_client().await,
            Backend::Cluster { .. } => unreachable!("no single server in a Redis Cluster"),
        }
    }

    pub async fn connect(&self) -> RedisResult<Conn> {
        if let Backend::Cluster { client, conn, .. } = self {
            let mut g = conn.lock().await;
            if let Some(c) = g.as_ref() {
                return Ok(Conn::Cluster(c.clone()));
            }
            let c = client.get_async_connection().await?;
            *g = Some(c.clone());
            return Ok(Conn::Cluster(c));
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let c = self
            .server()
            .await?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        Ok(Conn::Single(c))
    }

    /// A classic pub/sub connection (one server or Sentinel's primary).
    pub async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        self.server().await?.get_async_pubsub().await
    }

    /// The cluster connection's push stream (sharded messages, disconnections); once.
    pub fn take_pushes(&self) -> Option<mpsc::UnboundedReceiver<PushInfo>> {
        match self {
            Backend::Cluster { pushes, .. } => pushes.lock().unwrap().take(),
            _ => None,
        }
    }
}

/// A Sentinel client from a `redis+sentinel://[user:password@]s1:port,s2:port/name[/db]` URL:
/// credentials, db and TLS are the primary's; the sentinels get TLS (and `certs`) if the
/// primary does, and no credentials.
fn sentinel(u: &BusUrl<'_>, certs: Option<TlsCertificates>) -> redis::RedisResult<SentinelClient> {
    let bad = |what: &str| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "bad sentinel URL",
            what.to_string(),
        ))
    };
    let (name, db) = u.path.split_once('/').unwrap_or((u.path, ""));
    if name.is_empty() {
        return Err(bad("the primary's name is missing"));
    }
    let mut addrs = Vec::new();
    for h in &u.hosts {
        let (host, port) = h.rsplit_once(':').unwrap_or((h, "26379"));
        let port: u16 = port.parse().map_err(|_| bad(h))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        addrs.push(if u.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        });
    }
    // The primary's settings, parsed the way a plain URL is (percent-decoding included).
    let primary = u
        .node_url("placeholder:6379", db)
        .as_str()
        .into_connection_info()?;
    let settings = primary.redis_settings();
    let mut b = SentinelClientBuilder::new(addrs, name, SentinelServerType::Master)?
        .set_client_to_redis_db(settings.db());
    if let Some(user) = settings.username() {
        b = b.set_client_to_redis_username(user);
    }
    if let Some(pw) = settings.password() {
        b = b.set_client_to_redis_password(pw);
    }
    if u.tls {
        b = b
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(c) = certs {
            b = b
                .set_client_to_redis_certificates(c.clone())
                .set_client_to_sentinel_certificates(c);
        }
    }
    b.build()
}

/// The Redis Cluster slot of a key or channel (CRC16/XMODEM of its hash tag, mod 16384), as
/// the server computes it: used to group a pipeline by slot and to place channels.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|b| *b == b'}')
                .filter(|close| *close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for b in tagged {
        crc ^= (*b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"parley:all:0"), 10791);
        // An empty tag is no tag: the whole key counts.
        assert_eq!(slot(b"{}a"), 10875);
        assert_eq!(slot(b"{a}x"), 15495);
    }

    #[test]
    fn urls_parse() {
        assert!(Backend::open("redis://127.0.0.1:6379/0", "").is_ok());
        assert!(
            Backend::open("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001", "")
                .unwrap()
                .sharded()
        );
        assert!(matches!(
            Backend::open(
                "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
                ""
            ),
            Ok(Backend::Sentinel(_))
        ));
        assert!(Backend::open("redis+sentinel://127.0.0.1:26379/", "").is_err());
        for s in crate::config::BUS_SCHEMES {
            assert!(
                Backend::open(&format!("{s}127.0.0.1:1/0"), "").is_ok(),
                "{s}"
            );
        }
    }
}
