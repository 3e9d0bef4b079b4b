//! Part writer and reader round trips.

use super::*;
use crate::tsid::Tenant;
use crate::tsid::{TimeRange, Tsid};

fn tsid(i: u64) -> Tsid {
    Tsid {
        tenant: Tenant::default(),
        metric_group_id: i / 10,
        job_id: 1,
        instance_id: 2,
        metric_id: i,
    }
}

fn build(w: &mut PartWriter, series: u64, rows: i64) {
    for s in 0..series {
        let ts: Vec<i64> = (0..rows).map(|i| 1_000_000 + i * 15_000).collect();
        let vals: Vec<f64> = (0..rows).map(|i| (s as f64) * 0.5 + i as f64).collect();
        w.write_series(&tsid(s), &ts, &vals).unwrap();
    }
}

#[test]
fn mem_and_file_parts_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut mw = PartWriter::in_memory(1);
    build(&mut mw, 2000, 20);
    let mem = Part::from_buffers("mem".into(), mw.finish(0).unwrap()).unwrap();
    assert!(mem.index_blocks() > 1, "several index blocks expected");
    let pdir = dir.path().join("0000000000000001");
    let mut fw = PartWriter::create(&pdir, 1).unwrap();
    build(&mut fw, 2000, 20);
    fw.finish(0).unwrap();
    let file = Part::open(&pdir).unwrap();
    assert_eq!(mem.header(), file.header());
    assert_eq!(file.header().rows_count, 40_000);
    let tr = TimeRange {
        min: 1_000_000 + 15_000 * 5,
        max: 1_000_000 + 15_000 * 9,
    };
    for s in [0, 1, 999, 1999] {
        let (mut t1, mut v1, mut t2, mut v2) = (vec![], vec![], vec![], vec![]);
        mem.search_series(&tsid(s), tr, &mut t1, &mut v1).unwrap();
        file.search_series(&tsid(s), tr, &mut t2, &mut v2).unwrap();
        assert_eq!(t1.len(), 5);
        assert_eq!((&t1, &v1), (&t2, &v2));
        assert_eq!(v1[0], s as f64 * 0.5 + 5.0);
    }
    let (mut t, mut v) = (vec![], vec![]);
    file.search_series(&tsid(5000), tr, &mut t, &mut v).unwrap();
    assert!(t.is_empty());
    // A search reads one index block and one timestamps and one values block; a second
    // search of the same series hits the index cache.
    let fresh = Part::open(&pdir).unwrap();
    let before = fresh.reads();
    fresh.search_series(&tsid(1234), tr, &mut vec![], &mut vec![]).unwrap();
    assert_eq!(fresh.reads() - before, 3);
    fresh.search_series(&tsid(1234), tr, &mut vec![], &mut vec![]).unwrap();
    assert_eq!(fresh.reads() - before, 5);
    // Outside the part's time range, nothing is read.
    let far = TimeRange { min: 0, max: 10 };
    fresh.search_series(&tsid(1235), far, &mut vec![], &mut vec![]).unwrap();
    assert_eq!(fresh.reads() - before, 5);
    // Identical timestamps are stored once.
    let ts_len = std::fs::metadata(pdir.join(TIMESTAMPS_FILE)).unwrap().len();
    assert!(ts_len < 100, "timestamps.bin is {ts_len} bytes");
}

#[test]
fn corrupt_files_are_errors_naming_the_part() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("0000000000000002");
    let mut fw = PartWriter::create(&pdir, 1).unwrap();
    build(&mut fw, 500, 50);
    fw.finish(0).unwrap();
    for name in PART_FILES {
        let orig = std::fs::read(pdir.join(name)).unwrap();
        let cuts = [0, orig.len() / 2, orig.len().saturating_sub(1)];
        for (k, cut) in cuts.into_iter().enumerate() {
            let mut bad = orig[..cut].to_vec();
            if k == 1 && !bad.is_empty() {
                // Garble instead of truncating.
                bad = orig.clone();
                let mid = bad.len() / 2;
                for b in &mut bad[mid..(mid + 16).min(orig.len())] {
                    *b ^= 0x5a;
                }
            }
            std::fs::write(pdir.join(name), &bad).unwrap();
            let res = Part::open(&pdir).and_then(|p| {
                let tr = TimeRange { min: 0, max: i64::MAX };
                for s in 0..500 {
                    p.search_series(&tsid(s), tr, &mut vec![], &mut vec![])?;
                }
                Ok(())
            });
            match res {
                Err(e) => assert!(e.to_string().contains("0000000000000002"), "{e}"),
                // Without checksums a flipped value byte may decode to other values; a
                // truncated file never goes unnoticed.
                Ok(()) => assert_eq!(k, 1, "truncated {name} to {cut} bytes was not detected"),
            }
        }
        std::fs::write(pdir.join(name), &orig).unwrap();
    }
    Part::open(&pdir).unwrap();
}

#[test]
fn random_byte_flips_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("0000000000000003");
    let mut fw = PartWriter::create(&pdir, 1).unwrap();
    for s in 0..300u64 {
        let ts: Vec<i64> = (0..40).map(|i| 1_000_000 + i * 15_000 + (i * s as i64) % 7).collect();
        let vals: Vec<f64> = (0..40).map(|i| (s * 1000 + i * i) as f64 / 100.0).collect();
        fw.write_series(&tsid(s), &ts, &vals).unwrap();
    }
    fw.finish(0).unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for name in PART_FILES {
        let orig = std::fs::read(pdir.join(name)).unwrap();
        for _ in 0..40 {
            let mut bad = orig.clone();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() % bad.len() as u64) as usize;
                bad[i] ^= 1 << (rnd() % 8);
            }
            std::fs::write(pdir.join(name), &bad).unwrap();
            if let Ok(p) = Part::open(&pdir) {
                let tr = TimeRange { min: 0, max: i64::MAX };
                for s in 0..300 {
                    if let Err(e) = p.search_series(&tsid(s), tr, &mut vec![], &mut vec![]) {
                        assert!(e.to_string().contains("0000000000000003"), "{e}");
                    }
                }
            }
        }
        std::fs::write(pdir.join(name), &orig).unwrap();
    }
}
