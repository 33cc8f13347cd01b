//! What the soak's tasks share: the population, the conversations with their acked log (seq
//! → message id, which the end check compares storage with), and the counters of operations
//! and errors that the samples and the report read. Everything a single device can own stays
//! in its own task (`device`); this holds only what several tasks need.

use crate::client::Login;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The operations of the workload, each with its share of the total rate (per cent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    DirectSend,
    GroupSend,
    Received,
    Read,
    Upload,
    Download,
    Retract,
    Hide,
    Reconnect,
    Join,
    Leave,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::DirectSend,
        Op::GroupSend,
        Op::Received,
        Op::Read,
        Op::Upload,
        Op::Download,
        Op::Retract,
        Op::Hide,
        Op::Reconnect,
        Op::Join,
        Op::Leave,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::DirectSend => "direct_send",
            Op::GroupSend => "group_send",
            Op::Received => "received",
            Op::Read => "read",
            Op::Upload => "upload_send",
            Op::Download => "download",
            Op::Retract => "retract_everyone",
            Op::Hide => "hide_me",
            Op::Reconnect => "reconnect",
            Op::Join => "join",
            Op::Leave => "leave",
        }
    }

    /// Shares of the total rate; they add up to 100.
    pub fn weight(self) -> u64 {
        match self {
            Op::DirectSend => 32,
            Op::GroupSend => 26,
            Op::Received => 10,
            Op::Read => 6,
            Op::Upload => 4,
            Op::Download => 3,
            Op::Retract => 4,
            Op::Hide => 3,
            Op::Reconnect => 2,
            Op::Join => 5,
            Op::Leave => 5,
        }
    }

    fn index(self) -> usize {
        Op::ALL.iter().position(|o| *o == self).unwrap()
    }
}

/// A small seedable generator (splitmix64): the workload needs cheap reproducible choices,
/// not cryptographic ones.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

/// What the generator knows was stored in one conversation.
#[derive(Default)]
pub struct Log {
    /// Hash of the acked message id at each seq (index seq - 1); 0 where nothing was acked.
    pub ids: Vec<u64>,
    /// Seqs whose retraction (scope everyone) was acked.
    pub retracted: HashSet<u64>,
    /// Seqs a retraction was sent for (acked or not: it may have been applied).
    pub attempted: HashSet<u64>,
}

pub struct Conv {
    pub id: String,
    pub group: bool,
    /// A member since creation that never hides or leaves: storage is read back as this user,
    /// and for groups it is the admin that adds members.
    pub reader: usize,
    /// Members as of the latest membership frame a device saw.
    pub members: AtomicUsize,
    /// Members at the start: leaves stop at four fifths of it, so groups keep their size.
    pub target: usize,
    log: Mutex<Log>,
}

impl Conv {
    pub fn new(id: String, group: bool, reader: usize, members: usize) -> Conv {
        Conv {
            id,
            group,
            reader,
            members: AtomicUsize::new(members),
            target: members,
            log: Mutex::default(),
        }
    }
}

pub fn id_hash(message_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    message_id.hash(&mut h);
    h.finish().max(1)
}

#[derive(Default)]
struct Errors {
    expected: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, u64>,
}

pub struct World {
    pub users: Vec<Login>,
    /// The node each user's device talks to.
    pub urls: Vec<String>,
    pub convs: Vec<Conv>,
    index: HashMap<String, usize>,
    /// The groups each user may join (the group's pool of candidates).
    pub pools_of: Vec<Vec<usize>>,
    pub agent: ureq::Agent,
    /// Whether each device is connected, so the scheduler offers work to online ones.
    online: Vec<AtomicBool>,
    done: [AtomicU64; 11],
    skipped: [AtomicU64; 11],
    /// Distinct messages acked.
    pub acked: AtomicU64,
    pub duplicate_acks: AtomicU64,
    /// Two different message ids acked at one seq.
    pub conflicts: AtomicU64,
    pub forced_disconnects: AtomicU64,
    errors: Mutex<Errors>,
    /// Texts of sends given up after an error: storage may hold them without an ack.
    unconfirmed: Mutex<HashSet<String>>,
}

