//! docs/plugins.md's guide, followed by a machine: the `Cargo.toml` and `lib.rs` it shows are
//! put into a scratch copy of the plugins workspace, built for wasm32-wasip2, loaded and called.
//! If the guide's code stops compiling or working, this fails.
//!
//! Needs `cargo` and the rustup target wasm32-wasip2 (scripts/build-plugins adds it); the
//! build reuses `$PLUGINS_TARGET_DIR` (default plugins/target) so it is quick after
//! scripts/build-plugins.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_ingest::MetricBatch;
use strata_plugin_host::{HostOptions, PluginHost};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The body of the first fenced block of `lang` after the line containing `after`.
fn block<'a>(doc: &'a str, after: &str, lang: &str) -> &'a str {
    let start = doc
        .find(after)
        .unwrap_or_else(|| panic!("docs/plugins.md lost {after:?}"));
    let rest = &doc[start..];
    let open = format!("```{lang}\n");
    let body = &rest[rest.find(&open).expect("fenced block") + open.len()..];
    &body[..body.find("```").expect("closing fence")]
}

#[test]
fn the_guide_plugin_builds_loads_and_parses() {
    let repo = repo();
    let doc = std::fs::read_to_string(repo.join("docs/plugins.md")).unwrap();
    let manifest = block(&doc, "then set `plugins/myproto/Cargo.toml`", "toml");
    let lib = block(&doc, "## 2. Implement the trait", "rust");
    let test = block(&doc, "## 3. Test natively", "rust");

    // A scratch workspace shaped like plugins/: same workspace keys, same lock file.
    let dir = tempfile::tempdir().unwrap();
    let ws = std::fs::read_to_string(repo.join("plugins/Cargo.toml")).unwrap();
    let ws = ws
        .lines()
        .map(|l| {
            if l.starts_with("members") {
                "members = [\"myproto\"]".to_string()
            } else if l.starts_with("strata-plugin-sdk") {
                format!(
                    "strata-plugin-sdk = {{ path = {:?} }}",
                    repo.join("plugins/sdk").display().to_string()
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("Cargo.toml"), ws).unwrap();
    std::fs::copy(repo.join("plugins/Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let krate = dir.path().join("myproto");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        format!("{lib}\n#[cfg(test)]\nmod tests {{\n    use super::*;\n{test}}}\n"),
    )
    .unwrap();

    let target = std::env::var_os("PLUGINS_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("plugins/target"));
    let build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(dir.path().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cannot run cargo");
    assert!(
        build.status.success(),
        "the guide's plugin does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    // Move the component out of the shared target dir: scripts/build-plugins copies every
    // component it finds there into plugins/dist/, and this one is not a bundled plugin.
    let built = target.join("wasm32-wasip2/release/strata_myproto.wasm");
    let wasm = dir.path().join("strata_myproto.wasm");
    std::fs::copy(&built, &wasm).unwrap();
    std::fs::remove_file(&built).unwrap();

    let mut spec = common::spec("myproto", "strata_influx");
    spec.path = wasm;
    let host = PluginHost::load(HostOptions::default(), vec![spec]).unwrap();
    assert_eq!(
        host.http_mounts(),
        vec![("myproto".to_string(), "/api/v1/import/myproto".to_string())]
    );
    let mut out = MetricBatch::new();
    host.ingest_plugin("myproto")
        .unwrap()
        .parse_into(&common::params(&[("job", "demo")]), b"up 1\nload 0.5", 7, &mut out)
        .unwrap();
    assert_eq!(out.series_count(), 2);
    assert_eq!(out.series(1).values(), &[0.5]);
    assert!(out.series(0).labels().any(|l| l == ("job", "demo")));
}
