//! Writes every target's seeds to `fuzz/libfuzzer/corpus/<target>/seed-<n>`, the initial
//! corpus of the cargo-fuzz runs: `cargo run -p strata-fuzz --example write_corpus`. With a
//! directory argument they go to `<dir>/<target>/` instead (keep long runs' corpora out of
//! the repository: `... --example write_corpus -- /tmp/strata-corpus`).

use std::io::Write;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = match std::env::args_os().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("libfuzzer").join("corpus"),
    };
    for (name, _) in strata_fuzz::TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in strata_fuzz::seeds::for_target(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed)?;
        }
        writeln!(std::io::stdout(), "{}", dir.display())?;
    }
    Ok(())
}
