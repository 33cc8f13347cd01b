//! `parley-load`: drives real Parley nodes the way a fleet of mobile and desktop clients would,
//! and checks the outcome as well as the speed. Every scenario is bounded in count and time,
//! talks to loopback only, and fails (exit 1) if an acked message was lost, duplicated or
//! delivered out of order.

mod client;
mod connect;
mod cpu;
mod direct;
mod group;
#[cfg(feature = "peers")]
mod nats;
#[cfg(feature = "peers")]
mod peer_run;
mod push;
mod receipts;
mod scrape;
mod soak;
mod storm;
#[cfg(feature = "peers")]
mod xmpp;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "parley-load", about = "Load generator for Parley")]
struct Cli {
    /// Node base URLs (http://host:port), comma-separated. `direct` puts each pair's sender
    /// and receiver on different nodes (round-robin), `connect` spreads its connections; the
    /// other scenarios use the first.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_delimiter = ','
    )]
    url: Vec<String>,
    /// Write every figure as JSON to this file.
    #[arg(long, global = true)]
    json: Option<String>,
    /// The server's config file, recorded in the JSON report.
    #[arg(long, global = true)]
    server_config: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Pairs of users exchange 1:1 messages.
    Direct {
        #[arg(long, default_value_t = 20)]
        pairs: usize,
        /// Messages in flight per sender.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Target rate in msgs/s over all senders (open loop); 0 = as fast as the window allows.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Message text size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// PIDs of the server nodes, for their CPU time from /proc (per message in "cpu").
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
    },
    /// Groups of S members, one sender per group, open loop.
    Group {
        #[arg(long, default_value_t = 1)]
        groups: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages per second over all groups.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// PIDs of the server nodes, for their CPU time from /proc (per message in "cpu").
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
    },
    /// One large group: K messages, every member marks each received and read; the time
    /// until the sender's receipt summaries show all, their count, and the receipts endpoint.
    Receipts {
        /// Members, the sender included (each its own device and socket).
        #[arg(long, default_value_t = 1000)]
        size: usize,
        #[arg(long, default_value_t = 20)]
        messages: u64,
        /// Milliseconds between sends.
        #[arg(long, default_value_t = 500)]
        gap_ms: u64,
    },
    /// K devices go offline, messages pile up, all reconnect at once and sync.
    Storm {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages owed to each client.
        #[arg(long, default_value_t = 5)]
        messages: u64,
        /// PIDs of the server nodes, for their CPU time from /proc (per message in "cpu").
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
    },
    /// Idle authenticated connections over all --url nodes and several client processes.
    Connect {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Connections per client process (each process may hold ~19k sockets).
        #[arg(long, default_value_t = 15000)]
        per_process: usize,
        /// Users per node per process to spread the devices over.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// PIDs of the server nodes, to read their RSS from /proc.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// Seconds to keep the connections open after measuring.
        #[arg(long, default_value_t = 0)]
        hold: u64,
        /// Try each connection once and count 503 refusals (a node at its connection limit)
        /// instead of retrying them.
        #[arg(long)]
        accept_refusals: bool,
    },
    /// A mixed workload at a bounded rate for a long time, sampled; see load-tests/README.md.
    Soak {
        /// Users, one device each.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Groups (3 to 50 members at the start); default: users / 10.
        #[arg(long)]
        groups: Option<usize>,
        /// Operations per second offered over all devices.
        #[arg(long, default_value_t = 300)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10)]
        sample_secs: u64,
        /// PIDs of the server nodes, for RSS, descriptors and threads from /proc.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// The node's data directory, for the size of its SQLite WAL.
        #[arg(long)]
        data_dir: Option<String>,
    },
    /// Push throughput: offline devices with webhook targets on a receiver in this process.
    Push {
        #[arg(long, default_value_t = 10)]
        groups: usize,
        /// Members per group: one online sender, the rest offline with a push target.
        #[arg(long, default_value_t = 1001)]
        size: usize,
        /// Messages per group, one per round; each round waits for every notification.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// PIDs of the server nodes, for their CPU time from /proc.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// Seconds a round may take before what is left counts as undelivered.
        #[arg(long, default_value_t = 120)]
        round_timeout: u64,
    },
    /// The `direct` workload against NATS JetStream at --url (nats://host:port); built with
    /// `--features peers` (load-tests/peers runs it).
    #[cfg(feature = "peers")]
    Nats(peer_run::Workload),
    /// The `direct` workload against an XMPP server's WebSocket at --url (ws://host:port/ws,
    /// domain `localhost`, in-band registration open); built with `--features peers`.
    #[cfg(feature = "peers")]
    Xmpp(peer_run::Workload),
    /// Idle client connections to NATS at --url, and the server RSS per connection.
    #[cfg(feature = "peers")]
    NatsIdle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long)]
        server_pid: u32,
        /// Seconds to wait before reading the server's RSS.
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
    /// (internal) one client process of `connect`.
    #[command(hide = true)]
    ConnectWorker {
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        users: usize,
        #[arg(long)]
        tag: String,
        #[arg(long)]
        accept_refusals: bool,
    },
}

