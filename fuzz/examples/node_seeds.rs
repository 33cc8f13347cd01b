//! Writes the `node_frame` seed corpus (`parley_fuzz::seeds`) into `corpus/node_frame/`.
//! Run it after changing a bus type or `bus::frame::VERSION`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example node_seeds`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/node_frame");
    std::fs::create_dir_all(&dir)?;
    // Old seeds of kinds that no longer exist would otherwise linger.
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("ok-") || name.starts_with("bad-") {
            std::fs::remove_file(&p)?;
        }
    }
    let corpus = parley_fuzz::seeds::node_corpus();
    for (name, bytes) in &corpus {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} seeds to {}", corpus.len(), dir.display());
    Ok(())
}
