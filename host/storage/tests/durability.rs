//! Crash and disk-full behaviour of the `Storage` facade, in process.
//!
//! A crash is simulated by copying the data directory while the storage runs (after the
//! writes were acknowledged): the copy holds exactly what was on disk at that instant, like
//! the directory after `kill -9`. Disk full is simulated with `min_free_disk_bytes` above the
//! real free space (the e2e test `diskfull_e2e` uses a real small filesystem when it can).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_storage::data::TableOptions;
use strata_storage::index::{IndexOptions, Label, MatchOp, TagFilter};
use strata_storage::{Storage, StorageError, StorageOptions, Tenant, TimeRange};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn open(dir: &Path, wal: bool, flush: Duration) -> Storage {
    Storage::open(StorageOptions {
        data_path: dir.to_path_buf(),
        table: TableOptions {
            wal,
            inmemory_flush_interval: flush,
            wal_checkpoint_interval: flush,
            pending_rows_flush_interval: Duration::from_millis(50),
            min_free_disk_bytes: 0,
            ..TableOptions::default()
        },
        index: IndexOptions::default(),
    })
    .unwrap()
}

fn add(s: &Storage, series: usize, ts: i64, v: f64) -> Result<(), StorageError> {
    let name = format!("s{series}");
    let labels = [
        Label {
            name: "__name__",
            value: "m",
        },
        Label {
            name: "series",
            value: &name,
        },
    ];
    s.add_series(Tenant::default(), &labels, &[ts], &[v])
}

/// (series label, timestamp) pairs found, with duplicates kept.
fn read_all(s: &Storage) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    let filters = [TagFilter::new("__name__", MatchOp::Equal, "m")];
    let tr = TimeRange {
        min: 0,
        max: i64::MAX / 2,
    };
    s.search(Tenant::default(), &filters, tr, 1_000_000, &mut |name, ts, vals| {
        let label = name
            .labels
            .iter()
            .find(|(n, _)| n == "series")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        for (t, v) in ts.iter().zip(vals) {
            out.push((label.clone(), *t, *v));
        }
        Ok(())
    })
    .unwrap();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_name() != "flock.lock" {
            // A file can vanish while we copy (a merge or a checkpoint removed it): like a crash
            // a moment later, which the engine must survive too.
            let _ = std::fs::copy(e.path(), &dst);
        }
    }
}

#[test]
fn wal_keeps_acknowledged_samples_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A flush interval far longer than the test: nothing reaches parts except through the WAL.
    let s = open(&data, true, Duration::from_secs(3600));
    assert!(s.wal_enabled());
    let base = now_ms() - 60_000;
    for i in 0..200 {
        add(&s, i % 20, base + i as i64, i as f64).unwrap();
    }
    s.sync_wal().unwrap();
    let crashed = dir.path().join("crashed");
    copy_dir(&data, &crashed);
    drop(s);

    let s = open(&crashed, true, Duration::from_secs(3600));
    let got = read_all(&s);
    assert_eq!(got.len(), 200, "every acknowledged sample, once");
    for i in 0..200 {
        assert!(got.contains(&(format!("s{}", i % 20), base + i as i64, i as f64)));
    }
    // The replayed log was flushed and removed: a second restart replays nothing new.
    s.close().unwrap();
    let s = open(&crashed, false, Duration::from_secs(3600));
    assert_eq!(read_all(&s).len(), 200);
    let wal_files: Vec<_> = std::fs::read_dir(crashed.join("wal")).unwrap().collect();
    assert!(wal_files.is_empty(), "{wal_files:?}");
}

#[test]
fn without_wal_a_crash_loses_only_unflushed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = open(&data, false, Duration::from_secs(3600));
    let base = now_ms() - 60_000;
    for i in 0..100 {
        add(&s, i % 10, base + i as i64, 1.0).unwrap();
    }
    s.force_flush().unwrap();
    for i in 100..150 {
        add(&s, i % 10, base + i as i64, 1.0).unwrap();
    }
    let crashed = dir.path().join("crashed");
    copy_dir(&data, &crashed);
    drop(s);
    let s = open(&crashed, false, Duration::from_secs(3600));
    let got = read_all(&s);
    // Everything before the flush, nothing after it (it was only in memory).
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|(_, t, _)| *t < base + 100));
}

#[test]
fn replaying_twice_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = open(&data, true, Duration::from_secs(3600));
    let base = now_ms() - 60_000;
    for i in 0..50 {
        add(&s, i % 5, base + i as i64, 2.0).unwrap();
    }
    s.sync_wal().unwrap();
    // Flushed to parts AND still in the log: a crash between flush and segment removal.
    s.force_flush().unwrap();
    let crashed = dir.path().join("crashed");
    copy_dir(&data, &crashed);
    drop(s);
    let s = open(&crashed, true, Duration::from_secs(3600));
    assert_eq!(read_all(&s).len(), 50, "no duplicates after replaying flushed samples");
    s.force_merge("").unwrap();
    assert_eq!(read_all(&s).len(), 50);
}

#[test]
fn torn_wal_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = open(&data, true, Duration::from_secs(3600));
    let base = now_ms() - 60_000;
    for i in 0..10 {
        add(&s, i, base, 3.0).unwrap();
    }
    s.sync_wal().unwrap();
    let crashed = dir.path().join("crashed");
    copy_dir(&data, &crashed);
    drop(s);
    // Half a record at the end: a crash in the middle of a write nobody acknowledged.
    let seg = std::fs::read_dir(crashed.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&seg, bytes).unwrap();
    let s = open(&crashed, true, Duration::from_secs(3600));
    assert_eq!(read_all(&s).len(), 10);
}

