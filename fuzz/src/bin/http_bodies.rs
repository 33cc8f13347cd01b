//! AFL entry point of the `http_bodies` target: every input goes to `parley_fuzz::http_bodies::run`
//! (documented there). Built by `cargo afl build --features afl`; run by scripts/fuzz.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        parley_fuzz::http_bodies::run(data);
    });
}
