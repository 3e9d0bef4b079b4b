//! Model-based property test: whatever rows go in (any order, duplicates, specials, flushes and
//! merges anywhere), a search returns per series exactly the sorted, exact-duplicate-free
//! samples, before and after a merge and a reopen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use strata_storage::data::{RawRow, Table, TableOptions};
use strata_storage::encoding::decimal::stale_nan;
use strata_storage::{NoDeletedMetricIds, TimeRange, Tsid};

type Model = BTreeMap<Tsid, Vec<(i64, u64)>>;

fn tsid(i: u8) -> Tsid {
    Tsid {
        metric_group_id: u64::from(i % 3),
        instance_id: u32::from(i % 2),
        metric_id: u64::from(i),
        ..Default::default()
    }
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-1_000_000i64..1_000_000, 0u32..4).prop_map(|(m, e)| m as f64 / 10f64.powi(e as i32)),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(stale_nan()),
        1 => Just(-0.0),
        1 => any::<f64>().prop_filter("no plain NaN", |v| !v.is_nan()),
    ]
}

fn batch() -> impl Strategy<Value = (Vec<(u8, i64, f64)>, bool)> {
    (
        prop::collection::vec((0u8..12, 0i64..400, value()), 0..120),
        any::<bool>(),
    )
}

fn search(t: &Table, m: &Model) -> Model {
    let ids: Vec<Tsid> = m.keys().copied().collect();
    let mut out = Model::new();
    t.search(&ids, TimeRange { min: 0, max: i64::MAX }, &mut |id, ts, vs| {
        out.insert(*id, ts.iter().zip(vs).map(|(t, v)| (*t, v.to_bits())).collect());
        Ok(())
    })
    .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn search_matches_model(batches in prop::collection::vec(batch(), 1..6), merge in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let base = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 - 86_400_000;
        let o = TableOptions {
            pending_rows_flush_interval: Duration::from_millis(5),
            inmemory_flush_interval: Duration::from_millis(20),
            min_free_disk_bytes: 0,
            ..Default::default()
        };
        let t = Table::open(dir.path(), o.clone(), Arc::new(NoDeletedMetricIds)).unwrap();
        let mut raw: BTreeMap<Tsid, Vec<(i64, f64)>> = BTreeMap::new();
        for (rows, flush) in &batches {
            let rows: Vec<RawRow> = rows
                .iter()
                .map(|(s, k, v)| RawRow { tsid: tsid(*s), timestamp: base + k * 1000, value: *v })
                .collect();
            for r in &rows {
                raw.entry(r.tsid).or_default().push((r.timestamp, r.value));
            }
            t.add_rows(&rows).unwrap();
            if *flush {
                t.flush().unwrap();
            }
        }
        let model: Model = raw
            .into_iter()
            .map(|(id, mut s)| {
                s.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                let mut v: Vec<(i64, u64)> = s.into_iter().map(|(t, v)| (t, v.to_bits())).collect();
                v.dedup();
                (id, v)
            })
            .collect();
        t.flush().unwrap();
        prop_assert_eq!(&search(&t, &model), &model);
        if merge {
            t.force_merge("").unwrap();
            prop_assert_eq!(&search(&t, &model), &model);
        }
        t.close().unwrap();
        let t = Table::open(dir.path(), o, Arc::new(NoDeletedMetricIds)).unwrap();
        prop_assert_eq!(&search(&t, &model), &model);
    }
}
