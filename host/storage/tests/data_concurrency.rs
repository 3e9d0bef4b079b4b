//! Writers, readers, flushes and background merges at the same time: nothing is lost or
//! duplicated, searches always see sorted samples, and a reopen sees every row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_storage::data::{RawRow, Table, TableOptions};
use strata_storage::{NoDeletedMetricIds, TimeRange, Tsid};

const SERIES_PER_WRITER: u64 = 200;
const ROUNDS: i64 = 60;

fn tsid(i: u64) -> Tsid {
    Tsid {
        metric_group_id: i % 13,
        metric_id: i,
        ..Default::default()
    }
}

fn opts() -> TableOptions {
    TableOptions {
        pending_rows_flush_interval: Duration::from_millis(10),
        inmemory_flush_interval: Duration::from_millis(30),
        min_free_disk_bytes: 0,
        ..Default::default()
    }
}

#[test]
fn concurrent_writes_reads_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 - 3_600_000;
    let table = Arc::new(Table::open(dir.path(), opts(), Arc::new(NoDeletedMetricIds)).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let mut all: Vec<Tsid> = (0..2 * SERIES_PER_WRITER).map(tsid).collect();
    all.sort();
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let table = table.clone();
            s.spawn(move || {
                for r in 0..ROUNDS {
                    let rows: Vec<RawRow> = (0..SERIES_PER_WRITER)
                        .map(|i| {
                            let id = w * SERIES_PER_WRITER + i;
                            RawRow {
                                tsid: tsid(id),
                                timestamp: base + r * 15_000,
                                value: (id as i64 * 1000 + r) as f64,
                            }
                        })
                        .collect();
                    table.add_rows(&rows).unwrap();
                    if r % 20 == 19 {
                        table.flush().unwrap();
                    }
                }
            });
        }
        let reader_table = table.clone();
        let reader_done = done.clone();
        let all = all.clone();
        s.spawn(move || {
            while !reader_done.load(Ordering::Relaxed) {
                reader_table
                    .search(&all, TimeRange { min: 0, max: i64::MAX }, &mut |id, ts, vs| {
                        assert!(
                            ts.windows(2).all(|w| w[0] < w[1]),
                            "unsorted or duplicated samples for {id:?}"
                        );
                        assert_eq!(ts.len(), vs.len());
                        for (t, v) in ts.iter().zip(vs) {
                            assert_eq!(*v, (id.metric_id as i64 * 1000 + (t - base) / 15_000) as f64);
                        }
                        Ok(())
                    })
                    .unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Writers finish first (the scope joins them in order of completion; poll the stats).
        while table.stats().rows_added < 2 * SERIES_PER_WRITER * ROUNDS as u64 {
            std::thread::sleep(Duration::from_millis(5));
        }
        table.force_merge("").unwrap();
        done.store(true, Ordering::Relaxed);
    });
    let table = Arc::into_inner(table).unwrap();
    table.close().unwrap();
    let table = Table::open(dir.path(), opts(), Arc::new(NoDeletedMetricIds)).unwrap();
    let st = table.stats();
    assert_eq!(
        st.small.rows + st.big.rows,
        2 * SERIES_PER_WRITER * ROUNDS as u64,
        "{st:?}"
    );
    let mut seen = 0;
    table
        .search(&all, TimeRange { min: 0, max: i64::MAX }, &mut |_, ts, _| {
            assert_eq!(ts.len(), ROUNDS as usize);
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, 2 * SERIES_PER_WRITER);
}
