//! Table-level tests: round trips through flush and merge, seeks, restart, corruption.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use strata_mergeset::{Items, PARTS_FILE, Table, TableOptions};

fn opts() -> TableOptions {
    TableOptions {
        background: false,
        ..Default::default()
    }
}

fn all_items(t: &Table) -> Vec<Vec<u8>> {
    let mut s = t.search();
    let mut out = Vec::new();
    s.for_each_with_prefix(b"", |it| {
        out.push(it.to_vec());
        true
    })
    .unwrap();
    out
}

fn key(i: u32) -> Vec<u8> {
    format!("item/{:08}/{}", i.wrapping_mul(2_654_435_761) % 1_000_000, i % 7).into_bytes()
}

#[test]
fn roundtrip_through_flush_merge_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Vec::new();
    {
        let t = Table::open(dir.path(), opts()).unwrap();
        for round in 0..20u32 {
            let batch: Vec<Vec<u8>> = (0..2000).map(|i| key(round * 2000 + i)).collect();
            t.add_items(batch.iter().map(|v| v.as_slice()));
            model.extend(batch);
            t.flush().unwrap();
        }
        assert_eq!(t.stats().file_parts, 20);
        t.maintain().unwrap();
        let s = t.stats();
        assert!(s.file_parts < 20, "selection should merge 20 equal parts, got {s:?}");
        model.sort();
        assert_eq!(all_items(&t), model);
        t.force_merge().unwrap();
        assert_eq!(t.stats().file_parts, 1);
        assert_eq!(t.stats().items, model.len() as u64);
        t.close().unwrap();
    }
    let t = Table::open(dir.path(), opts()).unwrap();
    assert_eq!(all_items(&t), model);
    let listed: Vec<String> = serde_json::from_slice(&std::fs::read(dir.path().join(PARTS_FILE)).unwrap()).unwrap();
    assert_eq!(listed.len(), 1);
    let meta = std::fs::read_to_string(dir.path().join(&listed[0]).join("metadata.json")).unwrap();
    assert!(
        meta.contains("\"ItemsCount\":40000") && meta.contains("FirstItem"),
        "{meta}"
    );
}

#[test]
fn seek_and_prefix_across_memory_and_file_parts() {
    let dir = tempfile::tempdir().unwrap();
    let t = Table::open(dir.path(), opts()).unwrap();
    t.add_items([&b"a/1"[..], b"b/2", b"c/3"]);
    t.flush().unwrap();
    t.add_items([&b"b/1"[..], b"b/3", b"d"]);
    let mut s = t.search();
    assert_eq!(s.first_item_with_prefix(b"b/").unwrap(), Some(&b"b/1"[..]));
    let mut got = Vec::new();
    s.for_each_with_prefix(b"b/", |it| {
        got.push(it.to_vec());
        true
    })
    .unwrap();
    assert_eq!(got, vec![b"b/1".to_vec(), b"b/2".to_vec(), b"b/3".to_vec()]);
    assert!(s.contains(b"c/3").unwrap());
    assert!(!s.contains(b"c/").unwrap());
    s.seek(b"c/4").unwrap();
    assert_eq!(s.item(), Some(&b"d"[..]));
    s.advance().unwrap();
    assert_eq!(s.item(), None);
    assert_eq!(s.first_item_with_prefix(b"e").unwrap(), None);
}

