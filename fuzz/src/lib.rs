//! Fuzz targets for every decoder that reads bytes Parley does not control.
//!
//! Each target is one plain function, `fn(&[u8]) -> Outcome`, that feeds the bytes to the
//! decoder exactly as the server does and then checks what must hold for any input: no
//! panic, and a round trip or rule check where the decoded value allows one. The function is
//! shared by two drivers, so that the corpus found by the fuzzer keeps guarding the code
//! without it:
//! - `src/bin/<target>.rs`: the AFL entry point (`scripts/fuzz` builds and runs it);
//! - `tests/corpus.rs`: `cargo test` replays every file of `corpus/<target>/` through it.
//!
//! The targets, and the boundary each stands for:
//! - [`client_frame`]: a WebSocket text frame from a client;
//! - [`node_frame`]: a frame on the cluster bus (from another node, or a forged publish);
//! - [`http_bodies`]: an HTTP JSON body (users, sessions, conversations, push targets);
//! - [`config`]: the operator's TOML file.

pub mod client_frame;
pub mod config;
pub mod http_bodies;
pub mod node_frame;
pub mod seeds;

use parley::config::{Config, Limits};
use std::sync::OnceLock;

/// What a target made of one input. Only used to check the seed corpus (`ok-*` files must
/// be accepted, `bad-*` files refused); the fuzzer looks for panics only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The decoder produced a value (and the checks on it held).
    Accepted,
    /// The decoder refused the input with an error, as it should for garbage.
    Refused,
}

/// A target: its name (also its corpus folder, dictionary and binary) and its function.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> Outcome,
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "client_frame",
        run: client_frame::run,
    },
    Target {
        name: "node_frame",
        run: node_frame::run,
    },
    Target {
        name: "http_bodies",
        run: http_bodies::run,
    },
    Target {
        name: "config",
        run: config::run,
    },
];

/// The default limits, parsed once: the rules are checked against what a node runs with,
/// and parsing the embedded TOML on every execution would cost most of the fuzzer's time.
pub fn default_limits() -> &'static Limits {
    static LIMITS: OnceLock<Limits> = OnceLock::new();
    LIMITS.get_or_init(|| {
        Config::load(None)
            .expect("the embedded default config loads")
            .limits
    })
}
