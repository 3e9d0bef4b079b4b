//! Disk full against the real binary, on a small tmpfs mounted for the test (needs root and
//! CAP_SYS_ADMIN; without them the tests fall back to a node whose `min_free_disk_space` is
//! above the real free space, which checks the 503 but not the recovery — the storage-level
//! test `host/storage/tests/durability.rs` covers recovery by threshold in every environment).
//!
//! - threshold: free space below `storage.min_free_disk_space` → ingestion 503 with the reason,
//!   queries still 200, `strata_storage_read_only 1`; space freed → writes accepted again;
//!
//! The ENOSPC path (threshold 0, filesystem filled to the last byte) is tested at the storage
//! level on a real tmpfs: `host/storage/tests/durability.rs`.

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
