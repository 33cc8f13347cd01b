//! `parley push`: a push bridge as its own process. Any number may run, on any hosts that reach
//! the store; they share the outbox as competing consumers. It serves `/healthz`, `/readyz`
//! (the store is writable and a provider is configured) and `/metrics` on `push.listen`.
//!
//! Shutdown (SIGTERM/SIGINT): stop serving, and stop; deliveries in flight are not completed,
//! so their leases expire and another bridge (or this one, restarted) delivers them: at least
//! once, never lost.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::push::bridge::{Bridge, BusEvents, NoEvents, TargetEvents};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct State {
    bridge: Arc<Bridge>,
    store: Arc<dyn crate::storage::Store>,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(s: web::Data<State>) -> HttpResponse {
    match tokio::time::timeout(Duration::from_secs(2), s.store.check_writable()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready"})),
        _ => HttpResponse::ServiceUnavailable()
            .json(json!({"error": {"code": "unavailable", "message": "store is not writable"}})),
    }
}

async fn metrics(s: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(s.bridge.metrics.render())
}

pub async fn run(cfg: Config) -> Result<(), String> {
    let providers = crate::push::providers::build(&cfg.push)?;
    if providers.is_empty() {
        return Err(
            "parley push: no provider has credentials (see [push] in `parley config`)".into(),
        );
    }
    let store = crate::storage::open(&cfg, &Arc::new(Metrics::new())).await?;
    let events: Arc<dyn TargetEvents> = if cfg.cluster.bus.is_empty() {
        Arc::new(NoEvents)
    } else {
        let bus = crate::bus::Bus::new(&cfg.cluster, Arc::new(Metrics::new()))?;
        bus.start_publisher();
        Arc::new(BusEvents(bus))
    };
    let bridge = Bridge::new(store.clone(), providers, cfg.push.clone(), events);
    let state = web::Data::new(State {
        bridge: bridge.clone(),
        store: store.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(&cfg.push.listen)
    .map_err(|e| format!("bind {}: {e}", cfg.push.listen))?;
    for addr in server.addrs() {
        tracing::info!(%addr, "push bridge listening");
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {addr}").and_then(|_| out.flush());
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(bridge.run());
    actix_web::rt::spawn(async move {
        super::wait_for_signal().await;
        tracing::info!("push bridge stopping");
        handle.stop(true).await;
    });
    server.await.map_err(|e| e.to_string())?;
    store.close().await;
    Ok(())
}