#[test]
fn prepare_hook_rewrites_blocks_within_contract_only() {
    let dir = tempfile::tempdir().unwrap();
    // Drops every middle item equal to its predecessor (dedup), keeping first and last.
    let hook: strata_mergeset::PrepareBlock = Arc::new(|b: &Items| {
        let mut out = Items::new();
        for (i, it) in b.iter().enumerate() {
            if i == 0 || i == b.len() - 1 || out.last() != Some(it) {
                out.push(it);
            }
        }
        Some(out)
    });
    let t = Table::open(
        dir.path(),
        TableOptions {
            prepare_block: Some(hook),
            ..opts()
        },
    )
    .unwrap();
    for _ in 0..3 {
        t.add_items([&b"a"[..], b"m", b"m", b"z"]);
        t.flush().unwrap();
    }
    t.force_merge().unwrap();
    let items = all_items(&t);
    // Each flush dedups its block, the merge dedups again; the last item is never touched.
    assert_eq!(items, vec![b"a".to_vec(), b"m".to_vec(), b"z".to_vec(), b"z".to_vec()]);

    // A hook that breaks the contract (adds an item below the first) is ignored.
    let bad: strata_mergeset::PrepareBlock = Arc::new(|_b: &Items| Some([&b"0"[..]].into_iter().collect()));
    let dir2 = tempfile::tempdir().unwrap();
    let t2 = Table::open(
        dir2.path(),
        TableOptions {
            prepare_block: Some(bad),
            ..opts()
        },
    )
    .unwrap();
    t2.add_items([&b"a"[..], b"b"]);
    t2.flush().unwrap();
    assert_eq!(all_items(&t2), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn unlisted_dirs_are_removed_and_missing_parts_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = Table::open(dir.path(), opts()).unwrap();
        t.add_items([&b"x"[..]]);
        t.close().unwrap();
    }
    std::fs::create_dir_all(dir.path().join("00000000DEADBEEF")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp/123")).unwrap();
    let t = Table::open(dir.path(), opts()).unwrap();
    assert!(!dir.path().join("00000000DEADBEEF").exists());
    assert!(!dir.path().join("tmp").exists());
    assert_eq!(all_items(&t), vec![b"x".to_vec()]);
    drop(t);
    std::fs::write(dir.path().join(PARTS_FILE), b"[\"0000000000000001\"]").unwrap();
    let err = Table::open(dir.path(), opts())
        .err()
        .expect("a missing part is an error");
    assert!(err.to_string().contains("0000000000000001"), "{err}");
}

#[test]
fn corrupt_parts_are_errors_naming_the_part() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = Table::open(dir.path(), opts()).unwrap();
        let items: Vec<Vec<u8>> = (0..50_000).map(key).collect();
        t.add_items(items.iter().map(|v| v.as_slice()));
        t.close().unwrap();
    }
    let listed: Vec<String> = serde_json::from_slice(&std::fs::read(dir.path().join(PARTS_FILE)).unwrap()).unwrap();
    let part = dir.path().join(&listed[0]);
    // Damaged items.bin: open works (headers are fine), reading a block fails with the path.
    let items_path = part.join("items.bin");
    let mut data = std::fs::read(&items_path).unwrap();
    for b in data.iter_mut().skip(10).step_by(3) {
        *b ^= 0x5a;
    }
    std::fs::write(&items_path, &data).unwrap();
    let t = Table::open(dir.path(), opts()).unwrap();
    let mut s = t.search();
    let mut res = s.seek(b"");
    while res.is_ok() && s.item().is_some() {
        res = s.advance();
    }
    let err = res.expect_err("corrupt items must be an error");
    assert!(err.to_string().contains(&listed[0]), "{err}");
    drop(s);
    drop(t);
    // Damaged metaindex / metadata: open fails naming the part.
    for (file, junk) in [
        ("metaindex.bin", &b"garbage"[..]),
        ("metadata.json", b"{\"ItemsCount\":"),
    ] {
        let p = part.join(file);
        let orig = std::fs::read(&p).unwrap();
        std::fs::write(&p, junk).unwrap();
        let err = Table::open(dir.path(), opts())
            .err()
            .expect("corrupt part must fail to open");
        assert!(err.to_string().contains(&listed[0]), "{err}");
        std::fs::write(&p, orig).unwrap();
    }
    let mut idx = std::fs::read(part.join("index.bin")).unwrap();
    idx.truncate(idx.len() / 2);
    std::fs::write(part.join("index.bin"), idx).unwrap();
    let err = Table::open(dir.path(), opts())
        .err()
        .expect("truncated index must fail");
    assert!(err.to_string().contains(&listed[0]), "{err}");
}

