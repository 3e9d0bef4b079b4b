//! IndexDb behaviour: Prometheus matcher semantics, restart, per-day vs global search, label
//! APIs, deletion, rotation, limits, corruption.

use std::collections::BTreeSet;

use strata_storage::index::{IndexDb, IndexOptions, Label, MatchOp, TagFilter};
use strata_storage::{StorageError, Tenant, TimeRange};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;
const ALL: TimeRange = TimeRange { min: 0, max: i64::MAX };

fn opts() -> IndexOptions {
    IndexOptions {
        cache_bytes: 16 << 20,
        ..IndexOptions::default()
    }
}

fn add(db: &IndexDb, tenant: Tenant, labels: &[(&str, &str)], ts: i64) -> strata_storage::Tsid {
    let ls: Vec<Label<'_>> = labels.iter().map(|(n, v)| Label { name: n, value: v }).collect();
    db.get_or_create_tsid(tenant, &ls, ts).unwrap()
}

fn f(name: &str, op: &str, value: &str) -> TagFilter {
    let op = match op {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::RegexMatch,
        "!~" => MatchOp::RegexNoMatch,
        _ => unreachable!(),
    };
    TagFilter::new(name, op, value)
}

/// Series identified by their `id` label, as a sorted string "a,b,c".
fn ids(db: &IndexDb, tenant: Tenant, filters: &[TagFilter], tr: TimeRange) -> String {
    let names = db.search_metric_names(tenant, filters, tr, 1000).unwrap();
    let mut v: Vec<String> = names
        .iter()
        .map(|mn| {
            mn.labels
                .iter()
                .find(|l| l.0 == "id")
                .map(|l| l.1.clone())
                .unwrap_or_default()
        })
        .collect();
    v.sort();
    v.join(",")
}

fn fixture(db: &IndexDb, t: Tenant) {
    let series: &[&[(&str, &str)]] = &[
        &[("__name__", "up"), ("id", "1"), ("job", "api"), ("instance", "h1")],
        &[
            ("__name__", "up"),
            ("id", "2"),
            ("job", "db"),
            ("instance", "h2"),
            ("env", "prod"),
        ],
        &[("__name__", "foo"), ("id", "3"), ("job", "api"), ("env", "")],
        &[
            ("__name__", "foobar"),
            ("id", "4"),
            ("job", "fo"),
            ("env", "dev"),
            ("path", "a\nb"),
        ],
        &[
            ("__name__", "foo.bar"),
            ("id", "5"),
            ("job", "x\u{1}y"),
            ("env", "prod"),
        ],
    ];
    for s in series {
        add(db, t, s, T0);
    }
}

#[test]
fn matcher_semantics_follow_prometheus() {
    // Both evaluation paths (index scans, and matching on series names) must agree; a fresh
    // index per path so the result cache cannot answer for the other path. Other tests in
    // this binary may flip the switch concurrently: either path is correct.
    matcher_cases(0);
    matcher_cases(1000);
}

fn matcher_cases(threshold: usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant {
        account_id: 1,
        project_id: 2,
    };
    fixture(&db, t);
    // Another tenant's series must never show up.
    add(
        &db,
        Tenant::default(),
        &[("__name__", "up"), ("id", "other"), ("job", "api")],
        T0,
    );
    let day = TimeRange {
        min: T0 - 1000,
        max: T0 + 1000,
    };
    let cases: &[(&[TagFilter], &str)] = &[
        (&[], "1,2,3,4,5"),
        (&[f("__name__", "=", "up")], "1,2"),
        (&[f("__name__", "=~", "foo")], "3"),
        (&[f("__name__", "=~", "fo")], ""),
        (&[f("__name__", "=~", "foo.*")], "3,4,5"),
        (&[f("__name__", "=~", "foo\\..*")], "5"),
        (&[f("__name__", "!~", "foo.*")], "1,2"),
        (&[f("job", "=~", "fo")], "4"),
        (&[f("job", "=~", "a.i|d.")], "1,2,3"),
        (&[f("job", "=~", "api|db")], "1,2,3"),
        (&[f("job", "!=", "api")], "2,4,5"),
        (&[f("job", "=", "x\u{1}y")], "5"),
        (&[f("env", "=", "")], "1,3"),
        (&[f("env", "!=", "")], "2,4,5"),
        (&[f("env", "=~", "")], "1,3"),
        (&[f("env", "=~", ".*")], "1,2,3,4,5"),
        (&[f("env", "=~", ".+")], "2,4,5"),
        (&[f("env", "!~", ".+")], "1,3"),
        (&[f("env", "!~", ".*")], ""),
        (&[f("env", "=~", "prod|")], "1,2,3,5"),
        (&[f("env", "!~", "prod|")], "4"),
        (&[f("env", "!~", "prod")], "1,3,4"),
        (&[f("env", "!=", "prod")], "1,3,4"),
        (&[f("nolabel", "=", "")], "1,2,3,4,5"),
        (&[f("nolabel", "!=", "")], ""),
        (&[f("path", "=~", "a.b")], "4"),
        (&[f("instance", "=~", "h[12]"), f("env", "=", "prod")], "2"),
        (&[f("__name__", "=", "up"), f("job", "!~", "d.*")], "1"),
        (&[f("job", "=", "api"), f("env", "!=", "")], ""),
        (&[f("__name__", "=~", "(up|foo)"), f("instance", "!=", "h2")], "1,3"),
        (&[f("id", "=~", "[0-9]+"), f("id", "!~", "[3-9]")], "1,2"),
    ];
    strata_storage::index::set_match_by_name_below(threshold);
    for (filters, want) in cases {
        assert_eq!(&ids(&db, t, filters, day), want, "filters {filters:?} (per-day)");
        assert_eq!(&ids(&db, t, filters, ALL), want, "filters {filters:?} (global)");
    }
    let bad = db.search_tsids(t, &[f("job", "=~", "(")], day, 10);
    assert!(matches!(bad, Err(StorageError::InvalidInput(_))), "{bad:?}");
    let err = db.search_tsids(t, &[], day, 3).unwrap_err();
    assert!(matches!(err, StorageError::TooManySeries { limit: 3 }));
}

