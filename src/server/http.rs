//! The client-facing HTTP server, assembled from actix-web's parts the way `HttpServer`
//! assembles them, with one difference: a request that asks for an upgrade goes to
//! `gateway::ws`, which takes the connection from actix-http and serves the WebSocket with
//! tokio-tungstenite (an idle session then holds none of the HTTP dispatcher's buffers).
//! Every other request is routed by the `App` of `gateway::routes`.

use crate::actors::Core;
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Connections waiting to be accepted (what `HttpServer` asks for by default).
const BACKLOG: u32 = 1024;

pub struct Limits {
    pub workers: usize,
    /// TCP connections the server holds at most: plain HTTP and upgrades in progress; an
    /// upgraded WebSocket leaves the count (`budget`).
    pub max_http: usize,
    pub shutdown_grace: Duration,
}

/// Binds `listen` and starts the server's workers; returns it with the address bound.
pub fn start(
    core: &Arc<Core>,
    listen: &str,
    limits: Limits,
) -> Result<(actix_server::Server, SocketAddr), String> {
    let listener = bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("bind {listen}: {e}"))?;
    let core = core.clone();
    let workers = limits.workers.max(1);
    let builder = actix_server::Server::build();
    let draining = builder.graceful_shutdown_signal();
    let server = builder
        .workers(workers)
        // Per worker; the total stays within the open-file budget, so accept() never fails
        // with EMFILE: past it, new connections wait in the kernel's backlog.
        .max_concurrent_connections(limits.max_http.div_ceil(workers).max(1))
        .disable_signals()
        .shutdown_timeout(limits.shutdown_grace.as_secs().max(1))
        .listen("parley", listener, move || {
            service(core.clone(), addr, draining.clone())
        })
        .map_err(|e| format!("listen {listen}: {e}"))?
        .run();
    Ok((server, addr))
}

/// One worker's service: actix-http's HTTP/1 with the upgrade hook, the `App` behind it.
fn service(
    core: Arc<Core>,
    addr: SocketAddr,
    draining: actix_server::GracefulShutdownSignal,
) -> impl actix_service::ServiceFactory<
    actix_web::rt::net::TcpStream,
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
> {
    let g = &core.config.gateway;
    let header_timeout = Duration::from_millis(g.request_header_timeout_ms);
    let body_timeout = Duration::from_millis(g.body_timeout_ms);
    let max_json = core.config.limits.max_json_bytes;
    let app = App::new()
        .app_data(web::Data::from(core.clone()))
        .wrap_fn(move |mut req, srv| {
            crate::gateway::slow::limit_body_pauses(&mut req, body_timeout);
            actix_web::dev::Service::call(srv, req)
        })
        .configure(|c| crate::gateway::routes(c, max_json))
        .default_service(web::to(crate::gateway::not_found));
    let upgrade = fn_factory(move || {
        let core = core.clone();
        async move {
            Ok::<_, ()>(fn_service(move |(req, framed)| {
                crate::gateway::ws::serve(core.clone(), req, framed)
            }))
        }
    });
    // `HttpServer`'s settings: a response sent before the request's body ended (a refusal
    // of an upload) waits up to a second for the client to finish sending it, so the client
    // reads the answer instead of a broken pipe; a graceful stop closes idle keep-alive
    // connections at once.
    actix_http::HttpService::build()
        .client_request_timeout(header_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .graceful_shutdown_signal(move || {
            let draining = draining.clone();
            async move { draining.notified().await }
        })
        // Acks and messages are small frames that must leave at once; Nagle's algorithm
        // would hold them until the client's delayed ACK.
        .tcp_nodelay(true)
        .local_addr(addr)
        .upgrade(upgrade)
        .finish(map_config(app.into_factory(), |_| AppConfig::default()))
        .tcp()
}

fn bind(listen: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = listen.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}
