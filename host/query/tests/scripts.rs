//! Runs every `testdata/*.test` PromQL script and reports all failures at once.

use strata_query::promqltest::run_script;

#[test]
fn all_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut failures = Vec::new();
    let mut cases = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable test file");
        match run_script(&text) {
            Ok(n) => cases += n,
            Err(errs) => {
                for e in errs {
                    failures.push(format!("{}: {e}", f.display()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases > 0);
}