#[test]
fn known_series_keep_their_tsid_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tenant::default();
    let mut tsids = Vec::new();
    {
        let db = IndexDb::open(dir.path(), opts()).unwrap();
        for i in 0..2000 {
            let v = i.to_string();
            tsids.push(add(&db, t, &[("__name__", "m"), ("i", &v), ("job", "j")], T0));
        }
        // Same labels in another order and with an empty label: the same series.
        assert_eq!(
            add(&db, t, &[("job", "j"), ("i", "0"), ("x", ""), ("__name__", "m")], T0),
            tsids[0]
        );
        let uniq: BTreeSet<u64> = tsids.iter().map(|t| t.metric_id).collect();
        assert_eq!(uniq.len(), 2000);
        db.close().unwrap();
    }
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let found = db.search_tsids(t, &[f("__name__", "=", "m")], ALL, 10_000).unwrap();
    let mut want = tsids.clone();
    want.sort();
    assert_eq!(found, want);
    // A known series resolves to the same TSID after restart (index lookup, cache empty).
    assert_eq!(
        add(&db, t, &[("__name__", "m"), ("i", "7"), ("job", "j")], T0 + DAY),
        tsids[7]
    );
    // The new day's entries were written: a per-day search of that day finds it.
    let next_day = TimeRange {
        min: T0 + DAY,
        max: T0 + DAY,
    };
    assert_eq!(db.search_tsids(t, &[], next_day, 10).unwrap(), vec![tsids[7]]);
    let mn = db.metric_name(&tsids[7]).unwrap().unwrap();
    assert_eq!(
        mn.labels,
        vec![
            ("__name__".into(), "m".into()),
            ("i".into(), "7".into()),
            ("job".into(), "j".into())
        ]
    );
    // New ids never go backwards.
    let fresh = add(&db, t, &[("__name__", "new")], T0);
    assert!(fresh.metric_id > tsids.iter().map(|t| t.metric_id).max().unwrap());
}

#[test]
fn per_day_and_global_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant::default();
    add(&db, t, &[("__name__", "a"), ("id", "early")], T0);
    add(&db, t, &[("__name__", "a"), ("id", "late")], T0 + 50 * DAY);
    assert_eq!(ids(&db, t, &[], TimeRange { min: T0, max: T0 + DAY }), "early");
    assert_eq!(
        ids(
            &db,
            t,
            &[],
            TimeRange {
                min: T0 + 49 * DAY,
                max: T0 + 51 * DAY
            }
        ),
        "late"
    );
    // > 40 days: the global index, which knows both.
    assert_eq!(
        ids(
            &db,
            t,
            &[],
            TimeRange {
                min: T0,
                max: T0 + 60 * DAY
            }
        ),
        "early,late"
    );
    assert_eq!(
        db.series_count(
            t,
            TimeRange {
                min: T0,
                max: T0 + 10 * DAY
            }
        )
        .unwrap(),
        1
    );
    assert_eq!(db.series_count(t, ALL).unwrap(), 2);
}