impl World {
    pub fn new(
        users: Vec<Login>,
        urls: Vec<String>,
        convs: Vec<Conv>,
        pools_of: Vec<Vec<usize>>,
    ) -> World {
        let index = convs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        World {
            online: users.iter().map(|_| AtomicBool::new(false)).collect(),
            users,
            urls,
            convs,
            index,
            pools_of,
            agent: crate::client::agent(),
            done: Default::default(),
            skipped: Default::default(),
            acked: AtomicU64::new(0),
            duplicate_acks: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            forced_disconnects: AtomicU64::new(0),
            errors: Mutex::default(),
            unconfirmed: Mutex::default(),
        }
    }

    pub fn conv_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The node of user `u`.
    pub fn url_of(&self, u: usize) -> &str {
        &self.urls[u % self.urls.len()]
    }

    pub fn set_online(&self, u: usize, online: bool) {
        self.online[u].store(online, Ordering::Relaxed);
    }

    pub fn is_online(&self, u: usize) -> bool {
        self.online[u].load(Ordering::Relaxed)
    }

    pub fn done(&self, op: Op) {
        self.done[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn skip(&self, op: Op) {
        self.skipped[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn ops_done(&self) -> u64 {
        self.done.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// (done, skipped) per operation, by name.
    pub fn op_counts(&self) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
        let read = |a: &[AtomicU64; 11]| {
            Op::ALL
                .iter()
                .map(|o| (o.name(), a[o.index()].load(Ordering::Relaxed)))
                .collect()
        };
        (read(&self.done), read(&self.skipped))
    }

    /// Counts an error under `what:code`; `expected` ones are part of the workload (a retry
    /// after `unavailable`, a frame for a conversation just left, a purged file).
    pub fn error(&self, what: &str, code: &str, expected: bool) {
        let mut e = self.errors.lock().unwrap();
        let map = if expected {
            &mut e.expected
        } else {
            &mut e.unexpected
        };
        *map.entry(format!("{what}:{code}")).or_default() += 1;
    }

    /// (expected, unexpected) errors by `what:code`.
    pub fn errors(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let e = self.errors.lock().unwrap();
        (e.expected.clone(), e.unexpected.clone())
    }

    pub fn record_ack(&self, conv: usize, seq: u64, message_id: &str, duplicate: bool) {
        let h = id_hash(message_id);
        let mut log = self.convs[conv].log.lock().unwrap();
        if log.ids.len() < seq as usize {
            log.ids.resize(seq as usize, 0);
        }
        let slot = &mut log.ids[seq as usize - 1];
        if *slot == 0 {
            *slot = h;
            self.acked.fetch_add(1, Ordering::Relaxed);
        } else if *slot != h {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        if duplicate {
            self.duplicate_acks.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn gave_up(&self, text: &str) {
        self.unconfirmed.lock().unwrap().insert(text.to_string());
    }

    pub fn unconfirmed(&self, text: &str) -> bool {
        self.unconfirmed.lock().unwrap().contains(text)
    }

    pub fn retraction_sent(&self, conv: usize, seq: u64) {
        self.convs[conv].log.lock().unwrap().attempted.insert(seq);
    }

    pub fn retracted(&self, conv: usize, seq: u64) {
        self.convs[conv].log.lock().unwrap().retracted.insert(seq);
    }

    /// The highest acked seq of every conversation.
    pub fn last_seqs(&self) -> Vec<u64> {
        self.convs
            .iter()
            .map(|c| c.log.lock().unwrap().ids.len() as u64)
            .collect()
    }

    pub fn with_log<R>(&self, conv: usize, f: impl FnOnce(&Log) -> R) -> R {
        f(&self.convs[conv].log.lock().unwrap())
    }
}
