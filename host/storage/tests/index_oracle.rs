//! Random series and random matchers: the index must return exactly what a brute-force
//! evaluation of Prometheus semantics returns, before and after flush, merge and restart.

use std::collections::BTreeMap;

use proptest::prelude::*;
use regex::Regex;
use strata_storage::index::{IndexDb, IndexOptions, Label, MatchOp, TagFilter};
use strata_storage::{Tenant, TimeRange};

const T0: i64 = 1_700_000_000_000;
const ALL: TimeRange = TimeRange { min: 0, max: i64::MAX };
const NAMES: [&str; 4] = ["__name__", "job", "env", "x"];
const VALUES: [&str; 6] = ["", "a", "b", "ab", "abc", "b\na"];
const REGEXES: [&str; 12] = [
    "", ".*", ".+", "a", "a|b", "a.*", "ab?", ".*c", "b.a", "(a|ab)c?", "a|", "[ab]+",
];

fn oracle_matches(series: &BTreeMap<String, String>, f: &TagFilter) -> bool {
    let v = series.get(&f.name).map(String::as_str).unwrap_or("");
    match f.op {
        MatchOp::Equal => v == f.value,
        MatchOp::NotEqual => v != f.value,
        MatchOp::RegexMatch => Regex::new(&format!("^(?s:{})$", f.value)).unwrap().is_match(v),
        MatchOp::RegexNoMatch => !Regex::new(&format!("^(?s:{})$", f.value)).unwrap().is_match(v),
    }
}

fn filter_strategy() -> impl Strategy<Value = TagFilter> {
    (0..NAMES.len(), 0..4usize, 0..VALUES.len(), 0..REGEXES.len()).prop_map(|(n, op, v, r)| {
        let (op, value) = match op {
            0 => (MatchOp::Equal, VALUES[v]),
            1 => (MatchOp::NotEqual, VALUES[v]),
            2 => (MatchOp::RegexMatch, REGEXES[r]),
            _ => (MatchOp::RegexNoMatch, REGEXES[r]),
        };
        TagFilter::new(NAMES[n], op, value)
    })
}

fn series_strategy() -> impl Strategy<Value = Vec<[usize; 4]>> {
    prop::collection::vec(
        [0..VALUES.len(), 0..VALUES.len(), 0..VALUES.len(), 0..VALUES.len()],
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn search_matches_brute_force(
        series in series_strategy(),
        queries in prop::collection::vec(prop::collection::vec(filter_strategy(), 0..4), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tenant::default();
        let mut model: Vec<BTreeMap<String, String>> = Vec::new();
        let mut db = IndexDb::open(dir.path(), IndexOptions { cache_bytes: 1 << 20, ..Default::default() }).unwrap();
        for (i, s) in series.iter().enumerate() {
            let id = i.to_string();
            let mut labels = vec![Label { name: "id", value: &id }];
            let mut m = BTreeMap::from([("id".to_string(), id.clone())]);
            for (n, &v) in NAMES.iter().zip(s) {
                labels.push(Label { name: n, value: VALUES[v] });
                if !VALUES[v].is_empty() {
                    m.insert(n.to_string(), VALUES[v].to_string());
                }
            }
            if model.contains(&m) {
                continue;
            }
            db.get_or_create_tsid(t, &labels, T0).unwrap();
            model.push(m);
            if i == series.len() / 2 {
                db.flush().unwrap();
            }
        }
        for round in 0..2 {
            // Round 0 evaluates every filter through the index, round 1 mostly on series names.
            strata_storage::index::set_match_by_name_below(if round == 0 { 0 } else { 1000 });
            for q in &queries {
                let mut want: Vec<String> =
                    model.iter().filter(|s| q.iter().all(|f| oracle_matches(s, f))).map(|s| s["id"].clone()).collect();
                want.sort();
                for tr in [ALL, TimeRange { min: T0, max: T0 }] {
                    let names = db.search_metric_names(t, q, tr, 1000).unwrap();
                    let mut got: Vec<String> = names
                        .iter()
                        .map(|mn| mn.labels.iter().find(|l| l.0 == "id").unwrap().1.clone())
                        .collect();
                    got.sort();
                    prop_assert_eq!(&got, &want, "round {} filters {:?}", round, q);
                    prop_assert_eq!(db.search_tsids(t, q, tr, 1000).unwrap().len(), want.len());
                }
            }
            db.close().unwrap();
            db = IndexDb::open(dir.path(), IndexOptions { cache_bytes: 1 << 20, ..Default::default() }).unwrap();
        }
    }
}