fn machine() -> Value {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_kib": mem,
        "kernel": kernel.trim(),
    })
}

/// A few readable lines (to stderr, so stdout stays JSON when no --json file is given).
fn print_summary(r: &Value) {
    let get = |k: &str| r.get(k).filter(|v| !v.is_null()).map(|v| v.to_string());
    let mut line = format!("{}:", r["scenario"].as_str().unwrap_or("?"));
    for k in [
        "acked",
        "acked_per_s",
        "notified",
        "server_cpu_us_per_notification",
        "deliveries_per_s",
        "owed",
        "delivered",
        "all_synced_s",
        "held",
        "connections_per_s",
        "server_bytes_per_connection",
        "client_bytes_per_connection",
        "errors",
    ] {
        if let Some(v) = get(k) {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    eprintln!("{line}");
    for k in [
        "ack_latency",
        "delivery_latency",
        "latency_to_last_member",
        "commit_to_accept",
        "time_to_synced",
        "time_to_all_delivered",
        "time_to_all_read",
        "receipts_page_latency",
    ] {
        if let Some(h) = r.get(k).filter(|v| v.is_object()) {
            eprintln!(
                "  {k}: p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
                h["p50_ms"], h["p90_ms"], h["p99_ms"], h["p999_ms"], h["max_ms"]
            );
        }
    }
    if let Some(cpu) = r.get("cpu").and_then(|c| c.as_object()) {
        let figures: Vec<String> = cpu
            .iter()
            .filter(|(k, v)| k.contains("_per_") && !v.is_null())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        eprintln!("  cpu: {}", figures.join(" "));
    }
    eprintln!(
        "  complete: {} (duplicates {}, gaps {}, undelivered {})",
        r["complete"], r["duplicates"], r["gaps"], r["undelivered"]
    );
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let url = cli.url[0].clone();
    scrape::set_nodes(&cli.url);
    let mut report = match cli.cmd {
        Cmd::Direct {
            pairs,
            window,
            rate,
            duration,
            size,
            server_pids,
        } => {
            cpu::set_server_pids(server_pids);
            direct::direct(&cli.url, pairs, window, rate, duration, size).await
        }
        Cmd::Group {
            groups,
            size,
            rate,
            duration,
            server_pids,
        } => {
            cpu::set_server_pids(server_pids);
            group::group(&url, groups, size, rate, duration).await
        }
        Cmd::Receipts {
            size,
            messages,
            gap_ms,
        } => receipts::receipts(&url, size, messages, gap_ms).await,
        Cmd::Storm {
            clients,
            senders,
            messages,
            server_pids,
        } => {
            cpu::set_server_pids(server_pids);
            storm::storm(&url, clients, senders, messages).await
        }
        Cmd::Connect {
            connections,
            per_process,
            users,
            server_pids,
            hold,
            accept_refusals,
        } => {
            connect::connect(
                &cli.url,
                connections,
                per_process,
                users,
                &server_pids,
                hold,
                accept_refusals,
            )
            .await
        }
        Cmd::Soak {
            users,
            groups,
            rate,
            duration,
            sample_secs,
            server_pids,
            data_dir,
        } => {
            let cfg = soak::Config {
                users,
                groups: groups.unwrap_or(users / 10),
                rate,
                duration,
                sample_secs,
                server_pids,
                data_dir,
            };
            soak::soak(&cli.url, cfg).await
        }
        Cmd::Push {
            groups,
            size,
            rounds,
            server_pids,
            round_timeout,
        } => {
            let cfg = push::Config {
                groups,
                size,
                rounds,
                server_pids,
                round_timeout,
            };
            push::push(&url, cfg).await
        }
        #[cfg(feature = "peers")]
        Cmd::Nats(w) => {
            cpu::set_server_pids(w.server_pids.clone());
            nats::direct(&url, &w).await
        }
        #[cfg(feature = "peers")]
        Cmd::Xmpp(w) => {
            cpu::set_server_pids(w.server_pids.clone());
            xmpp::direct(&url, &w).await
        }
        #[cfg(feature = "peers")]
        Cmd::NatsIdle {
            connections,
            server_pid,
            hold,
        } => nats::idle(&url, connections, server_pid, hold).await,
        Cmd::ConnectWorker {
            connections,
            users,
            tag,
            accept_refusals,
        } => {
            connect::worker(&cli.url, connections, users, &tag, accept_refusals).await;
            return;
        }
    };
    report["machine"] = machine();
    report["git_revision"] = json!(git_revision());
    report["server_config"] = match &cli.server_config {
        Some(p) => json!(std::fs::read_to_string(p).unwrap_or_default()),
        None => Value::Null,
    };
    let ok = report["complete"].as_bool().unwrap_or(false);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).expect("write json");
    }
    print_summary(&report);
    if cli.json.is_none() {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    }
    if !ok {
        eprintln!("FAILED: completeness check (see duplicates / gaps / undelivered)");
        std::process::exit(1);
    }
}
