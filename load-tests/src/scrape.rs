//! The server's own view of a scenario's measured phase, from its `/metrics`: how long the
//! store's group commits took (fsync stalls show here), how many writes each folded, and the
//! send-to-ack time inside the server.
//!
//! A client-side tail says that something was slow; these say whether it was the disk (the
//! commit histogram's tail moves with it) or not (commits stay fast while deliveries wait: CPU,
//! scheduling). Figures are the difference between two scrapes, summed over every node.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

static NODES: OnceLock<Vec<String>> = OnceLock::new();

/// The histograms read, with the factor that turns their unit into the report's.
const HISTOGRAMS: [(&str, f64, &str); 3] = [
    ("parley_store_commit_seconds", 1e3, "ms"),
    ("parley_store_batch_size", 1.0, "writes"),
    ("parley_ack_latency_seconds", 1e3, "ms"),
];

/// The nodes (`http://host:port`) to scrape; set once from `--url`.
pub fn set_nodes(urls: &[String]) {
    // A peer's URL (nats://) has no Parley metrics.
    let http = urls.iter().filter(|u| u.starts_with("http"));
    let _ = NODES.set(http.map(|u| u.trim_end_matches('/').to_string()).collect());
}

/// One histogram: cumulative counts per upper bound, and the sum.
#[derive(Clone, Default)]
struct Hist {
    /// Cumulative count per upper bound `le`, keyed by its bits: for the non-negative floats
    /// (and +Inf) of bucket bounds, the bits sort as the values do.
    buckets: BTreeMap<u64, f64>,
    sum: f64,
    count: f64,
}

/// Every histogram of `HISTOGRAMS` on every node, at one moment.
#[derive(Clone, Default)]
pub struct Snapshot(BTreeMap<&'static str, Hist>);

/// Scrapes every node; a node that does not answer adds nothing (the report says `null` when
/// no node answered).
pub fn take() -> Option<Snapshot> {
    let nodes = NODES.get()?;
    let mut snap = Snapshot::default();
    let mut any = false;
    // A node that stopped answering must not hold the scenario up.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(2)))
        .build()
        .into();
    for n in nodes {
        let Ok(mut resp) = agent.get(&format!("{n}/metrics")).call() else {
            continue;
        };
        let Ok(text) = resp.body_mut().read_to_string() else {
            continue;
        };
        any = true;
        parse_into(&text, &mut snap);
    }
    any.then_some(snap)
}

fn parse_into(text: &str, snap: &mut Snapshot) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        for (name, _, _) in HISTOGRAMS {
            let Some(rest) = key.strip_prefix(name) else {
                continue;
            };
            let h = snap.0.entry(name).or_default();
            if rest == "_sum" {
                h.sum += value;
            } else if rest == "_count" {
                h.count += value;
            } else if let Some(le) = rest
                .strip_prefix("_bucket{le=\"")
                .and_then(|r| r.strip_suffix("\"}"))
            {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                *h.buckets.entry(le.to_bits()).or_default() += value;
            }
        }
    }
}

/// What happened between `before` and `after`: per histogram its count, mean, and the upper
/// bounds of the buckets holding p50, p99, p99.9 and the largest value.
pub fn report(before: &Option<Snapshot>, after: &Option<Snapshot>) -> Value {
    let (Some(b), Some(a)) = (before, after) else {
        return Value::Null;
    };
    let mut out = json!({});
    for (name, scale, unit) in HISTOGRAMS {
        let (Some(ha), hb) = (a.0.get(name), b.0.get(name).cloned().unwrap_or_default()) else {
            continue;
        };
        let count = ha.count - hb.count;
        let bound = |q: f64| -> Value {
            let want = (count * q).ceil().max(1.0);
            for (k, cum) in &ha.buckets {
                let d = cum - hb.buckets.get(k).copied().unwrap_or(0.0);
                if d >= want {
                    let le = f64::from_bits(*k);
                    return if le.is_finite() {
                        json!((le * scale * 1000.0).round() / 1000.0)
                    } else {
                        json!("+Inf")
                    };
                }
            }
            Value::Null
        };
        let key = name.trim_start_matches("parley_");
        out[key] = if count > 0.0 {
            json!({
                "count": count,
                "unit": unit,
                "mean": ((ha.sum - hb.sum) / count * scale * 1000.0).round() / 1000.0,
                "p50_at_most": bound(0.5),
                "p99_at_most": bound(0.99),
                "p999_at_most": bound(0.999),
                "max_at_most": bound(1.0),
            })
        } else {
            json!({"count": 0})
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE parley_store_commit_seconds histogram\n\
        parley_store_commit_seconds_sum 0.5\n\
        parley_store_commit_seconds_count 100\n\
        parley_store_commit_seconds_bucket{le=\"0.001\"} 90\n\
        parley_store_commit_seconds_bucket{le=\"0.002\"} 99\n\
        parley_store_commit_seconds_bucket{le=\"0.004\"} 100\n\
        parley_store_commit_seconds_bucket{le=\"+Inf\"} 100\n";

    #[test]
    fn buckets_give_bounds_of_the_difference() {
        let before = Snapshot::default();
        let mut after = Snapshot::default();
        parse_into(TEXT, &mut after);
        let r = report(&Some(before), &Some(after));
        let c = &r["store_commit_seconds"];
        assert_eq!(c["count"], 100.0);
        assert_eq!(c["mean"], 5.0);
        assert_eq!(c["p50_at_most"], 1.0);
        assert_eq!(c["p99_at_most"], 2.0);
        assert_eq!(c["max_at_most"], 4.0);
    }
}
