//! Tests of the log: the v2 encoding, torn tails, series definitions per segment, v1 segments,
//! failed writes, group commit.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::format::{SEGMENT_HEADER, SeriesRefs, encode_write, segment_header};
use super::*;
use crate::index::Label;

/// Injected failures of the log writer's file operations.
#[derive(Default)]
pub(super) struct Faults {
    /// The next this many writes fail with ENOSPC after writing half their bytes.
    fail_writes: usize,
    /// The next this many cut-offs of a failed write fail.
    fail_cuts: usize,
}

impl Faults {
    pub(super) fn write(&mut self, mut f: &File, buf: &[u8]) -> std::io::Result<()> {
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            f.write_all(&buf[..buf.len() / 2])?;
            return Err(std::io::Error::from_raw_os_error(28));
        }
        f.write_all(buf)
    }

    pub(super) fn cut(&mut self, f: &File, len: u64) -> std::io::Result<()> {
        if self.fail_cuts > 0 {
            self.fail_cuts -= 1;
            return Err(std::io::Error::other("injected"));
        }
        f.set_len(len)
    }
}

fn labels_of(key: u64) -> Vec<(String, String)> {
    vec![
        ("__name__".into(), format!("metric_{}", key % 3)),
        ("instance".into(), format!("10.0.0.{key}:9100")),
        ("job".into(), "node".into()),
    ]
}

fn as_labels(owned: &[(String, String)]) -> Vec<Label<'_>> {
    owned.iter().map(|(n, v)| Label { name: n, value: v }).collect()
}

fn defs_for(keys: impl IntoIterator<Item = u64>) -> Definitions {
    let mut d = Definitions::default();
    for k in keys {
        d.add(k, &as_labels(&labels_of(k)));
    }
    d
}

/// Logs `batch`, defining what the segment asks for (what the storage does).
fn log(wal: &Wal, tenant: Tenant, batch: &Batch) -> u64 {
    log_with(wal, tenant, batch, true)
}

/// [`log`] without starting the write: the waiter writes, so a failure reaches it for sure.
fn log_buffered(wal: &Wal, tenant: Tenant, batch: &Batch) -> u64 {
    log_with(wal, tenant, batch, false)
}

fn log_with(wal: &Wal, tenant: Tenant, batch: &Batch, start: bool) -> u64 {
    let mut defs = Definitions::default();
    loop {
        match wal.append_batch(tenant, batch, &defs, start) {
            Append::Logged(pos) => return pos,
            Append::Undefined(missing) => {
                assert!(!missing.is_empty());
                for i in missing {
                    defs.add(batch.key(i), &as_labels(&labels_of(batch.key(i))));
                }
            }
        }
    }
}

fn batch(keys: impl IntoIterator<Item = u64>, ts: i64) -> Batch {
    let mut b = Batch::default();
    for k in keys {
        b.push(k, &[ts], &[k as f64 + 0.5]);
    }
    b
}

fn read(dir: &Path, seq: u64) -> (Vec<WalRecord>, bool) {
    read_segment(&std::fs::read(segment_path(dir, seq)).unwrap())
}

#[test]
fn writes_round_trip_and_define_each_series_once() {
    let t = Tenant {
        account_id: 7,
        project_id: 9,
    };
    let mut refs = SeriesRefs::default();
    let mut seg = segment_header().to_vec();
    let mut b = Batch::default();
    b.push(10, &[1_700_000_000_000, 1_700_000_015_000], &[0.5, f64::NAN]);
    b.push(11, &[-5, i64::MAX, i64::MIN], &[1.0, -0.0, f64::INFINITY]);
    b.push(10, &[1_700_000_030_000], &[2.0]);
    // Without definitions nothing is written and both unknown series are named (10 twice).
    assert_eq!(
        encode_write(&mut seg, &mut refs, t, &b, &Definitions::default()),
        Err(vec![0, 1, 2])
    );
    assert_eq!(seg.len(), SEGMENT_HEADER);
    encode_write(&mut seg, &mut refs, t, &b, &defs_for([10, 11])).unwrap();
    let first = seg.len() - SEGMENT_HEADER;
    // The same series again: no definitions needed, and the record is much smaller.
    let mut again = Batch::default();
    again.push(11, &[7], &[3.0]);
    again.push(10, &[8], &[4.0]);
    let before = seg.len();
    encode_write(&mut seg, &mut refs, t, &again, &Definitions::default()).unwrap();
    let second = seg.len() - before;
    assert!(second < 50 && second * 3 < first, "{first} then {second} bytes");
    let (recs, torn) = read_segment(&seg);
    assert!(!torn);
    assert_eq!(recs.len(), 5);
    assert!(recs.iter().all(|r| r.tenant == t));
    assert_eq!(recs[0].labels, labels_of(10));
    assert_eq!(recs[0].timestamps, vec![1_700_000_000_000, 1_700_000_015_000]);
    assert!(recs[0].values[1].is_nan());
    assert_eq!(recs[1].labels, labels_of(11));
    assert_eq!(recs[1].timestamps, vec![-5, i64::MAX, i64::MIN]);
    assert_eq!(recs[1].values[1].to_bits(), (-0.0f64).to_bits());
    assert_eq!(recs[1].values[2], f64::INFINITY);
    assert_eq!(
        (recs[2].labels.clone(), recs[2].values.clone()),
        (labels_of(10), vec![2.0])
    );
    assert_eq!(
        (recs[3].labels.clone(), recs[3].timestamps.clone()),
        (labels_of(11), vec![7])
    );
    assert_eq!(
        (recs[4].labels.clone(), recs[4].values.clone()),
        (labels_of(10), vec![4.0])
    );
}

