//! The test-app builder: starts the real `parley` binary (one node or a cluster) on a
//! loopback port of its own with a temporary data directory, waits until `/readyz` says it is
//! ready, and stops, kills and restarts it. `api` talks to it over real sockets.

use super::redis::Redis;
use super::redis_cluster::{RedisCluster, Sentinels};
use super::{get_json, readyz, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Config every test server gets: cheap password hashing, short grace period, no limit on
/// logins per address (every test client is 127.0.0.1; `accounts_limits` tests the limit).
const BASE_CONFIG: &str = r#"
shutdown_grace_secs = 2
workers = 2
[auth]
argon2_memory_kib = 64
argon2_iterations = 1
[limits]
ip_auth_per_min = 1000000
ip_auth_burst = 1000000
"#;

pub struct TestServer {
    child: Option<Child>,
    pub addr: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: String,
    /// The other nodes of a cluster (this one is node 0); they share `dir` and `redis`.
    pub peers: Vec<TestServer>,
    pub redis: Option<Redis>,
    /// The Redis Cluster or Sentinel set instead of `redis` (`BusKind`).
    pub redis_cluster: Option<RedisCluster>,
    pub sentinels: Option<Sentinels>,
    /// Round-robin over the nodes for `ws` and `http`, so that a cluster's clients spread.
    rr: std::sync::atomic::AtomicUsize,
    pub log_name: String,
    /// Where the node keeps its data, if not `dir`.
    data_dir: Option<PathBuf>,
    nofile: Option<u64>,
}

pub struct Builder {
    extra: String,
    nodes: Option<usize>,
    bus: Option<BusKind>,
    data_dir: Option<PathBuf>,
    nofile: Option<u64>,
}

/// Nodes per test server: `PARLEY_TEST_NODES` (default 1). `scripts/test` reruns the contract
/// suite with 3, so that the whole client contract is also checked against a cluster.
pub fn default_nodes() -> usize {
    std::env::var("PARLEY_TEST_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// What a cluster of test nodes runs its bus on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// One `redis-server`.
    Redis,
    /// A Redis Cluster of 3 primaries with a replica each (sharded pub/sub).
    Cluster,
    /// A primary and a replica behind 3 sentinels.
    Sentinel,
}

/// The bus of test clusters: `PARLEY_TEST_BUS` (`cluster`, `sentinel`; default one Redis).
/// `scripts/test` reruns the contract suite on 3 nodes over a Redis Cluster with it.
pub fn default_bus() -> BusKind {
    match std::env::var("PARLEY_TEST_BUS").as_deref() {
        Ok("cluster") => BusKind::Cluster,
        Ok("sentinel") => BusKind::Sentinel,
        _ => BusKind::Redis,
    }
}

/// Cluster settings for tests: fast heartbeats so that deaths are noticed in about a second.
pub fn cluster_config(redis: &Redis) -> String {
    bus_config(&redis.url())
}

/// The same settings over any bus URL.
pub fn bus_config(url: &str) -> String {
    format!(
        "[cluster]\nbus = \"{url}\"\nheartbeat_ms = 200\nnode_ttl_ms = 1200\nforward_timeout_ms = 3000\n"
    )
}

impl Builder {
    /// Adds TOML to the server's config file.
    pub fn config(mut self, toml: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(toml);
        self
    }
    /// A cluster of `n` nodes on one Redis and one data directory.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = Some(n);
        self
    }
    /// The bus of a cluster (default: `default_bus`).
    pub fn bus(mut self, kind: BusKind) -> Self {
        self.bus = Some(kind);
        self
    }
    /// Keeps the node's data in `dir` (logs and config stay in the temporary directory).
    pub fn data_dir(mut self, dir: PathBuf) -> Self {
        self.data_dir = Some(dir);
        self
    }
    /// Runs the node with this open-file limit (soft and hard).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    pub fn start(self) -> TestServer {
        let n = self.nodes.unwrap_or_else(default_nodes);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let kind = self.bus.unwrap_or_else(default_bus);
        let (mut redis, mut redis_cluster, mut sentinels) = (None, None, None);
        let url = match kind {
            _ if n < 2 => None,
            BusKind::Redis => Some(redis.insert(Redis::start()).url()),
            BusKind::Cluster => Some(redis_cluster.insert(RedisCluster::start(3, 1)).url()),
            BusKind::Sentinel => Some(sentinels.insert(Sentinels::start()).url()),
        };
        let extra = match url {
            Some(u) => format!("{}\n{}", bus_config(&u), self.extra),
            None => self.extra,
        };
        let mut s = TestServer::new_node(dir, extra, 0);
        s.data_dir = self.data_dir;
        s.nofile = self.nofile;
        if std::env::var_os("PARLEY_TEST_KEEP").is_some() {
            // Debugging: keep the data directory and server logs.
            eprintln!("test data kept in {}", tmp.keep().display());
        } else {
            s._tmp = Some(tmp);
        }
        s.redis = redis;
        s.redis_cluster = redis_cluster;
        s.sentinels = sentinels;
        s.spawn();
        for i in 1..n {
            let mut p = TestServer::new_node(s.dir.clone(), s.extra.clone(), i);
            p.spawn();
            s.peers.push(p);
        }
        if n > 1 {
            s.wait_for_cluster(n);
        }
        s
    }
}

impl TestServer {
    pub fn builder() -> Builder {
        Builder {
            extra: String::new(),
            nodes: None,
            bus: None,
            data_dir: None,
            nofile: None,
        }
    }

