//! What one device holds of one conversation, checked the way the contract states its
//! guarantee: as seen by a client that keeps the highest seq it holds per conversation.
//!
//! Across reconnects the server resumes from the device's stored cursor, which moves only
//! with `received`, so a seq at or below the one held may come again: a redelivery, not an
//! error. The errors are: a seq skipped (not held when a later one arrived, or a stored cursor
//! past what the device holds), and a message frame at or below one already pushed on the same
//! connection (the server pushes each seq once per connection, in order). A retraction comes
//! as a `deleted` frame, in place of a message not yet held or as a notice about one; the
//! sender's own message is held once its ack arrives, and may come back later as a message.

use std::collections::BTreeSet;

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub delivered: u64,
    pub redelivered: u64,
    pub duplicates: u64,
    pub gaps: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.delivered += o.delivered;
        self.redelivered += o.redelivered;
        self.duplicates += o.duplicates;
        self.gaps += o.gaps;
    }
}

#[derive(Debug)]
pub struct Track {
    /// Every seq up to this one is held.
    held: u64,
    /// Where the device started in this conversation (its join): nothing at or below is owed.
    start: u64,
    /// The highest seq pushed on this connection as a message, or stood in for by an ack.
    conn: u64,
    /// Seqs above `held` already accounted for (own acks, retraction notices).
    ahead: BTreeSet<u64>,
    pub group: bool,
    /// A leave is under way: no new operations here; dropped when the server confirms it.
    pub leaving: bool,
}

impl Track {
    pub fn new(start: u64, group: bool) -> Track {
        Track {
            held: start,
            start,
            conn: start,
            ahead: BTreeSet::new(),
            group,
            leaving: false,
        }
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    /// A new connection: `ready` gave the device's stored cursor, where the server resumes.
    pub fn connected(&mut self, cursor: u64, t: &mut Tally) {
        if cursor > self.held {
            // The server counts as delivered what this device never held.
            t.gaps += self.owed(cursor);
            self.held = cursor;
            self.settle();
        }
        self.conn = cursor;
    }

    pub fn message(&mut self, seq: u64, t: &mut Tally) {
        if seq <= self.conn {
            t.duplicates += 1;
            return;
        }
        self.conn = seq;
        self.hold(seq, t);
    }

    /// A `deleted` frame (scope everyone): in place of the next seq, or a notice.
    pub fn deleted(&mut self, seq: u64, t: &mut Tally) {
        if seq == self.held + 1 {
            self.hold(seq, t);
        } else if seq > self.held {
            self.ahead.insert(seq);
        }
    }

    /// The ack of this device's own send: the server stands it in for the message when it is
    /// the next seq of the connection.
    pub fn acked(&mut self, seq: u64) {
        if seq == self.conn + 1 {
            self.conn = seq;
        }
        if seq > self.held {
            self.ahead.insert(seq);
            self.settle();
        }
    }

    /// Seqs up to `last` this device does not hold.
    pub fn owed(&self, last: u64) -> u64 {
        if last <= self.held {
            return 0;
        }
        let known = self.ahead.range(self.held + 1..=last).count() as u64;
        last - self.held - known
    }

    fn hold(&mut self, seq: u64, t: &mut Tally) {
        if seq <= self.held || self.ahead.contains(&seq) {
            t.redelivered += 1;
        } else {
            t.delivered += 1;
        }
        if seq > self.held {
            t.gaps += self.owed(seq - 1);
            self.held = seq;
            self.settle();
        }
    }

    fn settle(&mut self) {
        while self.ahead.first().is_some_and(|s| *s <= self.held + 1) {
            let s = self.ahead.pop_first().unwrap();
            self.held = self.held.max(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(held: u64) -> (Track, Tally) {
        (Track::new(held, false), Tally::default())
    }

    #[test]
    fn in_order_messages_are_delivered_once() {
        let (mut k, mut t) = track(0);
        (1..=5).for_each(|s| k.message(s, &mut t));
        assert_eq!((k.held(), t.delivered, t.gaps, t.duplicates), (5, 5, 0, 0));
        k.message(5, &mut t);
        assert_eq!(t.duplicates, 1);
    }

    #[test]
    fn a_reconnect_may_redeliver_above_the_cursor() {
        let (mut k, mut t) = track(5);
        k.connected(3, &mut t);
        (4..=6).for_each(|s| k.message(s, &mut t));
        assert_eq!(
            (k.held(), t.redelivered, t.delivered, t.duplicates),
            (6, 2, 1, 0)
        );
    }

    #[test]
    fn skipped_seqs_and_a_cursor_past_the_held_are_gaps() {
        let (mut k, mut t) = track(2);
        k.message(5, &mut t);
        assert_eq!((k.held(), t.gaps), (5, 2));
        k.connected(7, &mut t);
        assert_eq!((k.held(), t.gaps), (7, 4));
    }

    #[test]
    fn own_acks_stand_in_for_messages_even_out_of_order() {
        let (mut k, mut t) = track(3);
        k.acked(5);
        k.message(4, &mut t);
        assert_eq!(k.held(), 5);
        k.message(5, &mut t); // the sender's copy, from a catch-up: not a duplicate
        k.acked(6);
        k.message(7, &mut t);
        assert_eq!(
            (k.held(), t.gaps, t.duplicates, t.redelivered),
            (7, 0, 0, 1)
        );
    }

    #[test]
    fn retractions_in_place_or_as_notices() {
        let (mut k, mut t) = track(4);
        k.deleted(6, &mut t); // notice ahead of the device
        k.deleted(5, &mut t); // in place
        assert_eq!((k.held(), t.delivered, t.gaps), (6, 1, 0));
        k.message(5, &mut t); // read before the retraction committed: not a duplicate
        k.message(6, &mut t);
        k.deleted(2, &mut t); // notice of a held one
        assert_eq!((k.held(), t.duplicates, t.gaps), (6, 0, 0));
    }

    #[test]
    fn owed_skips_what_is_accounted_for() {
        let (mut k, _) = track(3);
        k.acked(5);
        assert_eq!(k.owed(6), 2);
        assert_eq!(k.owed(3), 0);
    }
}
