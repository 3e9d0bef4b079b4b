//! Crash loop against the real binary: ingest continuously, `kill -9` at random moments (some
//! while a forced merge runs), restart on the same data, 20 rounds. After every restart:
//! - with `--storage-wal`: every acknowledged sample is there;
//! - without it: every sample acknowledged more than the flush window before the kill is there
//!   (the documented loss window: `inmemory_flush_interval` plus the raw-row tick);
//! - no sample is there twice, none has a wrong value, none was never sent;
//! - every part `parts.json` lists is complete (metadata.json present) while the node is down,
//!   and after a clean stop no part directory is left unlisted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_e2e::Strata;

const SERIES: usize = 8;
const ROUNDS: usize = 20;

/// A tiny xorshift PRNG: the kill moments vary per round, reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// One acknowledged write: its timestamp (shared by all series) and when the 204 arrived.
#[derive(Clone, Copy)]
struct Ack {
    ts: i64,
    at: Instant,
}

fn body(ts: i64) -> String {
    let mut s = String::new();
    for i in 0..SERIES {
        s.push_str(&format!(
            "{{\"metric\":{{\"__name__\":\"crash_m\",\"series\":\"s{i}\"}},\"values\":[{}],\"timestamps\":[{ts}]}}\n",
            ts % 1_000_000 + i as i64
        ));
    }
    s
}

