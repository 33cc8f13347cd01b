//! Start-up and shutdown: builds the `Core`, runs the HTTP server, and shuts down in the
//! house order: stop accepting, close sessions with 1012, drain with a deadline, flush the
//! store's queued writes, close the store.

use crate::actors::{Core, Hub, Peers, SingleNode, ToSession};
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::sqlite::SqliteStore;
use crate::storage::Store;
use actix_web::{web, App, HttpServer};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The HS256 secret: from config or `PARLEY_JWT_SECRET`, else `<data_dir>/secret`, created with
/// 32 random bytes on first start.
fn load_secret(cfg: &Config) -> Result<Vec<u8>, String> {
    if !cfg.auth.jwt_secret.is_empty() {
        return Ok(cfg.auth.jwt_secret.as_bytes().to_vec());
    }
    if let Ok(s) = std::env::var("PARLEY_JWT_SECRET") {
        if !s.is_empty() {
            return Ok(s.into_bytes());
        }
    }
    let path = cfg.data_dir.join("secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().as_bytes().to_vec()),
        _ => {
            let bytes: [u8; 32] = rand::random();
            let s = hex::encode(bytes);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(s.as_bytes()).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            Ok(s.into_bytes())
        }
    }
}

/// Takes the data directory: exclusively for a lone node, shared for the nodes of a cluster.
/// SQLite itself is safe across processes (WAL), but two nodes without a common bus would both
/// think they own every conversation, and their cached seq counters would collide: refuse.
fn lock_data_dir(cfg: &Config) -> Result<std::fs::File, String> {
    let path = cfg.data_dir.join("parley.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let clustered = !cfg.cluster.bus.is_empty();
    let res = if clustered {
        f.try_lock_shared()
    } else {
        f.try_lock()
    };
    match res {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "the data directory {} is in use by another Parley node{}; nodes may share one \
             database only as a cluster: start every one of them with the same --bus \
             redis://... (or give this node its own --data-dir)",
            cfg.data_dir.display(),
            if clustered {
                " that runs without a cluster bus"
            } else {
                ""
            }
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
    }
}

/// The store `storage.url` names: embedded SQLite in the data directory when it is empty.
async fn open_store(cfg: &Config, metrics: &Arc<Metrics>) -> Result<Arc<dyn Store>, String> {
    let url = cfg.storage.url.as_str();
    if url.is_empty() {
        let s = SqliteStore::open(&cfg.data_dir, &cfg.storage, metrics.clone())?;
        return Ok(Arc::new(s));
    }
    if url.starts_with("scylla://") {
        #[cfg(feature = "scylla")]
        {
            let s = crate::storage::scylla::ScyllaStore::connect(url, &cfg.storage).await?;
            tracing::info!(store = url, "connected to ScyllaDB");
            return Ok(Arc::new(s));
        }
        #[cfg(not(feature = "scylla"))]
        return Err("this binary was built without the scylla feature".into());
    }
    Err(format!(
        "storage.url {url}: expected empty (SQLite) or scylla://host:port,.../keyspace"
    ))
}

/// A node's parts, built and joined together, before it serves anyone.
pub struct Node {
    pub core: Arc<Core>,
    /// Set in cluster mode: the bus and the forwarded-request table.
    pub cluster: Option<Arc<Cluster>>,
    /// Held for the life of the node: see `lock_data_dir`.
    _data_lock: std::fs::File,
}

pub async fn build(cfg: Config) -> Result<Node, String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    let data_lock = lock_data_dir(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    let cluster = if cfg.cluster.bus.is_empty() {
        None
    } else {
        let bus = crate::bus::Bus::new(&cfg.cluster, metrics.clone())?;
        Some(Cluster::new(
            bus,
            Duration::from_millis(cfg.cluster.forward_timeout_ms),
        ))
    };
    let peers: Arc<dyn Peers> = match &cluster {
        Some(c) => c.clone(),
        None => Arc::new(SingleNode),
    };
    let secret = load_secret(&cfg)?;
    let auth = Auth::new(
        &secret,
        cfg.auth.token_ttl_secs,
        cfg.auth.argon2_memory_kib,
        cfg.auth.argon2_iterations,
    )?;
    let store = open_store(&cfg, &metrics).await?;
    Ok(Node {
        core: Arc::new(Core::new(cfg, store, auth, metrics, peers)),
        cluster,
        _data_lock: data_lock,
    })
}

/// Runs one node until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(cfg: Config) -> Result<(), String> {
    let workers = if cfg.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        cfg.workers
    };
    let listen = cfg.listen.clone();
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    let node = build(cfg).await?;
    let core = node.core.clone();
    // Join the cluster (one heartbeat: the live set is known) before taking any client.
    if let Some(cluster) = &node.cluster {
        crate::cluster::start(&core, cluster).await;
        let bus = cluster.bus();
        tracing::info!(node = %bus.node_id(), live = ?bus.live(), "joined the cluster");
    }
    let data = web::Data::from(core.clone());
    let max_json = core.config.limits.max_json_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(|c| crate::gateway::routes(c, max_json))
            .default_service(web::to(crate::gateway::not_found))
    })
    .workers(workers)
    // Acks and messages are small frames that must leave at once; Nagle's algorithm would
    // hold them until the client's delayed ACK.
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(grace.as_secs().max(1))
    .bind(&listen)
    .map_err(|e| format!("bind {listen}: {e}"))?;
    for addr in server.addrs() {
        tracing::info!(%addr, "listening");
        // Machine-readable for scripts that start the server on port 0.
        println!("listening on {addr}");
    }
    let _ = std::io::stdout().flush();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(expire_idempotency(core.clone()));
    let shutdown_core = core.clone();
    actix_web::rt::spawn(async move {
        wait_for_signal().await;
        shutdown(shutdown_core, handle, grace).await;
    });
    server.await.map_err(|e| e.to_string())?;
    // The server may also stop on its own (a fatal error): make sure storage is closed.
    core.store.close().await;
    drop(node);
    Ok(())
}

/// Drops idempotency keys older than `idempotency_ttl_secs`, every 10 minutes.
async fn expire_idempotency(core: Arc<Core>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        let ttl_ms = core.config.storage.idempotency_ttl_secs as i64 * 1000;
        match core
            .store
            .expire_idempotency(crate::ids::now_ms() - ttl_ms)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(expired = n, "idempotency keys expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency expiry failed"),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn shutdown(core: Arc<Core>, handle: actix_web::dev::ServerHandle, grace: Duration) {
    tracing::info!("shutting down: no new connections, closing sessions with 1012");
    core.begin_shutdown();
    handle.pause().await;
    // Hand this node's conversations over now (the others take them on the `Left` frame),
    // so that clients reconnecting elsewhere find a new owner at once.
    core.peers.leave().await;
    for s in core.hub.all_sessions() {
        Hub::offer(&s, ToSession::Shutdown);
    }
    let deadline = Instant::now() + grace;
    while core.hub.session_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sends already accepted by conversation actors are in the store's queue: closing the
    // store commits them (and answers them) before it shuts the writer.
    tokio::time::sleep(Duration::from_millis(50)).await;
    core.store.close().await;
    tracing::info!(
        remaining = core.hub.session_count(),
        "store closed; stopping"
    );
    handle.stop(true).await;
}