#[test]
fn torn_and_corrupt_tails_end_the_segment() {
    let mut refs = SeriesRefs::default();
    let mut seg = segment_header().to_vec();
    encode_write(
        &mut seg,
        &mut refs,
        Tenant::default(),
        &batch([1, 2], 100),
        &defs_for([1, 2]),
    )
    .unwrap();
    let first_end = seg.len();
    encode_write(
        &mut seg,
        &mut refs,
        Tenant::default(),
        &batch([2, 3], 200),
        &defs_for([3]),
    )
    .unwrap();
    assert_eq!(read_segment(&seg).0.len(), 4);
    for cut in 0..seg.len() {
        let (recs, torn) = read_segment(&seg[..cut]);
        let whole = if cut >= first_end { 2 } else { 0 };
        assert_eq!(recs.len(), whole, "cut at {cut}");
        let clean = cut == 0 || cut == SEGMENT_HEADER || cut == first_end;
        assert_eq!(torn, !clean, "cut at {cut}");
    }
    for flip in SEGMENT_HEADER..seg.len() {
        let mut bad = seg.clone();
        bad[flip] ^= 0x10;
        let (recs, torn) = read_segment(&bad);
        assert!(torn, "flip at {flip}");
        assert_eq!(recs.len(), if flip >= first_end { 2 } else { 0 }, "flip at {flip}");
    }
    // An unknown future version is refused, not skipped.
    let mut future = seg.clone();
    future[4] = 9;
    let err = visit_segment(
        Path::new("x.wal"),
        &future,
        &mut ReplayState::default(),
        &mut |_, _, _, _| Ok(()),
    );
    assert!(matches!(err, Err(StorageError::Corrupt { .. })), "{err:?}");
}

#[test]
fn version_1_segments_are_still_read() {
    let mut seg = Vec::new();
    let t = Tenant {
        account_id: 1,
        project_id: 2,
    };
    let owned = labels_of(4);
    v1::encode(&mut seg, t, &as_labels(&owned), &[1, 2], &[0.5, 1.5]);
    let first = seg.len();
    v1::encode(
        &mut seg,
        Tenant::default(),
        &as_labels(&labels_of(5)),
        &[3],
        &[f64::NAN],
    );
    let (recs, torn) = read_segment(&seg);
    assert!(!torn);
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].tenant, recs[0].labels.clone()), (t, owned));
    assert_eq!(
        (recs[0].timestamps.clone(), recs[0].values.clone()),
        (vec![1, 2], vec![0.5, 1.5])
    );
    assert_eq!(recs[1].labels, labels_of(5));
    assert!(recs[1].values[0].is_nan());
    let (recs, torn) = read_segment(&seg[..seg.len() - 3]);
    assert_eq!((recs.len(), torn), (1, true));
    let (recs, torn) = read_segment(&seg[..first]);
    assert_eq!((recs.len(), torn), (1, false));
}