#[test]
fn snapshot_links_parts() {
    let dir = tempfile::tempdir().unwrap();
    let snap = tempfile::tempdir().unwrap();
    let t = Table::open(dir.path(), opts()).unwrap();
    t.add_items([&b"p"[..], b"q"]);
    t.snapshot(&snap.path().join("s")).unwrap();
    t.add_items([&b"r"[..]]);
    t.flush().unwrap();
    let t2 = Table::open(&snap.path().join("s"), opts()).unwrap();
    assert_eq!(all_items(&t2), vec![b"p".to_vec(), b"q".to_vec()]);
}

#[test]
fn background_worker_flushes_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let o = TableOptions {
        flush_interval: std::time::Duration::from_millis(50),
        pending_interval: std::time::Duration::from_millis(20),
        ..TableOptions::default()
    };
    let t = Table::open(dir.path(), o).unwrap();
    t.add_items([&b"bg"[..]]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.stats().file_parts == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(t.stats().file_parts, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn matches_btreeset_model(
        batches in prop::collection::vec(prop::collection::vec(prop::collection::vec(0u8..4, 0..12), 0..200), 1..6),
        seeks in prop::collection::vec(prop::collection::vec(0u8..4, 0..6), 1..10),
        merge in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let t = Table::open(dir.path(), opts()).unwrap();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            t.add_items(b.iter().map(|v| v.as_slice()));
            model.extend(b.iter().cloned());
            if i % 2 == 0 { t.flush().unwrap(); }
        }
        if merge { t.force_merge().unwrap(); }
        model.sort();
        prop_assert_eq!(all_items(&t), model.clone());
        let set: BTreeSet<Vec<u8>> = model.iter().cloned().collect();
        let mut s = t.search();
        for k in &seeks {
            s.seek(k).unwrap();
            let want = set.range(k.clone()..).next().cloned();
            prop_assert_eq!(s.item().map(|x| x.to_vec()), want);
            let n = model.iter().filter(|m| m.starts_with(k)).count();
            let mut got = 0;
            s.for_each_with_prefix(k, |_| { got += 1; true }).unwrap();
            prop_assert_eq!(got, n);
        }
    }
}

#[test]
fn seeks_find_every_item_across_many_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let t = Table::open(dir.path(), opts()).unwrap();
    let items: Vec<Vec<u8>> = (0..30_000u32)
        .map(|i| {
            let mut v = format!("ns/{}/", i % 3).into_bytes();
            v.extend_from_slice(&key(i));
            v.extend_from_slice(&i.to_be_bytes());
            v
        })
        .collect();
    t.add_items(items.iter().map(|v| v.as_slice()));
    t.flush().unwrap();
    assert!(t.stats().items == 30_000);
    let mut s = t.search();
    for it in items.iter().step_by(7) {
        assert_eq!(s.first_item_with_prefix(it).unwrap(), Some(it.as_slice()));
        assert!(s.contains(it).unwrap());
    }
}

#[test]
fn searches_see_every_item_added_before_them_under_background_work() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let o = TableOptions {
        flush_interval: std::time::Duration::from_millis(5),
        pending_interval: std::time::Duration::from_millis(1),
        ..TableOptions::default()
    };
    let t = Arc::new(Table::open(dir.path(), o).unwrap());
    let added = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (t, added, done) = (t.clone(), added.clone(), done.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                t.add_items([&i.to_be_bytes()[..]]);
                i += 1;
                added.store(i, Ordering::Release);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    while std::time::Instant::now() < deadline {
        let n = added.load(Ordering::Acquire);
        let mut s = t.search();
        let mut seen = 0u64;
        s.for_each_with_prefix(b"", |it| {
            seen += u64::from(u64::from_be_bytes(it.try_into().unwrap()) < n);
            true
        })
        .unwrap();
        assert_eq!(seen, n, "a search missed items added before it");
    }
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
