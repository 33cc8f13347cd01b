//! CPU time spent by the server and by this generator during a scenario's measured phase.
//!
//! On a shared 2-core machine wall-clock throughput moves with whatever else runs, but CPU
//! time per message does not much: it is the figure to compare between runs and versions. The
//! phase excludes setup (registrations hash passwords, which would dwarf the messages).

use serde_json::{json, Value};
use std::sync::OnceLock;

static SERVER_PIDS: OnceLock<Vec<u32>> = OnceLock::new();

/// The server processes to read from /proc; set once from `--server-pids`.
pub fn set_server_pids(pids: Vec<u32>) {
    let _ = SERVER_PIDS.set(pids);
}

/// utime + stime of processes, in clock ticks.
pub fn ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| Some(stat_ticks(&s)?.1))
        .sum()
}

/// The command name and utime + stime of one `/proc/.../stat` text.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    // Fields after the command name (which may hold spaces) start after ") ".
    let (head, rest) = stat.rsplit_once(") ")?;
    let name = head.split_once(" (")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        name,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

/// utime + stime of the processes' threads, in clock ticks, by thread name (the store's
/// writer, its checkpointer, the workers...): which part of the server a change moved.
pub fn ticks_by_thread(pids: &[u32]) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(s) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            if let Some((name, used)) = stat_ticks(&s) {
                *out.entry(name.to_string()).or_default() += used;
            }
        }
    }
    out
}

/// Time the processes' threads spent runnable but waiting for a CPU, in ns, and how often
/// they were switched out against their will (from `/proc/PID/task/*/schedstat` and
/// `status`): CPU starvation, the off-CPU time that is not waiting on I/O or peers.
pub fn waits(pids: &[u32]) -> (u64, u64) {
    let (mut wait_ns, mut involuntary) = (0, 0);
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let dir = t.path();
            if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
                wait_ns += s
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
                involuntary += s
                    .lines()
                    .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    (wait_ns, involuntary)
}

/// USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux this runs on.
const TICKS_PER_S: f64 = 100.0;

/// Started when the measured phase begins.
pub struct Meter {
    server: u64,
    generator: u64,
    /// Of threads that exist at both ends: a thread that ended in between takes its
    /// counts with it (the server's threads live as long as it does).
    server_waits: (u64, u64),
    server_threads: std::collections::BTreeMap<String, u64>,
    store: Option<crate::scrape::Snapshot>,
}

impl Meter {
    pub fn start() -> Meter {
        let pids = SERVER_PIDS.get().map_or(&[][..], |p| p.as_slice());
        Meter {
            server: ticks(pids),
            generator: ticks(&[std::process::id()]),
            server_waits: waits(pids),
            server_threads: ticks_by_thread(pids),
            store: crate::scrape::take(),
        }
    }

    /// The CPU seconds since `start`, and microseconds per unit for each `(name, count)`
    /// (e.g. per message, per delivery). Without `--server-pids` the server figures are null.
    pub fn report(&self, units: &[(&str, u64)]) -> Value {
        let pids = SERVER_PIDS.get().map_or(&[][..], |p| p.as_slice());
        let tps = TICKS_PER_S;
        let server_s =
            (!pids.is_empty()).then(|| ticks(pids).saturating_sub(self.server) as f64 / tps);
        let generator_s = ticks(&[std::process::id()]).saturating_sub(self.generator) as f64 / tps;
        let per = |s: f64, n: u64| (n > 0).then(|| (s * 1e6 / n as f64 * 10.0).round() / 10.0);
        let (wait_ns, involuntary) = waits(pids);
        let waited = (!pids.is_empty()).then(|| {
            json!({
                "runqueue_wait_s": (wait_ns.saturating_sub(self.server_waits.0) as f64 / 1e6).round() / 1e3,
                "involuntary_switches": involuntary.saturating_sub(self.server_waits.1),
            })
        });
        let mut out = json!({
            "server_cpu_s": server_s,
            "generator_cpu_s": generator_s,
            "server_waiting_for_cpu": waited,
            "server_store": crate::scrape::report(&self.store, &crate::scrape::take()),
        });
        // Per thread name, per the first unit: threads that ended in between are left out.
        if let (Some((unit, n)), false) = (units.first(), pids.is_empty()) {
            let by: serde_json::Map<String, Value> = ticks_by_thread(pids)
                .into_iter()
                .filter_map(|(name, t)| {
                    let d = t.saturating_sub(*self.server_threads.get(&name)?) as f64 / tps;
                    Some((name, json!(per(d, *n))))
                })
                .collect();
            out[format!("server_cpu_us_per_{unit}_by_thread")] = Value::Object(by);
        }
        for (name, n) in units {
            out[format!("server_cpu_us_per_{name}")] = json!(server_s.and_then(|s| per(s, *n)));
            out[format!("generator_cpu_us_per_{name}")] = json!(per(generator_s, *n));
        }
        out
    }
}