#[test]
fn series_are_defined_once_per_segment_and_again_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create_with_sync(dir.path(), 1, Duration::from_millis(20)).unwrap();
    let b = batch(0..100, 1000);
    assert_eq!(
        wal.append_batch(Tenant::default(), &b, &Definitions::default(), true),
        Append::Undefined((0..100).collect())
    );
    let pos = wal.append_batch(Tenant::default(), &b, &defs_for(0..100), true);
    let Append::Logged(pos) = pos else { panic!("{pos:?}") };
    wal.wait(pos).unwrap();
    let first_bytes = wal.active_segment_bytes();
    assert_eq!(wal.defined_series(), 100);
    // Known series need no definitions: only refs, times and values.
    let Append::Logged(pos) = wal.append_batch(Tenant::default(), &batch(0..100, 2000), &Definitions::default(), true)
    else {
        panic!("series were forgotten")
    };
    wal.wait(pos).unwrap();
    let second_bytes = wal.active_segment_bytes() - first_bytes;
    assert!(second_bytes < 1400, "{second_bytes} bytes for 100 samples");
    assert_eq!(wal.rotate().unwrap(), 2);
    assert_eq!(wal.defined_series(), 0);
    let again = wal.append_batch(Tenant::default(), &batch(50..150, 3000), &Definitions::default(), true);
    assert_eq!(again, Append::Undefined((0..100).collect()));
    let pos = log(&wal, Tenant::default(), &batch(50..150, 3000));
    wal.wait(pos).unwrap();
    drop(wal);
    // Each segment reads on its own: a new segment defines what it uses.
    let (one, torn) = read(dir.path(), 1);
    assert!(!torn);
    assert_eq!(one.len(), 200);
    let (two, torn) = read(dir.path(), 2);
    assert!(!torn);
    assert_eq!(two.len(), 100);
    for (i, r) in two.iter().enumerate() {
        assert_eq!(r.labels, labels_of(50 + i as u64));
        assert_eq!((r.timestamps[0], r.values[0]), (3000, (50 + i) as f64 + 0.5));
    }
}

/// A write that fails halfway (its bytes cut off again) takes the definitions it carried with
/// it; a later record that uses those series must still be readable: the failed records are
/// written again in front of it.
#[test]
fn a_failed_write_does_not_orphan_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), 1).unwrap();
    wal.inner.faults.lock().fail_writes = 1;
    let pos = log_buffered(&wal, Tenant::default(), &batch(0..10, 1000));
    assert!(wal.wait(pos).is_err());
    // The series count as defined (their definitions wait in the buffer) ...
    let Append::Logged(pos) = wal.append_batch(Tenant::default(), &batch(0..10, 2000), &Definitions::default(), true)
    else {
        panic!("definitions were dropped with the failed write")
    };
    wal.wait(pos).unwrap();
    drop(wal);
    // ... and the file has both writes, whole, definitions first.
    let (recs, torn) = read(dir.path(), 1);
    assert!(!torn);
    assert_eq!(recs.len(), 20);
    assert!(recs[..10].iter().all(|r| r.timestamps == [1000]));
    assert!(recs[10..].iter().all(|r| r.timestamps == [2000]));
    assert_eq!(recs[19].labels, labels_of(9));
}

