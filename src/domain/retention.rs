//! Retention: which conversations' messages are due to expire, and whom to tell when a
//! message expired before a device of a recipient received it.
//!
//! It exists so that the sweep (on each node), the conversation actor (which purges) and the
//! reads (which show the purged range as an `expired` notice) agree on one cut-off and one
//! notion of "undeliverable".

use crate::config::RetentionConfig;
use crate::storage::{Expired, MemberDevice, Retention, Undeliverable};
use std::collections::BTreeMap;

/// The period that applies to a conversation, in seconds; `None`: kept forever.
pub fn period(cfg: &RetentionConfig, r: &Retention) -> Option<u64> {
    match r.secs {
        Some(s) => Some(s),
        None if cfg.default_secs == 0 => None,
        None => Some(cfg.default_secs),
    }
}

/// Messages sent before this time (ms) have expired.
pub fn cutoff(period_secs: u64, now_ms: i64) -> i64 {
    now_ms.saturating_sub((period_secs as i64).saturating_mul(1000))
}

/// For each device of a member that did not hold a purged message it was owed (not its own
/// user's, sent after the device existed), one row per (sender, device): the range and count
/// of that sender's messages it lost.
pub fn undeliverable(
    conversation_id: &str,
    expired: &Expired,
    devices: &[MemberDevice],
    now_ms: i64,
) -> Vec<Undeliverable> {
    let mut out = Vec::new();
    for d in devices {
        let mut by_sender: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        let lost = expired.messages.iter().filter(|(seq, sender, ts)| {
            *seq > d.delivered_seq && *sender != d.user_id && *ts >= d.created_at
        });
        for (seq, sender, _) in lost {
            let e = by_sender.entry(sender.as_str()).or_insert((*seq, *seq, 0));
            e.0 = e.0.min(*seq);
            e.1 = e.1.max(*seq);
            e.2 += 1;
        }
        for (sender, (from, to, n)) in by_sender {
            out.push(Undeliverable {
                user_id: sender.to_string(),
                conversation_id: conversation_id.to_string(),
                device_id: d.device_id.clone(),
                recipient_id: d.user_id.clone(),
                from_seq: from,
                to_seq: to,
                lost: n,
                ts: now_ms,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, user: &str, created: i64, delivered: u64) -> MemberDevice {
        MemberDevice {
            device_id: id.into(),
            user_id: user.into(),
            created_at: created,
            delivered_seq: delivered,
        }
    }

    #[test]
    fn only_what_a_device_was_owed_and_did_not_hold() {
        let e = Expired {
            through: 4,
            messages: vec![
                (1, "a".into(), 10),
                (2, "b".into(), 20),
                (3, "a".into(), 30),
                (4, "c".into(), 40),
            ],
            file_ids: vec![],
        };
        let devices = [
            dev("c1", "c", 0, 1),  // held 1; lost 2 (b), 3 (a); 4 is its own
            dev("a1", "a", 0, 4),  // held everything
            dev("a2", "a", 25, 0), // created after 1 and 2; 3 is its own; lost 4 (c)
        ];
        let rows = undeliverable("k", &e, &devices, 99);
        let got: Vec<(&str, &str, u64, u64, u64)> = rows
            .iter()
            .map(|u| {
                (
                    u.user_id.as_str(),
                    u.device_id.as_str(),
                    u.from_seq,
                    u.to_seq,
                    u.lost,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "c1", 3, 3, 1),
                ("b", "c1", 2, 2, 1),
                ("c", "a2", 4, 4, 1)
            ]
        );
    }

    #[test]
    fn the_period_is_the_conversations_or_the_default() {
        let cfg = RetentionConfig {
            default_secs: 100,
            min_secs: 1,
            sweep_interval_ms: 1,
            batch: 1,
        };
        let own = Retention {
            secs: Some(5),
            expired_through: 0,
        };
        assert_eq!(period(&cfg, &own), Some(5));
        assert_eq!(period(&cfg, &Retention::default()), Some(100));
        let forever = RetentionConfig {
            default_secs: 0,
            ..cfg
        };
        assert_eq!(period(&forever, &Retention::default()), None);
        assert_eq!(cutoff(5, 10_000), 5_000);
    }
}
