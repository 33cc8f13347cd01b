//! The corpus as a regression suite: every file of `corpus/<target>/` goes through the same
//! function the fuzzer runs, so what the fuzzer once found keeps being checked by a plain
//! `cargo test`, without AFL.
//!
//! A file's name says what it must do: `ok-*` must be accepted, `bad-*` refused; any other
//! name (inputs the fuzzer found, copied in from its queue) must only not panic. Each target's
//! corpus must hold both kinds, so the success path and the error path are both exercised.

use parley_fuzz::{seeds, Outcome, TARGETS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn replay(target: &str) {
    let t = TARGETS
        .iter()
        .find(|t| t.name == target)
        .expect("a known target");
    let corpus = files(&corpus_dir(target));
    let mut wrong = Vec::new();
    let (mut ok, mut bad) = (0, 0);
    for (name, bytes) in &corpus {
        // A panic here names the file: run the target on it alone to see why.
        eprintln!("{target}: {name}");
        let outcome = (t.run)(bytes);
        if name.starts_with("ok-") {
            ok += 1;
            if outcome != Outcome::Accepted {
                wrong.push(format!("{name}: {outcome:?}, expected Accepted"));
            }
        } else if name.starts_with("bad-") {
            bad += 1;
            if outcome != Outcome::Refused {
                wrong.push(format!("{name}: {outcome:?}, expected Refused"));
            }
        }
    }
    assert!(wrong.is_empty(), "{target}: {wrong:#?}");
    assert!(
        ok > 0 && bad > 0,
        "{target}: needs ok-* and bad-* seeds ({ok}, {bad})"
    );
}

#[test]
fn client_frame_corpus() {
    replay("client_frame");
}

#[test]
fn node_frame_corpus() {
    replay("node_frame");
}

#[test]
fn http_bodies_corpus() {
    replay("http_bodies");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn every_target_has_a_replay_test_a_corpus_and_a_dictionary() {
    let tested = ["client_frame", "node_frame", "http_bodies", "config"];
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, tested, "a new target needs its replay test above");
    for name in names {
        assert!(corpus_dir(name).is_dir(), "corpus/{name}/ is missing");
        let dict = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dict/{name}.dict"));
        // Bus frames are binary postcard: a dictionary of tokens would not help.
        assert_eq!(dict.is_file(), name != "node_frame", "dict/{name}.dict");
    }
}

/// The committed `node_frame` seeds are what the encoder makes today, and there is one for
/// every kind of frame. After a change of a bus type or of `VERSION`, this fails until the
/// seeds are regenerated: `cargo run --example node_seeds`.
#[test]
fn node_frame_seeds_are_current_and_cover_every_kind() {
    let on_disk: Vec<(String, Vec<u8>)> = files(&corpus_dir("node_frame"))
        .into_iter()
        .filter(|(n, _)| n.starts_with("ok-") || n.starts_with("bad-"))
        .collect();
    let mut made = seeds::node_corpus();
    made.sort();
    assert_eq!(
        on_disk.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        made.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "seed names differ: run `cargo run --example node_seeds`"
    );
    for ((name, disk), (_, now)) in on_disk.iter().zip(&made) {
        assert_eq!(
            disk, now,
            "{name} is stale: run `cargo run --example node_seeds`"
        );
    }
    let kinds: BTreeSet<&str> = seeds::node_frames().iter().map(seeds::kind).collect();
    let all: BTreeSet<&str> = seeds::KINDS.iter().copied().collect();
    assert_eq!(kinds, all, "every kind of frame needs exactly one seed");
    assert_eq!(
        seeds::node_frames().len(),
        seeds::KINDS.len(),
        "one seed per kind"
    );
}
