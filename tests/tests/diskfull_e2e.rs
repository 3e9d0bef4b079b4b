//! Disk full against the real binary, on a small tmpfs mounted for the test (needs root and
//! CAP_SYS_ADMIN). Without them the threshold test falls back to a node whose
//! `min_free_disk_space` is above the real free space (the 503 only, not the recovery), and the
//! ENOSPC test says it is skipped: it cannot fill a real filesystem without one of its own.
//!
//! - threshold: free space below `storage.min_free_disk_space` → ingestion 503 with the reason,
//!   queries still 200, `strata_storage_read_only 1`; space freed → writes accepted again;
//! - real ENOSPC (threshold `0B`, so it never triggers first; the filesystem filled to the last
//!   byte): ingestion goes on until a flush fails, then 503 (never 500), read-only in /metrics,
//!   queries still served, every acknowledged sample kept, no half-written or unlisted part;
//!   a deleted filler file brings writes back by themselves, and after a restart everything
//!   acknowledged (before and after) is there exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_e2e::Strata;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().ok()?;
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir, _parent: parent })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn write(node: &Strata, ts: i64, series: usize) -> strata_e2e::Reply {
    let mut body = String::new();
    for i in 0..series {
        body.push_str(&format!(
            "{{\"metric\":{{\"__name__\":\"df_m\",\"s\":\"{i}\",\"pad\":\"{}\"}},\"values\":[{ts}],\"timestamps\":[{ts}]}}\n",
            "x".repeat(40)
        ));
    }
    node.post("/api/v1/import", "application/json", body.as_bytes())
}

fn count(node: &Strata) -> usize {
    let time = now_ms() / 1000 + 60;
    let r = node.get(&format!(
        "/api/v1/query?query=count_over_time(df_m%5B3d%5D)&time={time}"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap() as usize)
        .sum()
}

/// Fills the filesystem of `dir` with a file until at most `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 << 10];
    use std::io::Write;
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

fn wait_for(what: &str, node: &Strata, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; logs:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(dir: &Path, min_free: &str) -> PathBuf {
    let p = dir.join("appliance.toml");
    std::fs::write(
        &p,
        format!("[storage]\ninmemory_flush_interval = \"1s\"\nmin_free_disk_space = \"{min_free}\"\n"),
    )
    .unwrap();
    p
}

#[test]
fn below_min_free_space_ingestion_answers_503_and_recovers() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount("48m") else {
        eprintln!("no tmpfs (not root or no CAP_SYS_ADMIN): falling back to a threshold above the real free space");
        let cfg = config(cfg_dir.path(), "1000000GB");
        let node = Strata::builder().arg("--config").arg(cfg.to_str().unwrap()).start();
        let r = write(&node, now_ms() - 60_000, 1);
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            r.body.contains("read-only") && r.body.contains("min_free_disk_space"),
            "{}",
            r.body
        );
        return;
    };
    let cfg = config(cfg_dir.path(), "16MB");
    let data = fs.dir.join("data");
    let node = Strata::builder()
        .data_dir(&data)
        .arg("--config")
        .arg(cfg.to_str().unwrap())
        .start();
    let base = now_ms() - 60_000;
    assert_eq!(write(&node, base, 10).status, 204);
    let filler = fill(&fs.dir, 8 << 20);
    let mut ts = base;
    let mut last = None;
    wait_for("503 in read-only mode", &node, Duration::from_secs(10), || {
        ts += 1;
        let r = write(&node, ts, 1);
        let done = r.status == 503;
        last = Some(r);
        done
    });
    let body = last.unwrap().body;
    assert!(
        body.contains("read-only") && body.contains("min_free_disk_space"),
        "{body}"
    );
    // Reads still work; the gauge and the counter say why writes do not.
    assert!(count(&node) >= 10);
    let metrics = node.get("/metrics").body;
    assert!(metrics.contains("strata_storage_read_only 1"), "{metrics}");
    assert!(
        metrics.contains("strata_storage_read_only_rejections_total"),
        "{metrics}"
    );
    std::fs::remove_file(filler).unwrap();
    wait_for("writes accepted again", &node, Duration::from_secs(10), || {
        ts += 1;
        write(&node, ts, 1).status == 204
    });
}

/// Series per write in the ENOSPC test; each write adds one sample per series at one timestamp.
const SERIES: usize = 4;

fn write_enospc(node: &Strata, ts: i64) -> strata_e2e::Reply {
    let mut body = String::new();
    for i in 0..SERIES {
        body.push_str(&format!(
            "{{\"metric\":{{\"__name__\":\"enospc_m\",\"s\":\"{i}\",\"pad\":\"{}\"}},\"values\":[{ts}],\"timestamps\":[{ts}]}}\n",
            "y".repeat(64)
        ));
    }
    node.post("/api/v1/import", "application/json", body.as_bytes())
}