/// Writes one request after another until `stop`; records each acknowledged timestamp.
fn writer(url: String, next_ts: Arc<Mutex<i64>>, acks: Arc<Mutex<Vec<Ack>>>, stop: Arc<AtomicBool>) {
    let http = agent();
    while !stop.load(Ordering::Relaxed) {
        let ts = {
            let mut t = next_ts.lock().unwrap();
            *t += 1;
            *t
        };
        match http.post(&format!("{url}/api/v1/import")).send(body(ts).as_bytes()) {
            Ok(r) if r.status() == 204 => acks.lock().unwrap().push(Ack { ts, at: Instant::now() }),
            // Killed mid-request, or refused: not acknowledged, so not expected.
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// series label -> timestamps (with duplicates kept) and whether every value is the one sent.
fn read_back(node: &Strata) -> BTreeMap<String, Vec<i64>> {
    let time = now_ms() / 1000 + 60;
    let reply = node.get(&format!("/api/v1/query?query=crash_m%5B3d%5D&time={time}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    let mut out = BTreeMap::new();
    for series in json["data"]["result"].as_array().expect("a matrix") {
        let name = series["metric"]["series"].as_str().unwrap_or_default().to_string();
        let idx: i64 = name.trim_start_matches('s').parse().unwrap();
        let mut ts = Vec::new();
        for pair in series["values"].as_array().unwrap() {
            let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
            assert_eq!(v, (t % 1_000_000 + idx) as f64, "series {name} at {t}: wrong value");
            ts.push(t);
        }
        out.insert(name, ts);
    }
    out
}

/// `run_ms`: each round ingests for a random time in this range (ms) before the kill.
fn crash_loop(wal: bool, seed: u64, run_ms: (u64, u64)) {
    let keep = tempfile::tempdir().unwrap();
    let data = keep.path().join("data");
    let config = keep.path().join("appliance.toml");
    std::fs::write(
        &config,
        // Checkpoints every second too, so that kills also land during rotations.
        "[storage]\ninmemory_flush_interval = \"1s\"\nwal_checkpoint_interval = \"1s\"\nmin_free_disk_space = \"1MB\"\n",
    )
    .unwrap();
    let mut rng = Rng(seed);
    // Timestamps: one per request, an hour back so none is "in the future" or out of retention.
    let next_ts = Arc::new(Mutex::new(now_ms() - 3_600_000));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::new(Mutex::new(Vec::new()));
    // Acks whose samples must be present (checked against every later restart).
    let mut required: BTreeSet<i64> = BTreeSet::new();
    let mut every_acked: BTreeSet<i64> = BTreeSet::new();
    let mut sent_max = 0i64;
    // Without the WAL: what a crash may lose (flush interval + raw-row tick + slack for a busy CI).
    let window = Duration::from_secs(6);
    for round in 0..ROUNDS {
        let mut b = Strata::builder()
            .data_dir(&data)
            .arg("--config")
            .arg(config.to_str().unwrap());
        if wal {
            b = b.arg("--storage-wal");
        }
        let mut node = b.start();
        // What the previous rounds left must be there, once.
        let got = read_back(&node);
        for (name, ts) in &got {
            let set: BTreeSet<i64> = ts.iter().copied().collect();
            assert_eq!(set.len(), ts.len(), "round {round}: duplicate samples in {name}");
            for t in &set {
                assert!(*t <= sent_max && *t > 0, "round {round}: {name} has {t}, never sent");
            }
            let missing: Vec<_> = required.difference(&set).take(5).collect();
            assert!(
                missing.is_empty(),
                "round {round} (wal={wal}): {name} lost acknowledged samples, e.g. {missing:?} of {}",
                required.len()
            );
        }
        if !required.is_empty() {
            assert_eq!(got.len(), SERIES, "round {round}: series missing");
        }

        // Ingest for a random while, sometimes with a forced merge running, then kill -9.
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let (url, n, a, s) = (node.base_url(), next_ts.clone(), acks.clone(), stop.clone());
            std::thread::spawn(move || writer(url, n, a, s))
        };
        let run = Duration::from_millis(run_ms.0 + rng.below(run_ms.1 - run_ms.0));
        let merge_at = (rng.below(3) == 0).then(|| run.saturating_sub(Duration::from_millis(rng.below(150))));
        let started = Instant::now();
        let mut merger = None;
        while started.elapsed() < run {
            if let Some(at) = merge_at
                && merger.is_none()
                && started.elapsed() >= at
            {
                let url = node.base_url();
                merger = Some(std::thread::spawn(move || {
                    let _ = agent().post(&format!("{url}/internal/force_merge")).send(&[][..]);
                }));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        node.signal("KILL");
        let killed_at = Instant::now();
        node.wait_exit(Duration::from_secs(10)).expect("killed node exits");
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        if let Some(m) = merger {
            let _ = m.join();
        }
        sent_max = *next_ts.lock().unwrap();
        for a in acks.lock().unwrap().drain(..) {
            every_acked.insert(a.ts);
            if wal || killed_at.duration_since(a.at) > window {
                required.insert(a.ts);
            }
        }
        // Parts listed while the node is down must all be complete.
        strata_e2e::check_parts(&data, false);
        drop(node);
    }
    assert!(required.len() > 100, "too few acknowledged writes: {}", required.len());

    // A last clean run: everything required is there, and a clean stop leaves no orphans.
    let mut b = Strata::builder()
        .data_dir(&data)
        .arg("--config")
        .arg(config.to_str().unwrap());
    if wal {
        b = b.arg("--storage-wal");
    }
    let mut node = b.start();
    let got = read_back(&node);
    for ts in got.values() {
        let set: BTreeSet<i64> = ts.iter().copied().collect();
        assert!(required.is_subset(&set));
    }
    let status = node.stop();
    assert!(status.success(), "{status:?}");
    strata_e2e::check_parts(&data, true);
    eprintln!(
        "crash loop wal={wal}: {ROUNDS} rounds, {} writes acknowledged, {} required after their crash",
        every_acked.len(),
        required.len()
    );
}

#[test]
fn crash_loop_with_wal_keeps_every_acknowledged_sample() {
    crash_loop(true, 0x9e37_79b9_7f4a_7c15, (300, 2500));
}

#[test]
fn crash_loop_without_wal_loses_at_most_the_flush_window() {
    // Rounds long enough that part of each round's writes is older than the loss window.
    crash_loop(false, 0x2545_f491_4f6c_dd1d, (1500, 8500));
}
