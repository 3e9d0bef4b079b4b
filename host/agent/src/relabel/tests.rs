//! Table tests against Prometheus' documented relabeling semantics.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    normalize(&mut l);
    l
}

fn rule(yaml: &str) -> Relabel {
    let config: RelabelConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    Relabel::compile(&config).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// (rules as YAML list, input, expected output or None when dropped)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static [(&'static str, &'static str)]>,
);

const ABC: &[(&str, &str)] = &[("a", "foo"), ("b", "bar"), ("c", "baz")];

const CASES: &[Case] = &[
    // replace with a capture group referenced twice.
    (
        "[{source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch${1}-ch${1}'}]",
        ABC,
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")]),
    ),
    // several sources joined with the default separator.
    (
        "[{source_labels: [a, b], regex: 'f(.*);(.*)r', target_label: a, replacement: 'b${1}${2}m'}]",
        ABC,
        Some(&[("a", "boobam"), ("b", "bar"), ("c", "baz")]),
    ),
    // the regex is anchored: 'o' alone does not match "foo", nothing changes.
    ("[{source_labels: [a], regex: 'o', target_label: d}]", ABC, Some(ABC)),
    // an empty result removes the target label.
    (
        "[{source_labels: [a], regex: 'foo', target_label: b, replacement: ''}]",
        ABC,
        Some(&[("a", "foo"), ("c", "baz")]),
    ),
    // the target label name itself may come from the regex.
    (
        "[{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${1}', replacement: '${2}'}]",
        &[("a", "some-name-value")],
        Some(&[("a", "some-name-value"), ("name", "value")]),
    ),
    // an invalid resulting label name leaves everything as it was.
    (
        "[{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${1}', replacement: '${2}'}]",
        &[("a", "some-2name-value")],
        Some(&[("a", "some-2name-value")]),
    ),
    // default regex (.*) and replacement $1 copy a label; a missing source is the empty string.
    (
        "[{source_labels: [c], target_label: x}, {source_labels: [nope], target_label: y, replacement: 'v$1'}]",
        ABC,
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("x", "baz"), ("y", "v")]),
    ),
    // keep and drop.
    ("[{source_labels: [a], regex: 'f.*', action: keep}]", ABC, Some(ABC)),
    ("[{source_labels: [a], regex: 'b.*', action: keep}]", ABC, None),
    ("[{source_labels: [a], regex: 'f.*', action: drop}]", ABC, None),
    ("[{source_labels: [a], regex: 'f', action: drop}]", ABC, Some(ABC)),
    // keep on a missing label matches the empty string.
    ("[{source_labels: [zzz], regex: '', action: keep}]", ABC, Some(ABC)),
    // keepequal / dropequal compare with target_label's value.
    ("[{source_labels: [a], target_label: b, action: keepequal}]", ABC, None),
    (
        "[{source_labels: [a], target_label: b, action: keepequal}]",
        &[("a", "x"), ("b", "x")],
        Some(&[("a", "x"), ("b", "x")]),
    ),
    (
        "[{source_labels: [a], target_label: b, action: dropequal}]",
        &[("a", "x"), ("b", "x")],
        None,
    ),
    (
        "[{source_labels: [a], target_label: b, action: dropequal}]",
        ABC,
        Some(ABC),
    ),
    // hashmod: md5, last 8 bytes big-endian, mod modulus (Prometheus gets 976 for "baz").
    (
        "[{source_labels: [c], target_label: d, modulus: 1000, action: hashmod}]",
        ABC,
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]),
    ),
    // labelmap copies matching labels under the expanded name.
    (
        "[{regex: '__meta_(.+)', action: labelmap}]",
        &[("__meta_zone", "z1"), ("a", "foo")],
        Some(&[("__meta_zone", "z1"), ("a", "foo"), ("zone", "z1")]),
    ),
    (
        "[{regex: '(b.*)', replacement: 'bar_${1}', action: labelmap}]",
        ABC,
        Some(&[("a", "foo"), ("b", "bar"), ("bar_b", "bar"), ("c", "baz")]),
    ),
    // labeldrop / labelkeep match whole names.
    ("[{regex: '(b|c)', action: labeldrop}]", ABC, Some(&[("a", "foo")])),
    ("[{regex: 'b', action: labelkeep}]", ABC, Some(&[("b", "bar")])),
    (
        "[{regex: 'a.*', action: LabelDrop}]",
        ABC,
        Some(&[("b", "bar"), ("c", "baz")]),
    ),
    // lowercase / uppercase.
    (
        "[{source_labels: [a, b], separator: '-', target_label: u, action: uppercase}]",
        ABC,
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("u", "FOO-BAR")]),
    ),
    (
        "[{source_labels: [a], target_label: l, action: lowercase}]",
        &[("a", "MiXeD")],
        Some(&[("a", "MiXeD"), ("l", "mixed")]),
    ),
    // rules run in order; a drop stops the chain.
    (
        "[{source_labels: [a], target_label: a, replacement: 'bar'}, {source_labels: [a], regex: 'bar', action: drop}, {target_label: z, replacement: 'never'}]",
        ABC,
        None,
    ),
    // the regex matches across newlines, as Go's (?s) anchoring does.
    (
        "[{source_labels: [a], regex: 'x.*y', action: keep}]",
        &[("a", "x\ny")],
        Some(&[("a", "x\ny")]),
    ),
];

#[test]
fn table() {
    for (yaml, input, want) in CASES {
        let configs: Vec<RelabelConfig> = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let rules: Vec<Relabel> = configs.iter().map(|c| Relabel::compile(c).unwrap()).collect();
        let mut l = labels(input);
        let kept = apply_all(&rules, &mut l);
        match want {
            None => assert!(!kept, "{yaml}: expected drop, got {l:?}"),
            Some(want) => {
                assert!(kept, "{yaml}: dropped");
                assert_eq!(l, labels(want), "{yaml}");
            }
        }
    }
}

#[test]
fn compile_errors() {
    for (yaml, want) in [
        ("{action: explode}", "unknown relabel action"),
        ("{regex: '(', target_label: x}", "invalid relabel regex"),
        ("{source_labels: [a]}", "target_label"),
        ("{action: hashmod, target_label: x}", "modulus"),
        ("{action: lowercase}", "target_label"),
    ] {
        let config: RelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let err = Relabel::compile(&config).unwrap_err().to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

#[test]
fn set_and_normalize_keep_labels_sorted() {
    let mut l = labels(&[("b", "1"), ("a", "2"), ("b", "3"), ("e", "")]);
    assert_eq!(
        l,
        vec![("a".to_owned(), "2".to_owned()), ("b".to_owned(), "3".to_owned())]
    );
    set(&mut l, "c", "x".into());
    set(&mut l, "a", String::new());
    assert_eq!(get(&l, "c"), Some("x"));
    assert_eq!(get(&l, "a"), None);
    assert!(l.windows(2).all(|w| w[0].0 < w[1].0));
    let r = rule("{source_labels: [c], target_label: d}");
    assert!(r.apply(&mut l));
    assert_eq!(get(&l, "d"), Some("x"));
}