/// Every sample of `enospc_m`, per series, in the order the node returns them.
fn read_enospc(node: &Strata) -> BTreeMap<String, Vec<i64>> {
    let time = now_ms() / 1000 + 60;
    let r = node.get(&format!("/api/v1/query?query=enospc_m%5B3d%5D&time={time}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut out = BTreeMap::new();
    for series in r.json()["data"]["result"].as_array().expect("a matrix") {
        let name = series["metric"]["s"].as_str().unwrap().to_string();
        let ts = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect();
        out.insert(name, ts);
    }
    out
}

/// Every acknowledged timestamp is in every series, and no timestamp appears twice. (A refused
/// write may have stored some of its series before the switch: extra timestamps are allowed.)
fn assert_acked_present(node: &Strata, acked: &BTreeSet<i64>, when: &str) {
    let got = read_enospc(node);
    assert_eq!(got.len(), SERIES, "{when}: series {:?}", got.keys());
    for (name, ts) in &got {
        let set: BTreeSet<i64> = ts.iter().copied().collect();
        assert_eq!(set.len(), ts.len(), "{when}: duplicate samples in series {name}");
        let missing: Vec<_> = acked.difference(&set).collect();
        assert!(
            missing.is_empty(),
            "{when}: series {name} lost {} acknowledged samples, first {:?}",
            missing.len(),
            missing.first()
        );
    }
}

/// Fills the filesystem of `dir` to the very last byte (the final bytes one at a time).
fn fill_to_the_last_byte(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5Au8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let mut one = [0x5Au8; 1];
    while f.write_all(&one).is_ok() {
        one[0] ^= 1;
    }
    let _ = f.sync_all();
    path
}

#[test]
fn real_enospc_answers_503_keeps_acknowledged_samples_and_recovers() {
    let cfg_dir = tempfile::tempdir().unwrap();
    // Declared before the node: dropped (unmounted) after it, also when an assertion fails.
    let Some(fs) = Tmpfs::mount("24m") else {
        eprintln!(
            "SKIPPED: no tmpfs (not root or no CAP_SYS_ADMIN); a real ENOSPC needs a filesystem of the test's own"
        );
        return;
    };
    // A threshold of zero never fires before the filesystem is really full.
    let cfg = config(cfg_dir.path(), "0B");
    let data = fs.dir.join("data");
    let start = || {
        Strata::builder()
            .data_dir(&data)
            .arg("--config")
            .arg(cfg.to_str().unwrap())
            .start()
    };
    let mut node = start();
    let base = now_ms() - 3_600_000;
    let mut next = 0i64;
    let mut ts = || {
        next += 1;
        base + next * 1000
    };
    let mut acked = BTreeSet::new();
    for _ in 0..20 {
        let t = ts();
        assert_eq!(write_enospc(&node, t).status, 204);
        acked.insert(t);
    }
    assert_eq!(node.post("/internal/force_flush", "text/plain", b"").status, 200);
    let filler = fill_to_the_last_byte(&fs.dir);

    // Ingestion goes on (samples wait in memory) until a flush hits ENOSPC; then 503.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        let t = ts();
        let r = write_enospc(&node, t);
        match r.status {
            204 => {
                acked.insert(t);
            }
            503 => break r,
            other => panic!("a write on a full disk answered {other}: {}\n{}", r.body, node.logs()),
        }
        assert!(
            Instant::now() < deadline,
            "no 503 within 30 s of filling the disk ({} writes acknowledged); logs:\n{}",
            acked.len(),
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refusal.body.contains("read-only") && refusal.body.contains("no space left"),
        "{}",
        refusal.body
    );
    assert!(
        refusal.json()["errorType"] == "unavailable",
        "Prometheus' error shape: {}",
        refusal.body
    );
    let metrics = node.get("/metrics").body;
    assert!(metrics.contains("strata_storage_read_only 1"), "{metrics}");
    assert!(
        metrics.contains("strata_storage_read_only_transitions_total{to=\"read_only\"} 1"),
        "{metrics}"
    );
    // Still refusing a moment later (flushes keep failing), still serving every acked sample.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(write_enospc(&node, ts()).status, 503);
    assert_acked_present(&node, &acked, "while read-only");
    strata_e2e::check_parts(&data, false);
    assert!(node.get("/health").status == 200);

    // Space comes back: writes resume by themselves, then flush.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = ts();
        let r = write_enospc(&node, t);
        if r.status == 204 {
            acked.insert(t);
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            Instant::now() < deadline,
            "writes did not resume within 15 s of freeing space; logs:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..20 {
        let t = ts();
        assert_eq!(write_enospc(&node, t).status, 204);
        acked.insert(t);
    }
    let metrics = node.get("/metrics").body;
    assert!(metrics.contains("strata_storage_read_only 0"), "{metrics}");
    let r = node.post("/internal/force_flush", "text/plain", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_acked_present(&node, &acked, "after recovery");

    // A clean stop leaves only listed, complete parts; a restart has every acknowledged sample.
    let status = node.stop();
    assert!(status.success(), "{status:?}\n{}", node.logs());
    drop(node);
    strata_e2e::check_parts(&data, true);
    let node = start();
    assert_acked_present(&node, &acked, "after a restart");
    let t = ts();
    assert_eq!(write_enospc(&node, t).status, 204);
    acked.insert(t);
    // New rows become searchable within about a second.
    wait_for("the new write to be searchable", &node, Duration::from_secs(10), || {
        read_enospc(&node).values().all(|ts| ts.contains(&t))
    });
    assert_acked_present(&node, &acked, "a new write after the restart");
}
