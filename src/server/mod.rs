//! Start-up and shutdown: builds the `Core`, runs the HTTP server, and shuts down in the
//! house order: stop accepting, close sessions with 1012, drain with a deadline, flush the
//! store's queued writes, close the store. `datadir` takes the data directory's lock and
//! secret; `budget` decides how many connections the node can hold.

pub mod bridge;
mod budget;
mod datadir;
mod http;

use crate::actors::{Core, Hub, Peers, SingleNode, ToSession};
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node's parts, built and joined together, before it serves anyone.
pub struct Node {
    pub core: Arc<Core>,
    /// TCP connections the HTTP server holds at most, upgrades in progress included; a
    /// session leaves its count once upgraded (see `budget`).
    pub max_http: usize,
    /// Set in cluster mode: the bus and the forwarded-request table.
    pub cluster: Option<Arc<Cluster>>,
    /// Held for the life of the node: see `datadir::lock`.
    _data_lock: std::fs::File,
}

pub async fn build(cfg: Config) -> Result<Node, String> {
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("data dir {}: {e}", cfg.data_dir.display()))?;
    let data_lock = datadir::lock(&cfg)?;
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
    let budget = budget::Budget::of(&cfg);
    let secret = datadir::secret(&cfg)?;
    let auth = Auth::new(
        &secret,
        cfg.auth.token_ttl_secs,
        cfg.auth.argon2_memory_kib,
        cfg.auth.argon2_iterations,
    )?
    .with_media_secret(cfg.media.url_secret.as_bytes());
    let blobs = crate::blobs::Blobs::from_config(&cfg.blobs, cfg.data_dir.join("files"))?;
    let store = crate::storage::open(&cfg, &metrics).await?;
    let admission = crate::actors::admission::Admission::new(
        budget.max_sessions,
        cfg.gateway.max_pending_auth,
        cfg.limits.max_concurrent_uploads,
        metrics.clone(),
    );
    Ok(Node {
        max_http: budget.max_http,
        core: Arc::new(Core::new(
            cfg, store, auth, metrics, peers, admission, blobs,
        )),
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
    let limits = http::Limits {
        workers,
        max_http: node.max_http,
        shutdown_grace: grace,
    };
    let (server, addr) = http::start(&core, &listen, limits)?;
    tracing::info!(%addr, "listening");
    {
        // Machine-readable for scripts that start the server on port 0.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {addr}").and_then(|_| out.flush());
    }
    let handle = server.handle();
    actix_web::rt::spawn(expire_idempotency(core.clone()));
    actix_web::rt::spawn(crate::actors::sweep::run(core.clone()));
    actix_web::rt::spawn(crate::actors::housekeeping::run(core.clone()));
    actix_web::rt::spawn(core.last_seen.clone().run(core.store.clone()));

    start_push(&core)?;
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

/// Push on this node: the sweep that schedules what commits left pending (for the
/// conversations this node owns), and a bridge if any provider has credentials.
fn start_push(core: &Arc<Core>) -> Result<(), String> {
    let c = core.clone();
    let owns = move |conv: &str| c.peers.remote_owner(conv).is_none();
    let delay = core.config.push.confirm_delay_ms;
    actix_web::rt::spawn(crate::push::notify::sweep(
        core.store.clone(),
        owns,
        delay,
        Duration::from_secs(5),
    ));
    let cfg = &core.config.push;
    if !(cfg.in_process && cfg.any_provider()) {
        return Ok(());
    }
    let providers = crate::push::providers::build(cfg)?;
    let events: Arc<dyn crate::push::bridge::TargetEvents> = core.clone();
    let bridge =
        crate::push::bridge::Bridge::new(core.store.clone(), providers, cfg.clone(), events);
    let _ = core.push_metrics.set(bridge.metrics.clone());
    tracing::info!("push bridge running in-process");
    actix_web::rt::spawn(bridge.run());
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

pub(crate) async fn wait_for_signal() {
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

async fn shutdown(core: Arc<Core>, handle: actix_server::ServerHandle, grace: Duration) {
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
    core.last_seen.flush(&*core.store).await;
    core.store.close().await;
    tracing::info!(
        remaining = core.hub.session_count(),
        "store closed; stopping"
    );
    handle.stop(true).await;
}
