//! The stable fuzz smoke run (part of `cargo test --workspace`): every target over its seed
//! corpus, over the regression inputs in `fuzz/regressions/<target>/` (findings of longer runs),
//! and over a few thousand mutated inputs. A panic fails the test and prints the input.
//!
//! `STRATA_FUZZ_ITERS` changes the number of mutated inputs per target (default 5000; the
//! on-disk part targets use a tenth, as each input writes a part directory).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use strata_fuzz::mutate::Mutator;
use strata_fuzz::{TARGETS, seeds};

fn iterations(name: &str) -> usize {
    let base = std::env::var("STRATA_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000usize);
    if name.ends_with("_part") { base / 10 } else { base }
}

fn regressions(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(name);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten().filter_map(|e| std::fs::read(e.path()).ok()).collect()
}

fn run(name: &str, body: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
        panic!(
            "fuzz target {name} panicked on input ({} bytes): {:02x?}",
            input.len(),
            &input[..input.len().min(512)]
        );
    }
}

#[test]
fn every_target_survives_seeds_regressions_and_mutations() {
    for (i, &(name, body)) in TARGETS.iter().enumerate() {
        let seeds = seeds::for_target(name);
        assert!(!seeds.is_empty(), "target {name} has no seeds");
        for s in &seeds {
            run(name, body, s);
        }
        for r in regressions(name) {
            run(name, body, &r);
        }
        let mut m = Mutator::new(0x5EED_0000 + i as u64, seeds);
        for _ in 0..iterations(name) {
            let input = m.next_input();
            run(name, body, &input);
        }
    }
}

#[test]
fn templates_are_valid() {
    // The part targets only mean something if their undamaged templates open.
    assert_eq!(seeds::data_part_template().len(), 5);
    let (name, files) = seeds::mergeset_part_template();
    assert_eq!(name.len(), 16, "{name}");
    assert_eq!(files.len(), 5);
    // The WAL seed is a whole version-2 segment: three writes holding five series' samples.
    let wal = seeds::for_target("wal_segment").remove(0);
    let (records, torn) = strata_storage::wal::read_segment(&wal);
    assert!(!torn, "the WAL seed reads to its end");
    assert_eq!(records.len(), 5, "{records:?}");
    assert_eq!(
        records[2].timestamps,
        [3],
        "the write that refers to its series by ref only"
    );
    assert_eq!(
        records[2].labels,
        [
            ("__name__".to_string(), "up".to_string()),
            ("job".to_string(), "node".to_string())
        ]
    );
    // The cluster seeds reach the storage: the write is accepted, the search finds both series.
    let cluster = seeds::for_target("cluster_rpc");
    for seed in &cluster {
        let frames = strata_fuzz::cluster::respond(seed).expect("a seed holds a request");
        assert_eq!(frames[0][0], 0, "status OK for seed {:02x?}", &seed[..8]);
    }
    // Written rows become searchable within about a second (the raw-row buffer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let search = strata_fuzz::cluster::respond(&cluster[2]).expect("the search");
        let found: usize = search.iter().map(|f| f.len()).sum();
        if found > 60 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the search did not find the written series ({found} bytes)"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
