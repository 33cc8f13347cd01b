//! The end check of storage: every conversation read back over HTTP as its reader (a member
//! since creation that never hides or leaves) and compared with what was acked: seqs gapless
//! from 1, each acked message stored once at its acked seq, nothing stored that was not
//! acked (unless its send was given up after an error: then it may have been stored before),
//! and every acked retraction applied.

use super::http;
use super::world::{id_hash, World};
use serde_json::{json, Value};

#[derive(Default)]
pub struct StoreCheck {
    conversations: u64,
    messages: u64,
    tombstones: u64,
    /// Acked, not stored.
    missing: u64,
    /// Stored, never acked (and not a given-up send).
    unacked: u64,
    /// Stored once, for a send that was given up after an error.
    unconfirmed: u64,
    /// Another message id at an acked seq.
    mismatched: u64,
    /// Holes or repeats in the stored seqs.
    gaps: u64,
    /// An acked retraction not applied, or a tombstone no retraction was sent for.
    retraction_errors: u64,
    read_errors: u64,
    examples: Vec<String>,
}

impl StoreCheck {
    pub fn ok(&self) -> bool {
        self.missing
            + self.unacked
            + self.mismatched
            + self.gaps
            + self.retraction_errors
            + self.read_errors
            == 0
    }

    fn add(&mut self, o: StoreCheck) {
        self.conversations += o.conversations;
        self.messages += o.messages;
        self.tombstones += o.tombstones;
        self.missing += o.missing;
        self.unacked += o.unacked;
        self.unconfirmed += o.unconfirmed;
        self.mismatched += o.mismatched;
        self.gaps += o.gaps;
        self.retraction_errors += o.retraction_errors;
        self.read_errors += o.read_errors;
        let room = 10usize.saturating_sub(self.examples.len());
        self.examples.extend(o.examples.into_iter().take(room));
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.ok(),
            "conversations": self.conversations, "messages": self.messages, "tombstones": self.tombstones,
            "missing": self.missing, "unacked": self.unacked, "unconfirmed": self.unconfirmed,
            "mismatched": self.mismatched, "gaps": self.gaps,
            "retraction_errors": self.retraction_errors, "read_errors": self.read_errors,
            "examples": self.examples,
        })
    }

    fn note(&mut self, conv: &str, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(format!("{conv}: {what}"));
        }
    }
}

/// Reads every conversation back on `threads` threads (blocking).
pub fn check(world: &World, threads: usize) -> StoreCheck {
    let n = world.convs.len();
    let mut total = StoreCheck::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                s.spawn(move || {
                    let mut part = StoreCheck::default();
                    for i in (t..n).step_by(threads.max(1)) {
                        part.add(conversation(world, i));
                    }
                    part
                })
            })
            .collect();
        for h in handles {
            total.add(h.join().unwrap());
        }
    });
    total
}

fn conversation(world: &World, i: usize) -> StoreCheck {
    let conv = &world.convs[i];
    let token = &world.users[conv.reader].token;
    let mut c = StoreCheck {
        conversations: 1,
        ..Default::default()
    };
    let mut after = 0u64;
    loop {
        let page = match http::messages(&world.agent, &world.urls[0], token, &conv.id, after, 200) {
            Ok(p) => p,
            Err(e) => {
                c.read_errors += 1;
                c.note(&conv.id, format!("read after {after}: {e}"));
                break;
            }
        };
        if page.is_empty() {
            break;
        }
        for m in &page {
            let seq = m["seq"].as_u64().unwrap_or(0);
            if seq != after + 1 {
                c.gaps += 1;
                c.note(&conv.id, format!("seq {seq} after {after}"));
            }
            after = after.max(seq);
            stored(world, i, seq, m, &mut c);
        }
    }
    let acked_above = world.with_log(i, |l| {
        l.ids
            .iter()
            .skip(after as usize)
            .filter(|h| **h != 0)
            .count()
    });
    if acked_above > 0 {
        c.missing += acked_above as u64;
        c.note(
            &conv.id,
            format!("{acked_above} acked above the last stored seq {after}"),
        );
    }
    c
}

/// Compares one stored message with the acked log.
fn stored(world: &World, i: usize, seq: u64, m: &Value, c: &mut StoreCheck) {
    let conv = &world.convs[i].id;
    c.messages += 1;
    let deleted = m["deleted"].as_bool().unwrap_or(false);
    c.tombstones += deleted as u64;
    let (acked, retracted, attempted) = world.with_log(i, |l| {
        let h = l
            .ids
            .get((seq as usize).wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        (h, l.retracted.contains(&seq), l.attempted.contains(&seq))
    });
    let id = m["message_id"].as_str().unwrap_or("");
    if acked == 0 {
        if m["text"].as_str().is_some_and(|t| world.unconfirmed(t)) {
            c.unconfirmed += 1;
        } else {
            c.unacked += 1;
            c.note(
                conv,
                format!("seq {seq} stored but never acked ({})", m["text"]),
            );
        }
    } else if id_hash(id) != acked {
        c.mismatched += 1;
        c.note(conv, format!("seq {seq} holds {id}, not the acked message"));
    }
    if (retracted && !deleted) || (deleted && !attempted) {
        c.retraction_errors += 1;
        c.note(
            conv,
            format!("seq {seq}: deleted {deleted}, retraction acked {retracted}"),
        );
    }
}
