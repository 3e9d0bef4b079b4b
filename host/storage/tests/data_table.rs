//! Table-level tests: round trips, merges with overlapping and duplicate samples, crash
//! leftovers, corruption, retention, dedup, deletion, snapshots.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_storage::data::partition::{self, PartNames};
use strata_storage::data::{CorruptPartPolicy, RawRow, Table, TableOptions};
use strata_storage::encoding::decimal::{is_stale_nan, stale_nan};
use strata_storage::{DeletedMetricIds, NoDeletedMetricIds, StorageError, TimeRange, Tsid};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn tsid(i: u64) -> Tsid {
    Tsid {
        metric_group_id: i % 7,
        job_id: 3,
        instance_id: (i % 3) as u32,
        metric_id: i,
        ..Default::default()
    }
}

fn opts() -> TableOptions {
    TableOptions {
        pending_rows_flush_interval: Duration::from_millis(50),
        inmemory_flush_interval: Duration::from_millis(200),
        min_free_disk_bytes: 0,
        ..Default::default()
    }
}

fn open(dir: &Path, o: TableOptions) -> Table {
    Table::open(dir, o, Arc::new(NoDeletedMetricIds)).unwrap()
}

type Series = Vec<(Tsid, Vec<i64>, Vec<f64>)>;

/// Values as bits, so NaNs compare.
fn bits(s: &Series) -> Vec<(Tsid, Vec<i64>, Vec<u64>)> {
    s.iter()
        .map(|(id, ts, vs)| (*id, ts.clone(), vs.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn search_all(t: &Table, tsids: &[Tsid], tr: TimeRange) -> Series {
    let mut out = Vec::new();
    t.search(tsids, tr, &mut |id, ts, vs| {
        out.push((*id, ts.to_vec(), vs.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

fn all_time() -> TimeRange {
    TimeRange { min: 0, max: i64::MAX }
}

/// Rows for `series` series, `n` samples each at 15 s ending about an hour ago.
fn rows(series: u64, n: i64, base: i64) -> Vec<RawRow> {
    let mut v = Vec::new();
    for s in 0..series {
        for i in 0..n {
            v.push(RawRow {
                tsid: tsid(s),
                timestamp: base + i * 15_000,
                value: s as f64 + i as f64 * 0.25,
            });
        }
    }
    v
}

fn part_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for tier in ["small", "big"] {
        for p in std::fs::read_dir(root.join(tier)).unwrap().flatten() {
            if p.path().is_dir() {
                for e in std::fs::read_dir(p.path()).unwrap().flatten() {
                    if e.path().is_dir() {
                        v.push(e.path());
                    }
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn roundtrip_searchable_then_durable() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 3_600_000;
    let t = open(dir.path(), opts());
    let input = rows(50, 100, base);
    t.add_rows(&input).unwrap();
    let ids: Vec<Tsid> = {
        let mut v: Vec<_> = (0..50).map(tsid).collect();
        v.sort();
        v
    };
    // Searchable without an explicit flush, within about a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = search_all(&t, &ids, all_time());
        if got.len() == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows not searchable in time: {} series",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.close().unwrap();
    let t = open(dir.path(), opts());
    let got = search_all(&t, &ids, all_time());
    assert_eq!(got.len(), 50);
    for (id, ts, vs) in &got {
        let s = id.metric_id;
        assert_eq!(ts.len(), 100);
        assert_eq!(ts[0], base);
        assert_eq!(vs[99], s as f64 + 99.0 * 0.25);
    }
    // Visited in TSID order, and a time range cuts samples.
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    let tr = TimeRange {
        min: base + 15_000 * 10,
        max: base + 15_000 * 19,
    };
    let got = search_all(&t, &ids[..1], tr);
    assert_eq!(got[0].1.len(), 10);
    let st = t.stats();
    assert_eq!(st.small.rows + st.big.rows, 5000);
    assert_eq!(st.pending_rows, 0);
}

#[test]
fn merge_with_overlapping_and_duplicate_samples() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 7_200_000;
    let t = open(dir.path(), opts());
    // Three batches: the second overlaps the first with identical samples plus new ones in
    // between, the third repeats a timestamp with a different value and adds specials.
    t.add_rows(&rows(10, 100, base)).unwrap();
    t.flush().unwrap();
    let mut second = rows(10, 100, base);
    second.extend(rows(10, 100, base + 7_500));
    t.add_rows(&second).unwrap();
    t.flush().unwrap();
    let third = vec![
        RawRow {
            tsid: tsid(1),
            timestamp: base,
            value: 123.5,
        },
        RawRow {
            tsid: tsid(1),
            timestamp: base + 15_000 * 200,
            value: f64::INFINITY,
        },
        RawRow {
            tsid: tsid(1),
            timestamp: base + 15_000 * 201,
            value: stale_nan(),
        },
        RawRow {
            tsid: tsid(1),
            timestamp: base + 15_000 * 202,
            value: -0.0,
        },
        RawRow {
            tsid: tsid(1),
            timestamp: base + 15_000 * 203,
            value: f64::NAN,
        },
    ];
    t.add_rows(&third).unwrap();
    t.flush().unwrap();
    assert!(t.stats().small.parts >= 3);
    let before = search_all(&t, &[tsid(1)], all_time());
    t.force_merge("").unwrap();
    let st = t.stats();
    assert_eq!(st.small.parts + st.big.parts, 1, "{st:?}");
    let after = search_all(&t, &[tsid(1)], all_time());
    assert_eq!(
        bits(&before),
        bits(&after),
        "merging must not change what a search returns"
    );
    let (_, ts, vs) = &after[0];
    // 200 distinct timestamps from the first two batches, the changed value at `base`, three
    // specials; the plain NaN was dropped at ingestion.
    assert_eq!(ts.len(), 200 + 1 + 3);
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!((ts[0], ts[1]), (base, base));
    assert_eq!(vs[0..2], [1.0, 123.5]);
    let n = vs.len();
    assert_eq!(vs[n - 3], f64::INFINITY);
    assert!(is_stale_nan(vs[n - 2]));
    assert_eq!(vs[n - 1].to_bits(), (-0.0f64).to_bits());
    assert_eq!(st.small.rows + st.big.rows, 10 * 200 + 4);
    assert_eq!(t.stats().rows_dropped, 1);
}

#[test]
fn unlisted_and_half_written_parts_are_removed_listed_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 3_600_000;
    {
        let t = open(dir.path(), opts());
        t.add_rows(&rows(20, 50, base)).unwrap();
        t.close().unwrap();
    }
    let listed = part_dirs(dir.path());
    assert_eq!(listed.len(), 1);
    // A process killed after writing a part but before listing it (a flush or a merge output),
    // and one killed halfway through writing files.
    let part_dir = listed[0].parent().unwrap().to_path_buf();
    let copy = part_dir.join("00000000000000AA");
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(&listed[0]).unwrap().flatten() {
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    let half = part_dir.join("00000000000000BB");
    std::fs::create_dir(&half).unwrap();
    std::fs::write(half.join("timestamps.bin"), b"partial").unwrap();
    std::fs::write(part_dir.join("parts.json.tmp"), b"{").unwrap();
    let t = open(dir.path(), opts());
    assert_eq!(part_dirs(dir.path()), listed);
    assert!(!part_dir.join("parts.json.tmp").exists());
    let got = search_all(&t, &[tsid(0)], all_time());
    assert_eq!(got[0].1.len(), 50, "the listed part's samples are all there, once");
    assert_eq!(t.stats().small.rows, 1000);
}

#[test]
fn corrupt_or_missing_listed_part_fails_or_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 3_600_000;
    {
        let t = open(dir.path(), opts());
        t.add_rows(&rows(20, 50, base)).unwrap();
        t.flush().unwrap();
        t.add_rows(&rows(20, 50, base + 50 * 15_000)).unwrap();
        t.close().unwrap();
    }
    let parts = part_dirs(dir.path());
    assert_eq!(parts.len(), 2);
    let bad = &parts[0];
    let idx = bad.join("index.bin");
    let len = std::fs::metadata(&idx).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = Table::open(dir.path(), opts(), Arc::new(NoDeletedMetricIds))
        .err()
        .expect("must refuse to open");
    let name = bad.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.to_string().contains(&name), "{err}");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");

    let t = open(
        dir.path(),
        TableOptions {
            on_corrupt_part: CorruptPartPolicy::Quarantine,
            ..opts()
        },
    );
    assert_eq!(t.stats().quarantined_parts, 1);
    assert_eq!(t.stats().small.parts, 1);
    assert!(!bad.exists());
    let q: Vec<_> = std::fs::read_dir(dir.path().parent().unwrap().join("quarantine"))
        .unwrap()
        .flatten()
        .collect();
    assert!(q.iter().any(|e| e.file_name().to_string_lossy().contains(&name)));
    t.close().unwrap();
    // parts.json no longer lists it: a plain open works now.
    let t = open(dir.path(), opts());
    assert_eq!(search_all(&t, &[tsid(0)], all_time())[0].1.len(), 50);
    t.close().unwrap();

    // A listed part that vanished is an error naming it.
    let gone = part_dirs(dir.path()).remove(0);
    std::fs::remove_dir_all(&gone).unwrap();
    let err = Table::open(dir.path(), opts(), Arc::new(NoDeletedMetricIds))
        .err()
        .expect("must refuse to open");
    assert!(
        err.to_string().contains(&*gone.file_name().unwrap().to_string_lossy()),
        "{err}"
    );
}

#[test]
fn retention_drops_at_ingest_and_hides_and_removes_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let t = open(dir.path(), opts());
    let ancient = now - 40 * 86_400_000;
    let future = now + 3 * 86_400_000;
    t.add_rows(&[
        RawRow {
            tsid: tsid(1),
            timestamp: ancient,
            value: 1.0,
        },
        RawRow {
            tsid: tsid(1),
            timestamp: future,
            value: 1.0,
        },
        RawRow {
            tsid: tsid(1),
            timestamp: now - 10 * 86_400_000,
            value: 2.0,
        },
        RawRow {
            tsid: tsid(1),
            timestamp: now - 60_000,
            value: 3.0,
        },
    ])
    .unwrap();
    assert_eq!(t.stats().rows_dropped, 2);
    t.close().unwrap();
    // Reopen with 5 days of retention: the 10-day-old sample is hidden at once and its part
    // (if it holds nothing newer) is removed by merges and part drops.
    let o = TableOptions {
        retention: Duration::from_secs(5 * 86_400),
        ..opts()
    };
    let t = open(dir.path(), o);
    let got = search_all(&t, &[tsid(1)], all_time());
    assert_eq!(got[0].2, vec![3.0]);
    t.force_merge("").unwrap();
    let st = t.stats();
    assert_eq!(st.small.rows + st.big.rows, 1, "{st:?}");
    assert!(st.retention_removed >= 1);
}

struct Deleted(HashSet<u64>);
impl DeletedMetricIds for Deleted {
    fn contains(&self, id: u64) -> bool {
        self.0.contains(&id)
    }
}

#[test]
fn dedup_and_deleted_series_apply_in_merges() {
    let dir = tempfile::tempdir().unwrap();
    let base = (now_ms() - 3_600_000) / 60_000 * 60_000;
    let deleted = Arc::new(Deleted([3u64].into_iter().collect()));
    let o = TableOptions {
        dedup_interval_ms: 15_000,
        ..opts()
    };
    let t = Table::open(dir.path(), o, deleted).unwrap();
    let mut input = Vec::new();
    for s in 0..5u64 {
        for i in 0..60 {
            // Two replicas 5 s apart plus a 1 ms jitter.
            input.push(RawRow {
                tsid: tsid(s),
                timestamp: base + i * 15_000 + 1,
                value: i as f64,
            });
            input.push(RawRow {
                tsid: tsid(s),
                timestamp: base + i * 15_000 + 5_001,
                value: i as f64 + 0.5,
            });
        }
    }
    t.add_rows(&input).unwrap();
    t.force_merge("").unwrap();
    let mut ids: Vec<_> = (0..5).map(tsid).collect();
    ids.sort();
    let got = search_all(&t, &ids, all_time());
    assert_eq!(got.len(), 4, "series 3 was deleted");
    for (_, ts, vs) in &got {
        // Windows (k*15s-15s, k*15s]: the samples at +1 ms and +5001 ms share a window; the
        // later one wins.
        assert_eq!(ts.len(), 60);
        assert!(vs.iter().all(|v| v.fract() == 0.5));
    }
    let st = t.stats();
    assert_eq!(st.small.rows + st.big.rows, 4 * 60);
    assert_eq!(st.dedup_removed, 4 * 60);
}

#[test]
fn snapshot_survives_later_merges_and_opens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let snap = dir.path().join("snap").join("data");
    let base = now_ms() - 3_600_000;
    let t = open(&data, opts());
    for k in 0..3 {
        t.add_rows(&rows(10, 30, base + k * 30 * 15_000)).unwrap();
        t.flush().unwrap();
    }
    t.snapshot(&snap).unwrap();
    let names: PartNames = partition::read_parts_json(&part_dirs(&snap)[0].parent().unwrap().join("parts.json"))
        .unwrap()
        .unwrap();
    assert_eq!(names.small.len(), 3);
    t.force_merge("").unwrap();
    assert_eq!(t.stats().small.parts + t.stats().big.parts, 1);
    let live = search_all(&t, &[tsid(2)], all_time());
    t.close().unwrap();
    let s = open(&snap, opts());
    assert_eq!(s.stats().small.parts, 3);
    assert_eq!(search_all(&s, &[tsid(2)], all_time()), live);
    assert_eq!(live[0].1.len(), 90);
}

#[test]
fn background_merges_and_big_parts() {
    let dir = tempfile::tempdir().unwrap();
    let base = now_ms() - 3_600_000;
    let o = TableOptions {
        max_small_part_bytes: 1,
        ..opts()
    };
    let t = open(dir.path(), o);
    for k in 0..16 {
        t.add_rows(&rows(5, 10, base + k * 10 * 15_000)).unwrap();
        t.flush().unwrap();
    }
    // 16 similar parts: the workers merge at least 15 of them into big/.
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.stats().small.parts > 2 {
        assert!(Instant::now() < deadline, "no background merge: {:?}", t.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t.stats().big.parts >= 1);
    t.force_merge("").unwrap();
    let st = t.stats();
    assert_eq!((st.small.parts, st.big.parts), (0, 1), "{st:?}");
    assert_eq!(st.big.rows, 5 * 160);
    let got = search_all(&t, &[tsid(4)], all_time());
    assert_eq!(got[0].1.len(), 160);
}

#[test]
fn past_partitions_get_deduplicated_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let (month_start, _) = partition::month_range(&partition::partition_name(now)).unwrap();
    // The last hour of the previous month: always inside the default 31-day retention.
    let end = month_start - 3_600_000;
    let end = end - end.rem_euclid(15_000);
    {
        let t = open(dir.path(), opts());
        let input: Vec<RawRow> = (0..60)
            .map(|k| RawRow {
                tsid: tsid(9),
                timestamp: end - k * 5_000,
                value: k as f64,
            })
            .collect();
        t.add_rows(&input).unwrap();
        t.close().unwrap();
    }
    let t = open(
        dir.path(),
        TableOptions {
            dedup_interval_ms: 15_000,
            ..opts()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.stats().small.rows + t.stats().big.rows != 20 {
        assert!(
            Instant::now() < deadline,
            "past partition not deduplicated: {:?}",
            t.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.stats().dedup_removed, 40);
}

#[test]
fn part_found_corrupt_during_a_merge_is_skipped_or_quarantined() {
    for policy in [CorruptPartPolicy::Fail, CorruptPartPolicy::Quarantine] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let base = now_ms() - 3_600_000;
        {
            let t = open(&data, opts());
            t.add_rows(&rows(20, 50, base)).unwrap();
            t.flush().unwrap();
            t.add_rows(&rows(20, 50, base + 50 * 15_000)).unwrap();
            t.close().unwrap();
        }
        let parts = part_dirs(&data);
        let bad = &parts[0];
        // Overlong varints everywhere: every non-constant value block fails to decode, while the
        // index (checked at open) is intact.
        let len = std::fs::metadata(bad.join("values.bin")).unwrap().len() as usize;
        std::fs::write(bad.join("values.bin"), vec![0xffu8; len]).unwrap();
        let t = open(
            &data,
            TableOptions {
                on_corrupt_part: policy,
                ..opts()
            },
        );
        let err = t.force_merge("").expect_err("merge reads the broken part");
        let name = bad.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            matches!(&err, StorageError::Corrupt { .. }) && err.to_string().contains(&name),
            "{err}"
        );
        let err = t.search(&[tsid(0)], all_time(), &mut |_, _, _| Ok(())).err();
        match policy {
            CorruptPartPolicy::Fail => {
                // Still listed, searches name it, merges leave it alone from now on.
                assert!(err.is_some_and(|e| e.to_string().contains(&name)));
                t.force_merge("").unwrap();
                assert_eq!(t.stats().small.parts, 2);
            }
            CorruptPartPolicy::Quarantine => {
                assert!(err.is_none());
                assert_eq!(t.stats().quarantined_parts, 1);
                assert_eq!(t.stats().small.parts, 1);
                assert!(dir.path().join("quarantine").read_dir().unwrap().count() == 1);
                t.close().unwrap();
                let t = open(&data, opts());
                assert_eq!(search_all(&t, &[tsid(0)], all_time())[0].1.len(), 50);
            }
        }
    }
}
