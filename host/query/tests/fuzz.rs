//! Property tests: the parser never panics, printing is a fixpoint, evaluation never panics.

use std::sync::Arc;

use proptest::prelude::*;
use strata_query::{Engine, FunctionRegistry, Labels, MemSource, QueryOptions, parse};

/// Small PromQL fragments glued together: mostly invalid, sometimes valid input.
fn fragments() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "foo",
        "bar",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "5m",
        ":",
        "1m",
        "=",
        "=~",
        "!=",
        "!~",
        "\"a\"",
        "'b'",
        "`c`",
        ",",
        "+",
        "-",
        "*",
        "/",
        "%",
        "^",
        "==",
        "!=",
        ">",
        "<",
        ">=",
        "<=",
        "and",
        "or",
        "unless",
        "bool",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "by",
        "without",
        "sum",
        "topk",
        "rate",
        "offset",
        "@",
        "start()",
        "end()",
        "1",
        "0x1f",
        "1e3",
        "NaN",
        "Inf",
        ".5",
        "#c\n",
        " ",
        "label_replace",
        "histogram_quantile",
        "é",
        "\"\\",
        "\\",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.join(" "))
}

/// Valid expressions from a small grammar.
fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("foo".to_string()),
        Just("bar{a=\"x\"}".to_string()),
        Just("foo offset 1m".to_string()),
        Just("bar @ 60".to_string()),
        Just("2".to_string()),
        Just("rate(foo[2m])".to_string()),
        Just("max_over_time(bar[3m:1m])".to_string()),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "%", "^", "> bool", "atan2"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) + on(a) group_left() ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            inner.clone().prop_map(|a| format!("sum by (a) ({a})")),
            inner.clone().prop_map(|a| format!("topk(2, {a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.clone().prop_map(|a| format!("abs({a})")),
            inner.clone().prop_map(|a| format!("avg_over_time(({a})[2m:30s])")),
            inner.prop_map(|a| format!("label_replace({a}, \"b\", \"$1\", \"a\", \"(.*)\")")),
        ]
    })
}

fn engine() -> Engine {
    let mut src = MemSource::new();
    for (name, a) in [("foo", "x"), ("foo", "y"), ("bar", "x")] {
        src.add(
            Labels::from_pairs([("__name__", name), ("a", a)]),
            (0..20).map(|k| (k * 30_000, (k * 7 % 11) as f64)),
        );
    }
    Engine::new(Arc::new(src), QueryOptions::default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parser_never_panics(s in fragments()) {
        let _ = parse(&s, &FunctionRegistry::with_builtins());
    }

    #[test]
    fn parser_never_panics_on_any_text(s in "\\PC{0,40}") {
        let _ = parse(&s, &FunctionRegistry::with_builtins());
    }

    #[test]
    fn printing_is_a_fixpoint(q in expr()) {
        let reg = FunctionRegistry::with_builtins();
        // The generator ignores types (e.g. `scalar or vector`); those must fail cleanly, and
        // everything that parses must print to a form that parses to the same print.
        let Ok(first) = parse(&q, &reg) else { return Ok(()) };
        let once = first.to_string();
        let twice = parse(&once, &reg).map_err(|e| TestCaseError::fail(format!("{once}: {e}")))?.to_string();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn evaluation_never_panics(q in expr(), t in 0i64..700) {
        let e = engine();
        let _ = e.instant_query(&q, t * 1000);
        let _ = e.range_query(&q, t * 1000, t * 1000 + 120_000, 30_000);
    }
}
