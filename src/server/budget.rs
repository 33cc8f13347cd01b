//! How many connections a node can hold, from its open-file limit.
//!
//! Every TCP connection is a file descriptor, and so is every SQLite file, reader connection,
//! Redis connection, upload in progress and blob being served. A node that runs out of
//! descriptors fails at random places (an accept, a commit's WAL write, a Redis reconnect), so
//! it never lets client connections take them all: at start it raises its soft
//! `RLIMIT_NOFILE` to the hard limit, keeps a reserve for its own files, and splits the rest
//! in two. WebSocket sessions get most of it (an upgrade past `max_sessions` is answered 503);
//! the HTTP server gets the remainder, `max_http`, for plain requests and upgrades in progress
//! (past it, new connections wait in the kernel's backlog), so that plain HTTP requests, and
//! the 503 itself, always find a descriptor. A session leaves the HTTP server's count once
//! upgraded (`gateway::ws` takes the socket), so the two limits add up to the budget.

use crate::config::Config;

pub struct Budget {
    /// `max_sessions + max_http` is every client connection the node holds.
    pub max_sessions: usize,
    pub max_http: usize,
}

impl Budget {
    pub fn of(cfg: &Config) -> Budget {
        let nofile = raise_nofile();
        let max_connections = if cfg.gateway.max_connections > 0 {
            cfg.gateway.max_connections
        } else {
            // Descriptors the node itself needs: store, readers, bus, uploads, logs, epoll.
            let reserve = 128 + nofile / 10;
            nofile.saturating_sub(reserve).max(16)
        };
        let headroom = (max_connections / 20).max(8);
        let max_sessions = max_connections.saturating_sub(headroom).max(1);
        let budget = Budget {
            max_sessions,
            max_http: max_connections.saturating_sub(max_sessions).max(1),
        };
        tracing::info!(
            nofile,
            max_connections,
            max_sessions,
            max_http = budget.max_http,
            "connection budget"
        );
        budget
    }
}

/// Raises the soft open-file limit to the hard one; returns the soft limit in force.
fn raise_nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .min(1 << 24)
}
