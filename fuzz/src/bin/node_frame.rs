//! AFL entry point of the `node_frame` target: every input goes to `parley_fuzz::node_frame::run`
//! (documented there). Built by `cargo afl build --features afl`; run by scripts/fuzz.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        parley_fuzz::node_frame::run(data);
    });
}
