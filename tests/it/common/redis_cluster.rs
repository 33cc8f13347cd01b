//! Redis beyond one server, from real `redis-server` processes: a Redis Cluster (3 primaries,
//! each with a replica) made by `redis-cli --cluster create`, and a Sentinel set (a primary, a
//! replica and 3 sentinels, `redis-server --sentinel`). Everything on free loopback ports;
//! killed on drop.

use super::redis::Redis;
use super::{free_port, wait_until};
use std::process::Command;
use std::time::Duration;

pub struct RedisCluster {
    /// Primaries first (as created), then their replicas.
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// `masters` primaries with `replicas` replicas each; fast failure detection (1 s).
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        Self::start_custom(masters, replicas, &|_| Vec::new(), &[])
    }

    /// The same with more `redis-server` arguments for the node on a port, and more
    /// `redis-cli` arguments (TLS, credentials).
    pub fn start_custom(
        masters: usize,
        replicas: usize,
        server_args: &dyn Fn(u16) -> Vec<String>,
        cli_args: &[String],
    ) -> RedisCluster {
        // `--cluster create` now and then finds a node gone or not yet answering on a loaded
        // machine (CI saw it fail with nothing on stdout): a fresh set on fresh ports is tried
        // before the test gives up, and the last failure says what redis-cli said.
        let mut last = String::new();
        for attempt in 1..=3 {
            match Self::try_start(masters, replicas, server_args, cli_args) {
                Ok(c) => return c,
                Err(e) => {
                    eprintln!("Redis Cluster attempt {attempt} failed: {e}");
                    last = e;
                }
            }
        }
        panic!("the Redis Cluster did not start: {last}");
    }

    fn try_start(
        masters: usize,
        replicas: usize,
        server_args: &dyn Fn(u16) -> Vec<String>,
        cli_args: &[String],
    ) -> Result<RedisCluster, String> {
        let nodes: Vec<Redis> = (0..masters * (1 + replicas))
            .map(|_| {
                let port = free_port();
                let mut r = Redis::start_on(
                    port,
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        // A replica takes over however long ago it last heard its primary
                        // (the test's are seconds old; the default refuses young replicas).
                        "--cluster-replica-validity-factor",
                        "0",
                        "--cluster-port",
                        &free_port().to_string(),
                    ]
                    .map(String::from)
                    .into_iter()
                    .chain(server_args(port))
                    .collect(),
                );
                r.cli_args = cli_args.to_vec();
                r
            })
            .collect();
        let answering = wait_until(Duration::from_secs(5), || {
            nodes.iter().all(|n| n.cli(&["ping"]).contains("PONG"))
        });
        if !answering {
            return Err("a node does not answer PING".into());
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(cli_args)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let c = RedisCluster { nodes };
        let total = c.nodes.len().to_string();
        let settled = wait_until(Duration::from_secs(30), || {
            c.nodes.iter().all(|n| {
                let info = n.cli(&["cluster", "info"]);
                let repl = n.cli(&["info", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{total}"))
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            })
        });
        if !settled {
            return Err("the Redis Cluster did not settle".into());
        }
        Ok(c)
    }

    /// The bus URL: every primary as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The node serving `slot` as primary now (asked of any running node).
    pub fn primary_of(&self, slot: u16) -> usize {
        let asker = self.nodes.iter().find(|n| n.is_running()).expect("a node");
        let nodes = asker.cli(&["cluster", "nodes"]);
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1].split([':', '@']).nth(1).unwrap().parse().unwrap();
            let owns = f[8..].iter().any(|r| match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).contains(&slot),
                None => r.parse::<u16>().ok() == Some(slot),
            });
            if owns {
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("no primary for slot {slot}:\n{nodes}");
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap()
    }
}

/// A primary, its replica, and 3 sentinels watching it as `mymaster` (quorum 2, down after
/// 1 s).
pub struct Sentinels {
    pub primary: Redis,
    pub replica: Redis,
    pub sentinels: Vec<Redis>,
    _conf: tempfile::TempDir,
}

/// How to start a Sentinel set's processes beyond the defaults (TLS, ACLs).
#[derive(Default)]
pub struct SentinelsWith<'a> {
    /// More arguments for the primary and the replica, by port.
    pub server_args: Option<&'a dyn Fn(u16) -> Vec<String>>,
    /// More arguments for the replica only.
    pub replica_args: Vec<String>,
    /// More arguments for the sentinels, by port.
    pub sentinel_args: Option<&'a dyn Fn(u16) -> Vec<String>>,
    /// More lines of each sentinel's config file.
    pub sentinel_conf: String,
    /// `redis-cli` arguments for the servers and for the sentinels.
    pub server_cli: Vec<String>,
    pub sentinel_cli: Vec<String>,
}

impl Sentinels {
    pub fn start() -> Sentinels {
        Self::start_custom(SentinelsWith::default())
    }

    pub fn start_custom(w: SentinelsWith<'_>) -> Sentinels {
        let server_args = |port: u16| w.server_args.map(|f| f(port)).unwrap_or_default();
        let port = free_port();
        let mut primary = Redis::start_on(port, server_args(port));
        primary.cli_args = w.server_cli.clone();
        let port = free_port();
        let mut replica = Redis::start_on(
            port,
            ["--replicaof", "127.0.0.1", &primary.port.to_string()]
                .map(String::from)
                .into_iter()
                .chain(server_args(port))
                .chain(w.replica_args.iter().cloned())
                .collect(),
        );
        replica.cli_args = w.server_cli.clone();
        let conf = tempfile::tempdir().unwrap();
        let sentinels = (0..3)
            .map(|i| {
                let path = conf.path().join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &path,
                    format!(
                        "sentinel monitor mymaster 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds mymaster 1000\n\
                         sentinel failover-timeout mymaster 5000\n\
                         sentinel parallel-syncs mymaster 1\n{}",
                        primary.port, w.sentinel_conf
                    ),
                )
                .unwrap();
                let port = free_port();
                let extra = w.sentinel_args.map(|f| f(port)).unwrap_or_default();
                let mut x = Redis::start_on(
                    port,
                    [path.display().to_string(), "--sentinel".into()]
                        .into_iter()
                        .chain(extra)
                        .collect(),
                );
                x.cli_args = w.sentinel_cli.clone();
                x
            })
            .collect();
        let s = Sentinels {
            primary,
            replica,
            sentinels,
            _conf: conf,
        };
        let synced = wait_until(Duration::from_secs(20), || {
            s.replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
                && s.sentinels.iter().all(|x| {
                    x.cli(&["sentinel", "replicas", "mymaster"])
                        .contains(&s.replica.port.to_string())
                        && x.cli(&["sentinel", "sentinels", "mymaster"])
                            .matches("127.0.0.1")
                            .count()
                            >= 2
                })
        });
        assert!(synced, "replica and sentinels did not settle");
        s
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|x| format!("127.0.0.1:{}", x.port))
            .collect();
        format!("redis+sentinel://{}/mymaster", hosts.join(","))
    }

    /// The port of the primary the sentinels name now.
    pub fn current_primary(&self) -> u16 {
        let out = self.sentinels[0].cli(&["sentinel", "get-master-addr-by-name", "mymaster"]);
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }
}
