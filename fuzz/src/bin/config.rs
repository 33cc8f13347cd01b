//! AFL entry point of the `config` target: every input goes to `parley_fuzz::config::run`
//! (documented there). Built by `cargo afl build --features afl`; run by scripts/fuzz.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        parley_fuzz::config::run(data);
    });
}