/// When a failed write cannot be cut off, the log goes on in a new segment with the same refs;
/// replay reads the segments in order and carries the definitions over.
#[test]
fn a_write_that_cannot_be_cut_off_continues_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), 1).unwrap();
    let pos = log(&wal, Tenant::default(), &batch(0..5, 1000));
    wal.wait(pos).unwrap();
    {
        let mut f = wal.inner.faults.lock();
        f.fail_writes = 1;
        f.fail_cuts = 1;
    }
    let pos = log_buffered(&wal, Tenant::default(), &batch(3..8, 2000));
    assert!(wal.wait(pos).is_err());
    let pos = log(&wal, Tenant::default(), &batch(0..8, 3000));
    wal.wait(pos).unwrap();
    drop(wal);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
    let (one, torn) = read(dir.path(), 1);
    assert!(torn, "the uncut half write ends segment 1");
    assert_eq!(one.len(), 5);
    let mut state = ReplayState::default();
    let mut seen = Vec::new();
    for seq in [1, 2] {
        let bytes = std::fs::read(segment_path(dir.path(), seq)).unwrap();
        visit_segment(Path::new(""), &bytes, &mut state, &mut |_, labels, ts, _| {
            let key: u64 = labels[1]
                .value
                .trim_start_matches("10.0.0.")
                .trim_end_matches(":9100")
                .parse()
                .unwrap();
            seen.push((ts[0], key));
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(state.undefined_samples, 0);
    let want: Vec<(i64, u64)> = (0..5)
        .map(|k| (1000, k))
        .chain((3..8).map(|k| (2000, k)))
        .chain((0..8).map(|k| (3000, k)))
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn group_commit_rotation_and_removal() {
    group_commit_rotation_and_removal_with(Duration::ZERO);
}

/// The sync-interval mode gives the same answers: records are in the file when `wait`
/// returns (what survives the process being killed), and rotation closes a segment whole.
#[test]
fn group_commit_rotation_and_removal_with_a_sync_interval() {
    group_commit_rotation_and_removal_with(Duration::from_millis(30));
}

fn group_commit_rotation_and_removal_with(sync: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let wal = std::sync::Arc::new(Wal::create_with_sync(dir.path(), 1, sync).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for j in 0..50i64 {
                    // Every writer shares series 0..4 and has two of its own.
                    let pos = log(&wal, Tenant::default(), &batch([0, 1, 2, 3, 100 + i, 200 + i], j));
                    wal.wait(pos).unwrap();
                    let on_disk = std::fs::metadata(segment_path(wal.dir(), 1)).unwrap().len();
                    assert!(on_disk >= pos, "{on_disk} < {pos}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(wal.defined_series(), 4 + 16);
    let seq = wal.rotate().unwrap();
    assert_eq!(seq, 2);
    let before = wal.appended();
    let pos = log(&wal, Tenant::default(), &batch([5], 5));
    wal.sync_to(pos).unwrap();
    assert_eq!(wal.active_segment_bytes(), SEGMENT_HEADER as u64 + pos - before);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
    let (recs, torn) = read(dir.path(), 1);
    assert!(!torn);
    assert_eq!(recs.len(), 8 * 50 * 6);
    // Each writer's writes are in the file in its order.
    for i in 0..8u64 {
        let mine: Vec<i64> = recs
            .iter()
            .filter(|r| r.labels == labels_of(100 + i))
            .map(|r| r.timestamps[0])
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
    let (recs, _) = read(dir.path(), 2);
    assert_eq!(recs.len(), 1);
    assert_eq!(wal.remove_before(seq).unwrap(), 1);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
}

/// A record appended without `start` stays buffered; the waiter then finds the log idle and
/// writes it itself (also what happens when the log thread has not been scheduled yet).
#[test]
fn a_waiter_writes_buffered_records_itself() {
    for sync in [Duration::ZERO, Duration::from_millis(10)] {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create_with_sync(dir.path(), 1, sync).unwrap();
        let mut defs = defs_for(0..3);
        let Append::Logged(first) = wal.append_batch(Tenant::default(), &batch(0..3, 1), &defs, false) else {
            panic!("defined")
        };
        defs = Definitions::default();
        let Append::Logged(second) = wal.append_batch(Tenant::default(), &batch(0..3, 2), &defs, false) else {
            panic!("defined")
        };
        std::thread::sleep(Duration::from_millis(30));
        let len = || std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
        assert_eq!(len(), SEGMENT_HEADER as u64, "nothing was requested yet");
        wal.wait(first).unwrap();
        // One write took both records.
        assert_eq!(len(), SEGMENT_HEADER as u64 + second);
        wal.wait(second).unwrap();
        drop(wal);
        assert_eq!(read(dir.path(), 1).0.len(), 6);
    }
}

/// Rotations racing with writers (the storage excludes them with its gate; the log must not
/// depend on it): every segment still reads on its own, with no sample of an undefined series,
/// and nothing is lost or doubled.
#[test]
fn rotations_during_writes_leave_self_contained_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = std::sync::Arc::new(Wal::create_with_sync(dir.path(), 1, Duration::from_millis(5)).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A fixed number of rotations; the writers keep writing until they are done.
    let rotations = 30;
    let rotator = {
        let (wal, stop) = (wal.clone(), stop.clone());
        std::thread::spawn(move || {
            for _ in 0..rotations {
                wal.rotate().unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (wal, stop) = (wal.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut j = 0i64;
                while j < 50 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let keys = (0..10).chain((0..10).map(|k| 1000 * (w + 1) + k));
                    let pos = log(&wal, Tenant::default(), &batch(keys, j));
                    wal.wait(pos).unwrap();
                    j += 1;
                }
                j as usize
            })
        })
        .collect();
    let batches: usize = writers.into_iter().map(|t| t.join().unwrap()).sum();
    rotator.join().unwrap();
    drop(wal);
    let segments = list_segments(dir.path()).unwrap();
    assert_eq!(segments.len(), rotations + 1);
    let mut total = 0usize;
    for seq in segments {
        let bytes = std::fs::read(segment_path(dir.path(), seq)).unwrap();
        // A fresh state per segment: nothing may be needed from the one before.
        let mut state = ReplayState::default();
        let torn = visit_segment(Path::new(""), &bytes, &mut state, &mut |_, labels, ts, vals| {
            let key: u64 = labels[1]
                .value
                .trim_start_matches("10.0.0.")
                .trim_end_matches(":9100")
                .parse()
                .unwrap();
            assert_eq!(vals[0], key as f64 + 0.5);
            assert!(ts[0] >= 0);
            total += 1;
            Ok(())
        })
        .unwrap();
        assert!(!torn, "segment {seq}");
        assert_eq!(state.undefined_samples, 0, "segment {seq}");
    }
    assert_eq!(total, batches * 20);
}