#[test]
fn label_names_values_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant {
        account_id: 1,
        project_id: 2,
    };
    fixture(&db, t);
    let day = TimeRange { min: T0, max: T0 };
    assert_eq!(
        db.label_names(t, &[], day, 0).unwrap(),
        ["__name__", "env", "id", "instance", "job", "path"]
    );
    assert_eq!(
        db.label_names(t, &[f("__name__", "=", "up")], day, 0).unwrap(),
        ["__name__", "env", "id", "instance", "job"]
    );
    assert_eq!(db.label_names(t, &[], day, 2).unwrap(), ["__name__", "env"]);
    assert_eq!(
        db.label_values(t, "__name__", &[], day, 0).unwrap(),
        ["foo", "foo.bar", "foobar", "up"]
    );
    assert_eq!(
        db.label_values(t, "env", &[f("job", "!=", "api")], ALL, 0).unwrap(),
        ["dev", "prod"]
    );
    assert_eq!(
        db.label_values(t, "job", &[f("env", "=", "prod")], day, 0).unwrap(),
        ["db", "x\u{1}y"]
    );
    assert!(db.label_values(t, "missing", &[], day, 0).unwrap().is_empty());
    assert!(
        db.label_values(Tenant::default(), "job", &[], day, 0)
            .unwrap()
            .is_empty()
    );
    let st = db.tsdb_status(t, T0, Some("job"), 2).unwrap();
    assert_eq!(st.total_series, 5);
    assert_eq!(st.series_count_by_metric_name[0].name, "up");
    assert_eq!(st.series_count_by_metric_name[0].value, 2);
    assert_eq!(st.series_count_by_label_name.len(), 2);
    assert_eq!(st.series_count_by_label_name[0].name, "__name__");
    assert_eq!(st.series_count_by_label_name[0].value, 5);
    assert_eq!(st.series_count_by_focus_label_value[0].name, "api");
    assert_eq!(st.series_count_by_focus_label_value[0].value, 2);
    assert_eq!(st.label_value_count_by_label_name[0].value, 5);
    // 5 names + 5 ids + 5 jobs + 2 instances + 3 envs + 1 path.
    assert_eq!(st.total_label_value_pairs, 21);
    let json = serde_json::to_string(&st).unwrap();
    assert!(
        json.contains("\"totalSeries\":5") && json.contains("seriesCountByLabelValuePair"),
        "{json}"
    );
}

#[test]
fn deleted_series_vanish_and_come_back_with_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tenant::default();
    let (old, kept);
    {
        let db = IndexDb::open(dir.path(), opts()).unwrap();
        old = add(&db, t, &[("__name__", "gone"), ("job", "a")], T0);
        kept = add(&db, t, &[("__name__", "stay"), ("job", "a")], T0);
        assert_eq!(db.delete_series(t, &[f("__name__", "=", "gone")]).unwrap(), 1);
        assert_eq!(db.delete_series(t, &[f("__name__", "=", "gone")]).unwrap(), 0);
        assert!(db.deleted_metric_ids().contains(old.metric_id));
        assert!(!db.deleted_metric_ids().contains(kept.metric_id));
        assert_eq!(db.search_tsids(t, &[f("job", "=", "a")], ALL, 10).unwrap(), vec![kept]);
        assert_eq!(db.label_values(t, "__name__", &[], ALL, 0).unwrap(), ["stay"]);
        assert!(db.metric_name(&old).unwrap().is_none());
        let again = add(&db, t, &[("__name__", "gone"), ("job", "a")], T0);
        assert_ne!(again.metric_id, old.metric_id);
        assert_eq!(
            db.search_tsids(t, &[f("__name__", "=", "gone")], ALL, 10).unwrap(),
            vec![again]
        );
        db.close().unwrap();
    }
    // Deletion is durable, and the re-created series stays findable by its new id.
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    assert!(db.deleted_metric_ids().contains(old.metric_id));
    let got = db.search_tsids(t, &[f("__name__", "=", "gone")], ALL, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_ne!(got[0].metric_id, old.metric_id);
    assert_eq!(add(&db, t, &[("__name__", "gone"), ("job", "a")], T0), got[0]);
}

#[test]
fn rotation_keeps_previous_period_and_drops_older() {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant::default();
    let a = add(&db, t, &[("__name__", "a")], T0);
    let b = add(&db, t, &[("__name__", "b")], T0);
    db.rotate().unwrap();
    // Both still found (previous table); `a` keeps its TSID when written again.
    let mut ab = vec![a, b];
    ab.sort();
    assert_eq!(ids_of(&db, t), ab);
    assert_eq!(add(&db, t, &[("__name__", "a")], T0 + DAY), a);
    db.rotate().unwrap();
    // `b` lived only in the dropped table; `a` was re-registered.
    assert_eq!(ids_of(&db, t), vec![a]);
    assert_eq!(add(&db, t, &[("__name__", "a")], T0 + 2 * DAY), a);
    drop(db);
    let tables = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(tables, 2);
}

