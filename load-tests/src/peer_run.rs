//! What the peers' drivers (`nats`, `xmpp`) share with each other: the `direct` workload's
//! parameters, its open-loop pacing, and the tally of a run in `direct`'s report shape, so
//! that load-tests/peers compares like with like.

use crate::client::{hist, summary, Order};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The `direct` workload, as `parley-load direct` takes it.
#[derive(clap::Args, Clone)]
pub struct Workload {
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// Messages in flight per sender.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Target rate in msgs/s over all senders (open loop); 0 = as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Message text size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// PIDs of the server's processes, for their CPU time from /proc.
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
}

/// One sender's pace: its share of the rate, its first tick staggered over one interval (an
/// open-loop fleet, not a synchronised burst), or no pace at all (as fast as the window).
pub struct Pacer {
    tick: Option<tokio::time::Interval>,
    pub window: usize,
    stop: Instant,
}

impl Pacer {
    pub fn new(w: &Workload, sender: usize) -> Pacer {
        let interval =
            (w.rate > 0).then(|| Duration::from_secs_f64(w.pairs as f64 / w.rate as f64));
        let tick = interval.map(|p| {
            let offset = p.mul_f64(sender as f64 / w.pairs as f64);
            tokio::time::interval_at(tokio::time::Instant::now() + offset, p)
        });
        Pacer {
            tick,
            window: w.window,
            stop: Instant::now() + Duration::from_secs(w.duration),
        }
    }

    /// Whether the sender is done: its time is up (or it met an error) and nothing is in
    /// flight.
    pub fn finished(&self, inflight: usize, errors: u64) -> bool {
        (Instant::now() >= self.stop || errors > 0) && inflight == 0
    }

    /// Resolves when the next message may go, given the messages in flight; never while the
    /// window is full, the run is over, or after an error (the first one ends the sending).
    pub async fn next(&mut self, inflight: usize, errors: u64) {
        let can_send = Instant::now() < self.stop && inflight < self.window && errors == 0;
        match self.tick.as_mut() {
            Some(t) if can_send => {
                t.tick().await;
            }
            None if can_send => {}
            _ => std::future::pending::<()>().await,
        }
    }
}

/// When a receiver stops: once it holds every message its sender had acked, or 15 s after
/// the sender finished (what is missing then counts as undelivered).
pub struct Finish {
    acked: tokio::sync::watch::Receiver<u64>,
    since: Option<Instant>,
}

impl Finish {
    /// `acked` gets the sender's count of acked messages when it finishes.
    pub fn new(acked: tokio::sync::watch::Receiver<u64>) -> Finish {
        Finish { acked, since: None }
    }

    pub fn reached(&self, order: &Order) -> bool {
        let target = *self.acked.borrow();
        (target > 0 && order.last >= target)
            || self
                .since
                .is_some_and(|t| t.elapsed() > Duration::from_secs(15))
    }

    /// Resolves once, when the sender finishes.
    pub async fn sender_done(&mut self) {
        if self.since.is_some() || self.acked.changed().await.is_err() {
            return std::future::pending().await;
        }
        self.since = Some(Instant::now());
    }
}

/// A sender's outcome: ack latencies (µs), messages acked (numbered 1..=n), errors.
pub type Sent = (Histogram<u64>, u64, u64);
/// A receiver's outcome: delivery latencies (µs) and the order of what it got.
pub type Received = (Histogram<u64>, Order);

/// Starts every sender at once, waits for all, and reports in `direct`'s shape.
pub async fn tally(
    scenario: &str,
    w: &Workload,
    start: Arc<tokio::sync::Barrier>,
    senders: Vec<JoinHandle<Sent>>,
    receivers: Vec<JoinHandle<Received>>,
) -> Value {
    start.wait().await;
    let t_send = Instant::now();
    let meter = crate::cpu::Meter::start();
    let (mut ack, mut acked, mut errors, mut targets) = (hist(), 0u64, 0u64, Vec::new());
    for s in senders {
        let (h, n, e) = s.await.unwrap();
        ack.add(&h).unwrap();
        acked += n;
        errors += e;
        targets.push(n);
    }
    // Until the last ack: a slow peer's last window drains after the sending stopped.
    let send_secs = t_send.elapsed().as_secs_f64().max(0.001);
    let receivers = futures_util::future::join_all(receivers).await;
    let cpu = meter.report(&[("message", acked)]);
    let (mut e2e, mut delivered, mut dups, mut gaps, mut short) = (hist(), 0, 0, 0, 0);
    for (r, target) in receivers.into_iter().zip(targets) {
        let (h, order) = r.unwrap();
        e2e.add(&h).unwrap();
        delivered += order.last.min(target);
        dups += order.dups;
        gaps += order.gaps;
        short += target.saturating_sub(order.last);
    }
    json!({
        "scenario": scenario,
        "pairs": w.pairs, "window": w.window, "target_rate": w.rate, "duration_s": w.duration,
        "text_bytes": w.size,
        "acked": acked,
        "acked_per_s": (acked as f64 / send_secs).round(),
        "ack_latency": summary(&ack),
        "delivery_latency": summary(&e2e),
        "delivered": delivered,
        "duplicates": dups, "gaps": gaps, "undelivered": short,
        "errors": errors,
        "cpu": cpu,
        "complete": dups == 0 && gaps == 0 && short == 0 && errors == 0,
    })
}

/// Microseconds since `t0`, the clock every payload carries.
pub fn now_us(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}
