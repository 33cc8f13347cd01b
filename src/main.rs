//! The `parley` command line: `parley serve` runs a node; `parley config` prints the defaults.
//!
//! Nothing here (or anywhere in the server) prints with `println!`/`eprintln!`, which panic
//! when the other end of stdout or stderr is gone: `say` and `fail` write and ignore errors,
//! and logs go through a lossy background writer (`init_logging`).

use clap::{Parser, Subcommand};
use parley::config::Config;
use std::path::PathBuf;

/// Frames, envelopes and rows are allocated on one thread and freed on another (a worker and
/// the SQLite writer): mimalloc's per-thread heaps and delayed frees take that without the
/// lock and consolidation work glibc spends on it (see load-tests/README).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "parley", version, about = "Parley messaging server")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node.
    Serve {
        /// Address to listen on (overrides the config file).
        #[arg(long, env = "PARLEY_LISTEN")]
        listen: Option<String>,
        /// Data directory: SQLite database, signing secret, files (overrides the config file).
        #[arg(long, env = "PARLEY_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A TOML file merged over the defaults (see `parley config`).
        #[arg(long, env = "PARLEY_CONFIG")]
        config: Option<PathBuf>,
        /// Join a cluster over this Redis: redis://host:6379/0, rediss://…, a Redis Cluster
        /// (redis+cluster://h1:7000,h2:7001) or Sentinel (redis+sentinel://s1:26379/mymaster);
        /// overrides `cluster.bus`.
        #[arg(long, env = "PARLEY_BUS")]
        bus: Option<String>,
        /// The store: scylla://host1:9042,host2:9042/keyspace (default: SQLite in the data
        /// directory); overrides `storage.url`.
        #[arg(long, env = "PARLEY_STORE")]
        store: Option<String>,
        /// Log JSON lines instead of human-readable text.
        #[arg(long)]
        log_json: bool,
    },
    /// Run a push bridge: deliver the store's push jobs to FCM, APNs, Web Push and webhooks
    /// (any number of bridges may run; see [push] in `parley config`).
    Push {
        /// Data directory of the SQLite store (overrides the config file).
        #[arg(long, env = "PARLEY_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A TOML file merged over the defaults.
        #[arg(long, env = "PARLEY_CONFIG")]
        config: Option<PathBuf>,
        /// The store, as for `serve` (default: SQLite in the data directory).
        #[arg(long, env = "PARLEY_STORE")]
        store: Option<String>,
        /// The cluster's Redis, to tell users' devices when a target dies.
        #[arg(long, env = "PARLEY_BUS")]
        bus: Option<String>,
        /// Address of /healthz, /readyz and /metrics (overrides push.listen).
        #[arg(long, env = "PARLEY_PUSH_LISTEN")]
        listen: Option<String>,
        /// Log JSON lines instead of human-readable text.
        #[arg(long)]
        log_json: bool,
    },
    /// Print the default configuration, with every option documented.
    Config,
    /// Apply the storage schema (schema/) idempotently: to the data directory's SQLite
    /// database, or with --store to a ScyllaDB keyspace (created if missing).
    Migrate {
        /// Data directory (overrides the config file).
        #[arg(long, env = "PARLEY_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// scylla://host:9042,.../keyspace (overrides `storage.url`).
        #[arg(long, env = "PARLEY_STORE")]
        store: Option<String>,
        /// Replication factor for a keyspace this creates (overrides `storage.scylla_replication`).
        #[arg(long, env = "PARLEY_SCYLLA_REPLICATION")]
        replication: Option<u32>,
        /// A TOML file merged over the defaults.
        #[arg(long, env = "PARLEY_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Config) => say(parley::config::DEFAULT_CONFIG),
        Some(Cmd::Migrate {
            data_dir,
            config,
            store,
            replication,
        }) => migrate(data_dir, config, store, replication),
        Some(Cmd::Push {
            data_dir,
            config,
            store,
            bus,
            listen,
            log_json,
        }) => {
            let mut cfg = load_config(config.as_ref());
            override_config(&mut cfg, None, data_dir, bus, store);
            if let Some(l) = listen {
                cfg.push.listen = l;
            }
            run_logged(cfg, log_json, parley::server::bridge::run);
        }
        Some(Cmd::Serve {
            listen,
            data_dir,
            config,
            bus,
            store,
            log_json,
        }) => {
            let mut cfg = load_config(config.as_ref());
            override_config(&mut cfg, listen, data_dir, bus, store);
            run_logged(cfg, log_json, parley::server::run);
        }
        None => run_logged(load_config(None), false, parley::server::run),
    }
}

/// Command-line flags over the config file.
fn override_config(
    cfg: &mut parley::config::Config,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    bus: Option<String>,
    store: Option<String>,
) {
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(b) = bus {
        cfg.cluster.bus = b;
    }
    if let Some(s) = store {
        cfg.storage.url = s;
    }
}

/// Runs a server (`serve` or `push`) with logging set up, and writes out the queued log lines
/// at the end (unless the log pipe is gone: then they are dropped).
fn run_logged<F, Fut, E>(cfg: parley::config::Config, log_json: bool, run: F)
where
    F: FnOnce(parley::config::Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let logs = init_logging(log_json || cfg.log.format == "json");
    let result = actix_web::rt::System::new().block_on(run(cfg));
    drop(logs);
    if let Err(e) = result {
        fail(&e.to_string());
    }
}

fn migrate(
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    store: Option<String>,
    replication: Option<u32>,
) {
    let cfg = load_config(config.as_ref());
    let url = store.unwrap_or(cfg.storage.url.clone());
    if !url.is_empty() {
        return migrate_scylla(&url, replication.unwrap_or(cfg.storage.scylla_replication));
    }
    let dir = data_dir.unwrap_or(cfg.data_dir);
    match parley::storage::sqlite::migrate_dir(&dir) {
        Ok((before, after)) => say(&format!(
            "sqlite schema at version {after} (was {before}) in {}\n",
            dir.display()
        )),
        Err(e) => fail(&e),
    }
}

#[cfg(feature = "scylla")]
fn migrate_scylla(url: &str, replication: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(parley::storage::scylla::migrate(url, replication)) {
        Ok((before, after)) => say(&format!(
            "scylla schema at version {after} (was {before}) in {url}\n"
        )),
        Err(e) => fail(&e),
    }
}

#[cfg(not(feature = "scylla"))]
fn migrate_scylla(_: &str, _: u32) {
    fail("this binary was built without the scylla feature");
}

fn load_config(path: Option<&PathBuf>) -> Config {
    let text = match path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => fail(&format!("config {}: {e}", p.display())),
        },
        None => None,
    };
    Config::load(text.as_deref()).unwrap_or_else(|e| fail(&e))
}

/// Logs to stderr through a bounded queue and a writer thread: when the queue is full (a
/// stalled log reader) lines are dropped, and write errors (a closed pipe) are ignored, so
/// logging never blocks a server thread or stops a shutdown.
fn init_logging(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .log_internal_errors(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Writes to stdout; a closed stdout is not an error worth dying for.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn fail(msg: &str) -> ! {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "parley: {msg}");
    std::process::exit(1);
}