fn ids_of(db: &IndexDb, t: Tenant) -> Vec<strata_storage::Tsid> {
    let mut v = db.search_tsids(t, &[], ALL, 100).unwrap();
    v.sort();
    v
}

#[test]
fn corrupt_index_part_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = IndexDb::open(dir.path(), opts()).unwrap();
        for i in 0..100 {
            add(&db, Tenant::default(), &[("__name__", "m"), ("i", &i.to_string())], T0);
        }
        db.close().unwrap();
    }
    let table = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let part = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && p.file_name().unwrap().len() == 16)
        .unwrap();
    std::fs::write(part.join("metaindex.bin"), b"not zstd").unwrap();
    let err = IndexDb::open(dir.path(), opts()).err().expect("corrupt part must fail");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(part.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn big_results_read_tsids_by_scan() {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant::default();
    let mut want = Vec::new();
    // Other tests in this binary may run while the switch is flipped: both paths are correct.
    strata_storage::index::set_scan_tsids_above(20_000);
    for i in 0..25_000 {
        let v = i.to_string();
        let g = (i % 2).to_string();
        want.push(add(&db, t, &[("__name__", "big"), ("i", &v), ("g", &g)], T0));
    }
    // Another tenant's rows sit next to them in the id→TSID namespace.
    add(
        &db,
        Tenant {
            account_id: 1,
            project_id: 0,
        },
        &[("__name__", "big")],
        T0,
    );
    db.flush().unwrap();
    want.sort();
    assert_eq!(db.search_tsids(t, &[], ALL, 100_000).unwrap(), want);
    let even: Vec<_> = db.search_tsids(t, &[f("g", "=", "0")], ALL, 100_000).unwrap();
    assert_eq!(even.len(), 12_500);
    assert!(even.iter().all(|x| want.binary_search(x).is_ok()));
}

#[test]
fn concurrent_writers_agree_on_one_tsid_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(IndexDb::open(dir.path(), opts()).unwrap());
    let deleted_view = db.deleted_metric_ids();
    let t = Tenant::default();
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                (0..500)
                    .map(|i| {
                        let v = i.to_string();
                        // Half the writers send the labels in another order (another raw form).
                        if w % 2 == 0 {
                            add(&db, t, &[("__name__", "c"), ("i", &v), ("job", "j")], T0)
                        } else {
                            add(&db, t, &[("job", "j"), ("i", &v), ("__name__", "c")], T0)
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<_>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    assert_eq!(db.series_count(t, ALL).unwrap(), 500);
    // The data side's view, taken before, sees later deletions.
    db.delete_series(t, &[f("i", "=", "3")]).unwrap();
    assert!(deleted_view.contains(results[0][3].metric_id));
}

#[test]
fn cached_results_follow_writes_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant::default();
    let q = [f("job", "=", "a")];
    add(&db, t, &[("__name__", "m"), ("id", "1"), ("job", "a")], T0);
    assert_eq!(ids(&db, t, &q, ALL), "1");
    assert_eq!(ids(&db, t, &q, ALL), "1");
    add(&db, t, &[("__name__", "m"), ("id", "2"), ("job", "a")], T0);
    assert_eq!(ids(&db, t, &q, ALL), "1,2");
    db.delete_series(t, &[f("id", "=", "1")]).unwrap();
    assert_eq!(ids(&db, t, &q, ALL), "2");
    // A known series seen on a new day writes per-day entries: the day's result changes.
    let day2 = TimeRange {
        min: T0 + DAY,
        max: T0 + DAY,
    };
    assert_eq!(ids(&db, t, &q, day2), "");
    add(&db, t, &[("__name__", "m"), ("id", "2"), ("job", "a")], T0 + DAY);
    assert_eq!(ids(&db, t, &q, day2), "2");
}

#[test]
fn oversized_names_are_rejected_and_empty_label_names_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let db = IndexDb::open(dir.path(), opts()).unwrap();
    let t = Tenant::default();
    let big = "v".repeat(40_000);
    let labels = [
        Label {
            name: "__name__",
            value: "m",
        },
        Label { name: "a", value: &big },
        Label { name: "b", value: &big },
    ];
    let err = db.get_or_create_tsid(t, &labels, T0).unwrap_err();
    assert!(matches!(err, StorageError::InvalidInput(_)), "{err}");
    let a = add(&db, t, &[("__name__", "m"), ("", "x"), ("job", "j")], T0);
    assert_eq!(add(&db, t, &[("__name__", "m"), ("job", "j")], T0), a);
    assert_eq!(db.label_values(t, "__name__", &[], ALL, 0).unwrap(), ["m"]);
}
