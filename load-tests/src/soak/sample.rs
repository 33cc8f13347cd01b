//! Samples over time, so that growth shows: the server's RSS, open descriptors and threads
//! (from /proc), its live conversation actors and connections (from `/metrics`), the SQLite
//! WAL size, the generator's own RSS, and the work done so far. The summary fits a line to the
//! second half of each series (after warm-up), so "flat" is a number: units per hour.

use super::http;
use super::world::World;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The series, in the order of `Sample::values`; all are counts. `server_rss_file_kib` is
/// what is not anonymous (mapped files: the binary, SQLite's mmap and its shared WAL index),
/// which grows with the database rather than with leaks.
pub const SERIES: [&str; 12] = [
    "server_rss_kib",
    "server_rss_anon_kib",
    "server_rss_file_kib",
    "server_fds",
    "server_threads",
    "conversation_actors",
    "connections",
    "wal_bytes",
    "db_bytes",
    "client_rss_kib",
    "ops",
    "acked",
];

pub struct Probe {
    pub pids: Vec<u32>,
    pub urls: Vec<String>,
    pub data_dir: Option<PathBuf>,
}

pub struct Sample {
    pub t_s: f64,
    pub values: [Option<f64>; 12],
    servers: Vec<Value>,
    errors: Value,
}

impl Sample {
    pub fn to_json(&self) -> Value {
        let mut v = json!({"t_s": (self.t_s * 10.0).round() / 10.0, "servers": self.servers, "errors": self.errors});
        for (k, x) in SERIES.iter().zip(self.values) {
            v[*k] = json!(x.map(|x| x as u64));
        }
        v
    }
}

/// One server process, from /proc.
struct Proc {
    pid: u32,
    rss_kib: Option<u64>,
    anon_kib: Option<u64>,
    fds: Option<u64>,
    threads: Option<u64>,
}

impl Proc {
    fn read(pid: u32) -> Proc {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Proc {
            pid,
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .ok()
                .map(|d| d.count() as u64),
            threads: field("Threads:"),
        }
    }

    fn file_kib(&self) -> Option<u64> {
        Some(self.rss_kib?.saturating_sub(self.anon_kib?))
    }

    fn to_json(&self) -> Value {
        json!({"pid": self.pid, "rss_kib": self.rss_kib, "rss_anon_kib": self.anon_kib,
            "fds": self.fds, "threads": self.threads})
    }
}

/// A gauge from Prometheus text: the line `name value`.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum over the items; `None` if any is missing or there are none.
fn total(items: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let all: Option<Vec<u64>> = items.collect();
    all.filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<u64>() as f64)
}

impl Probe {
    fn file_size(&self, name: &str) -> Option<f64> {
        let dir = self.data_dir.as_ref()?;
        Some(std::fs::metadata(dir.join(name)).map_or(0, |m| m.len()) as f64)
    }

    fn take(&self, world: &World, t0: Instant) -> Sample {
        let procs: Vec<Proc> = self.pids.iter().map(|p| Proc::read(*p)).collect();
        let metrics: Vec<Option<String>> = self
            .urls
            .iter()
            .map(|u| http::metrics(&world.agent, u).ok())
            .collect();
        let from_metrics = |name: &str| {
            let each = metrics
                .iter()
                .map(|m| m.as_deref().and_then(|t| gauge(t, name)));
            total(each.map(|v| v.map(|v| v as u64)))
        };
        let values = [
            total(procs.iter().map(|p| p.rss_kib)),
            total(procs.iter().map(|p| p.anon_kib)),
            total(procs.iter().map(|p| p.file_kib())),
            total(procs.iter().map(|p| p.fds)),
            total(procs.iter().map(|p| p.threads)),
            from_metrics("parley_conversation_actors"),
            from_metrics("parley_connections"),
            self.file_size("parley.db-wal"),
            self.file_size("parley.db"),
            crate::client::rss_kib("self").map(|v| v as f64),
            Some(world.ops_done() as f64),
            Some(world.acked.load(Ordering::Relaxed) as f64),
        ];
        let (expected, unexpected) = world.errors();
        Sample {
            t_s: t0.elapsed().as_secs_f64(),
            values,
            servers: procs.iter().map(Proc::to_json).collect(),
            errors: json!({"expected": expected, "unexpected": unexpected}),
        }
    }
}

/// Takes a sample every `every` until `stop` changes, then a last one.
pub async fn run(
    probe: Probe,
    world: Arc<World>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let probe = Arc::new(probe);
    let t0 = Instant::now();
    let mut out = Vec::new();
    loop {
        let (p, w) = (probe.clone(), world.clone());
        out.push(
            tokio::task::spawn_blocking(move || p.take(&w, t0))
                .await
                .unwrap(),
        );
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
    }
    let (p, w) = (probe.clone(), world.clone());
    out.push(
        tokio::task::spawn_blocking(move || p.take(&w, t0))
            .await
            .unwrap(),
    );
    out
}

/// Least-squares slope of `(t, v)` in units per hour; `None` below two distinct times.
pub fn slope_per_hour(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 3600.0)
}

/// First, last and max of each series, and its slope over the second half of the run.
pub fn summary(samples: &[Sample]) -> Value {
    let end = samples.last().map_or(0.0, |s| s.t_s);
    let mut out = json!({});
    for (k, key) in SERIES.iter().enumerate() {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| s.values[k].map(|v| (s.t_s, v)))
            .collect();
        let Some(first) = points.first() else {
            continue;
        };
        let half: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.0 >= end / 2.0)
            .collect();
        out[*key] = json!({
            "first": first.1 as u64,
            "last": points.last().unwrap().1 as u64,
            "max": points.iter().map(|p| p.1).fold(f64::MIN, f64::max) as u64,
            "slope_per_hour": slope_per_hour(&half).map(|s| s.round() as i64),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 60.0, 100.0 + i as f64))
            .collect();
        assert!((slope_per_hour(&line).unwrap() - 60.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(slope_per_hour(&flat), Some(0.0));
        assert_eq!(slope_per_hour(&flat[..1]), None);
    }

    #[test]
    fn gauges_from_prometheus_text() {
        let t = "# HELP parley_connections x\nparley_connections 12\nparley_connections_refused_total 3\n";
        assert_eq!(gauge(t, "parley_connections"), Some(12.0));
        assert_eq!(gauge(t, "parley_conversation_actors"), None);
    }
}