#[test]
fn checkpoints_truncate_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = open(&data, true, Duration::from_millis(300));
    let base = now_ms() - 60_000;
    for i in 0..100 {
        add(&s, i % 7, base + i as i64, 1.0).unwrap();
        s.sync_wal().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let segs: Vec<_> = std::fs::read_dir(data.join("wal")).unwrap().flatten().collect();
        let bytes: u64 = segs.iter().map(|e| e.metadata().unwrap().len()).sum();
        // A fresh segment holds only its header.
        if segs.len() == 1 && bytes == strata_storage::wal::format::SEGMENT_HEADER as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the WAL was not truncated: {} segments, {bytes} bytes",
            segs.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read_all(&s).len(), 100);
}

#[test]
fn wal_checkpoints_follow_their_own_interval_not_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Storage::open(StorageOptions {
        data_path: data.clone(),
        table: TableOptions {
            wal: true,
            inmemory_flush_interval: Duration::from_millis(200),
            wal_checkpoint_interval: Duration::from_secs(3600),
            pending_rows_flush_interval: Duration::from_millis(50),
            min_free_disk_bytes: 0,
            ..TableOptions::default()
        },
        index: IndexOptions::default(),
    })
    .unwrap();
    let base = now_ms() - 60_000;
    for i in 0..100 {
        add(&s, i % 7, base + i as i64, 1.0).unwrap();
        s.sync_wal().unwrap();
    }
    // Five flush intervals: the parts are flushed, but the segment (and the series defined in
    // it) stays until the checkpoint interval is up.
    std::thread::sleep(Duration::from_secs(1));
    let segs: Vec<_> = std::fs::read_dir(data.join("wal")).unwrap().flatten().collect();
    assert_eq!(segs.len(), 1, "one segment");
    let bytes = segs[0].metadata().unwrap().len();
    assert!(
        bytes > strata_storage::wal::format::SEGMENT_HEADER as u64,
        "the segment was truncated early ({bytes} bytes)"
    );
    assert_eq!(read_all(&s).len(), 100);
    // force_flush puts everything in parts, so it also drops what the log held.
    s.force_flush().unwrap();
    let segs: Vec<_> = std::fs::read_dir(data.join("wal")).unwrap().flatten().collect();
    assert_eq!(segs.len(), 1, "one fresh segment");
    assert_eq!(
        segs[0].metadata().unwrap().len(),
        strata_storage::wal::format::SEGMENT_HEADER as u64
    );
    drop(s);
    let s = open(&data, true, Duration::from_secs(3600));
    assert_eq!(read_all(&s).len(), 100, "the samples are in parts after the checkpoint");
}

#[test]
fn disk_full_refuses_writes_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = open(&data, false, Duration::from_millis(200));
    let base = now_ms() - 60_000;
    add(&s, 1, base, 1.0).unwrap();
    // Threshold above the real free space: the periodic check must switch to read-only.
    s.disk_guard().set_min_free_bytes(u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.is_read_only() {
        assert!(Instant::now() < deadline, "never went read-only");
        std::thread::sleep(Duration::from_millis(20));
    }
    let merge_err = s.force_merge("").unwrap_err();
    assert!(matches!(merge_err, StorageError::Unavailable(_)), "{merge_err}");
    let err = add(&s, 2, base, 1.0).unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("min_free_disk_space"), "{err}");
    assert!(s.disk_guard().rejections() >= 1);
    // Merges wait while read-only; the part count must not change through them.
    let before = s.stats();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(before.merges_running, 0);
    // Space comes back.
    s.disk_guard().set_min_free_bytes(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.is_read_only() {
        assert!(Instant::now() < deadline, "never left read-only mode");
        std::thread::sleep(Duration::from_millis(20));
    }
    add(&s, 3, base, 1.0).unwrap();
    s.force_flush().unwrap();
    let got = read_all(&s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(n, _, _)| n != "s2"));
}

/// A real ENOSPC on a small tmpfs (root only; skipped with a message elsewhere): a failing flush
/// must switch the storage to read-only mode, and freeing space must switch it back.
#[test]
fn enospc_on_a_small_tmpfs_switches_to_read_only() {
    let parent = tempfile::tempdir().unwrap();
    let mnt = parent.path().join("fs");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs (not root?): ENOSPC test skipped");
        return;
    }
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _umount = Umount(mnt.clone());
    let s = open(&mnt.join("data"), false, Duration::from_millis(100));
    let base = now_ms() - 60_000;
    for i in 0..100 {
        add(&s, i % 10, base + i as i64, 1.0).unwrap();
    }
    s.force_flush().unwrap();
    // Fill the filesystem to the last byte.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let mut one = [7u8; 1];
        while f.write_all(&one).is_ok() {
            one[0] ^= 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 1000;
    while !s.is_read_only() {
        let _ = add(&s, i % 10, base + i as i64, 1.0);
        i += 1;
        assert!(
            Instant::now() < deadline,
            "a flush failing with ENOSPC did not switch to read-only"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = add(&s, 1, base + 5000, 1.0).unwrap_err();
    assert!(err.to_string().contains("no space left"), "{err}");
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.is_read_only() {
        assert!(
            Instant::now() < deadline,
            "never left read-only mode after space was freed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    add(&s, 1, base + 6000, 1.0).unwrap();
    s.force_flush().unwrap();
}