    fn new_node(dir: PathBuf, extra: String, i: usize) -> TestServer {
        TestServer {
            child: None,
            addr: String::new(),
            dir,
            _tmp: None,
            extra,
            peers: Vec::new(),
            redis: None,
            redis_cluster: None,
            sentinels: None,
            rr: Default::default(),
            data_dir: None,
            nofile: None,
            log_name: if i == 0 {
                "server.log".into()
            } else {
                format!("server-{i}.log")
            },
        }
    }

    /// A handle on a node this harness did not start, for its HTTP and WebSocket helpers.
    pub fn external(addr: &str) -> TestServer {
        let mut s = TestServer::new_node(PathBuf::new(), String::new(), 0);
        s.addr = addr.to_string();
        s
    }

    /// Starts one more node of an existing cluster (same data directory, same config).
    pub fn join(dir: PathBuf, extra: String, i: usize) -> TestServer {
        let mut s = TestServer::new_node(dir, extra, i);
        s.spawn();
        s
    }

    pub fn extra_config(&self) -> String {
        self.extra.clone()
    }

    /// Running: started, and not killed from outside (a killed child stays a zombie until
    /// reaped, so /proc says 'Z').
    pub fn is_running(&self) -> bool {
        let Some(c) = &self.child else { return false };
        match std::fs::read_to_string(format!("/proc/{}/stat", c.id())) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Node `i` of a cluster (0 is this one).
    pub fn node(&self, i: usize) -> &TestServer {
        if i == 0 {
            self
        } else {
            &self.peers[i - 1]
        }
    }

    pub fn node_mut(&mut self, i: usize) -> &mut TestServer {
        if i == 0 {
            self
        } else {
            &mut self.peers[i - 1]
        }
    }

    pub fn node_count(&self) -> usize {
        1 + self.peers.len()
    }

    /// The next node's address, round-robin over the nodes that are running.
    pub fn pick(&self) -> String {
        let n = self.node_count();
        for _ in 0..n {
            let i = self.rr.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
            if self.node(i).is_running() {
                return self.node(i).addr.clone();
            }
        }
        self.addr.clone()
    }

    /// Blocks until every running node sees `n` live nodes (GET /healthz).
    pub fn wait_for_cluster(&self, n: usize) {
        let settled = wait_until(Duration::from_secs(20), || {
            (0..self.node_count())
                .map(|i| self.node(i))
                .filter(|node| node.child.is_some())
                .all(|node| {
                    let v = get_json(&format!("http://{}/healthz", node.addr));
                    v["live"].as_array().map(|a| a.len()) == Some(n) && v["bus"] == "up"
                })
        });
        assert!(
            settled,
            "the cluster did not settle on {n} nodes; log:\n{}",
            self.log()
        );
    }

    pub fn start() -> TestServer {
        Self::builder().start()
    }

    /// Starts the process and waits for `/readyz`. A node with no address yet listens on
    /// port 0 and says which port it got: a "free" port picked beforehand could be taken by
    /// another test's server meanwhile, whose `/readyz` would then answer for this one.
    fn spawn(&mut self) {
        let cfg_path = self.dir.join(format!("{}.toml", self.log_name));
        std::fs::write(&cfg_path, merged_config(&self.extra)).unwrap();
        let fixed = !self.addr.is_empty();
        let listen = if fixed {
            self.addr.clone()
        } else {
            "127.0.0.1:0".into()
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(&self.log_name))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley"));
        cmd.args(["serve", "--listen", &listen, "--data-dir"])
            .arg(self.data_dir.as_ref().unwrap_or(&self.dir))
            .arg("--config")
            .arg(&cfg_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(n) = self.nofile {
            limit_nofile(&mut cmd, n);
        }
        let mut child = cmd.spawn().expect("spawn parley");
        // Also for a fixed address: a node that failed to bind announces nothing, and another
        // process's `/readyz` on that port does not answer for it.
        let addr = announced_addr(&mut child);
        let ready = addr.as_deref().is_some_and(|a| {
            wait_until(Duration::from_secs(30), || {
                matches!(child.try_wait(), Ok(Some(_))) || readyz(a) == 200
            }) && readyz(a) == 200
        });
        if ready {
            self.addr = addr.unwrap();
            self.child = Some(child);
            return;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not become ready; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(&self.log_name)).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// kill -9: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let mut status = None;
        wait_until(Duration::from_secs(10), || {
            status = c.try_wait().unwrap();
            status.is_some()
        });
        match status {
            Some(s) => s.success(),
            None => {
                c.kill().ok();
                panic!("server did not exit after SIGTERM");
            }
        }
    }

    /// Starts again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        wait_until(Duration::from_secs(5), || {
            std::net::TcpListener::bind(&self.addr).is_ok()
        });
        self.spawn();
    }
}

/// Starts the command with RLIMIT_NOFILE at `n` (soft and hard).
fn limit_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// BASE_CONFIG with a test's own TOML merged over it, table by table.
fn merged_config(extra: &str) -> String {
    let mut base: toml::Table = BASE_CONFIG.parse().unwrap();
    let over: toml::Table = extra.parse().expect("test config is TOML");
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => b.extend(o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
    toml::to_string(&base).unwrap()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- server log (last lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The address a starting node prints on stdout (`listening on ADDR`), or None if it exits
/// (or stays silent for 30 s) first. The rest of its stdout is drained until it exits.
fn announced_addr(child: &mut Child) -> Option<String> {
    use std::io::BufRead;
    let out = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).ok()
}
