//! Snapshot tests of the parser: each query printed back canonically, or its error.

use expect_test::{Expect, expect};

use crate::functions::FunctionRegistry;
use crate::parser::parse;

fn check(queries: &[&str], want: Expect) {
    let reg = FunctionRegistry::with_builtins();
    let mut out = String::new();
    for q in queries {
        let line = match parse(q, &reg) {
            Ok(e) => format!("{e}"),
            Err(e) => format!("ERR {e}"),
        };
        out.push_str(&format!("{q}\n  => {line}\n"));
    }
    want.assert_eq(&out);
}

#[test]
fn selectors() {
    check(
        &[
            "foo",
            "foo{}",
            r#"foo{a="b", c!="d", e=~"f.*", g!~"h",}"#,
            r#"{__name__=~"job:.*"}"#,
            r#"{__name__="foo", a="b"}"#,
            "job:rate5m:sum",
            "foo offset 5m",
            "foo offset -1h30m",
            "foo @ 1609746000",
            "foo @ start() offset 1m",
            "foo offset 1m @ end()",
            "foo[5m]",
            "foo[5m] offset 1w @ 100.5",
            r#"foo{a='b\'c', d=`e\n`}"#,
        ],
        expect![[r#"
            foo
              => foo
            foo{}
              => foo
            foo{a="b", c!="d", e=~"f.*", g!~"h",}
              => foo{a="b", c!="d", e=~"f.*", g!~"h"}
            {__name__=~"job:.*"}
              => {__name__=~"job:.*"}
            {__name__="foo", a="b"}
              => {__name__="foo", a="b"}
            job:rate5m:sum
              => job:rate5m:sum
            foo offset 5m
              => foo offset 5m
            foo offset -1h30m
              => foo offset -1h30m
            foo @ 1609746000
              => foo @ 1609746000.000
            foo @ start() offset 1m
              => foo @ start() offset 1m
            foo offset 1m @ end()
              => foo @ end() offset 1m
            foo[5m]
              => foo[5m]
            foo[5m] offset 1w @ 100.5
              => foo[5m] @ 100.500 offset 1w
            foo{a='b\'c', d=`e\n`}
              => foo{a="b'c", d="e\\n"}
        "#]],
    );
}

#[test]
fn operators() {
    check(
        &[
            "1 + 2 * 3",
            "(1 + 2) * 3",
            "2 ^ 3 ^ 2",
            "-2 ^ 2",
            "-foo * 2",
            "a - b - c",
            "a or b and c unless d",
            "a > bool b",
            "1 == bool 2",
            "a + on(x, y) group_left(z) b",
            "a * ignoring(x) group_right b",
            "a and on() b",
            "a atan2 b",
            "0x10 + 1e3 + .5 + Inf + -NaN",
            "+foo",
            "a / on(job) b > 0.5",
        ],
        expect![[r#"
            1 + 2 * 3
              => 1 + 2 * 3
            (1 + 2) * 3
              => (1 + 2) * 3
            2 ^ 3 ^ 2
              => 2 ^ 3 ^ 2
            -2 ^ 2
              => -2 ^ 2
            -foo * 2
              => -foo * 2
            a - b - c
              => a - b - c
            a or b and c unless d
              => a or b and c unless d
            a > bool b
              => a > bool b
            1 == bool 2
              => 1 == bool 2
            a + on(x, y) group_left(z) b
              => a + on(x, y) group_left(z) b
            a * ignoring(x) group_right b
              => a * ignoring(x) group_right() b
            a and on() b
              => a and on() b
            a atan2 b
              => a atan2 b
            0x10 + 1e3 + .5 + Inf + -NaN
              => 16 + 1000 + 0.5 + Inf + NaN
            +foo
              => foo
            a / on(job) b > 0.5
              => a / on(job) b > 0.5
        "#]],
    );
}

#[test]
fn calls_aggregations_subqueries() {
    check(
        &[
            "rate(foo[5m])",
            "sum by (job) (rate(http_requests_total[5m]))",
            "sum(rate(foo[5m])) without (instance, le)",
            "topk(3, foo)",
            "quantile without() (0.9, foo)",
            r#"count_values("value", foo)"#,
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))",
            r#"label_replace(up, "x", "$1", "job", "(.*)")"#,
            r#"label_join(up, "x", ",", "a", "b", "c")"#,
            "round(foo)",
            "round(foo, 10)",
            "time()",
            "max_over_time(rate(foo[1m])[1h:5m])",
            "min_over_time((foo)[10m:] offset 1m)",
            "rate(foo[5m:1m])[1h:] @ 100",
            "sum(foo) by (a) # trailing comment",
        ],
        expect![[r#"
            rate(foo[5m])
              => rate(foo[5m])
            sum by (job) (rate(http_requests_total[5m]))
              => sum by (job) (rate(http_requests_total[5m]))
            sum(rate(foo[5m])) without (instance, le)
              => sum without (instance, le) (rate(foo[5m]))
            topk(3, foo)
              => topk(3, foo)
            quantile without() (0.9, foo)
              => quantile without () (0.9, foo)
            count_values("value", foo)
              => count_values("value", foo)
            histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))
              => histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))
            label_replace(up, "x", "$1", "job", "(.*)")
              => label_replace(up, "x", "$1", "job", "(.*)")
            label_join(up, "x", ",", "a", "b", "c")
              => label_join(up, "x", ",", "a", "b", "c")
            round(foo)
              => round(foo)
            round(foo, 10)
              => round(foo, 10)
            time()
              => time()
            max_over_time(rate(foo[1m])[1h:5m])
              => max_over_time(rate(foo[1m])[1h:5m])
            min_over_time((foo)[10m:] offset 1m)
              => min_over_time((foo)[10m:] offset 1m)
            rate(foo[5m:1m])[1h:] @ 100
              => rate(foo[5m:1m])[1h:] @ 100.000
            sum(foo) by (a) # trailing comment
              => sum by (a) (foo)
        "#]],
    );
}

#[test]
fn errors() {
    check(
        &[
            "",
            "foo{",
            "foo{a=}",
            "foo{a~\"b\"}",
            "{}",
            r#"{a=""}"#,
            r#"foo{__name__="bar"}"#,
            "sum(",
            "1 +",
            "foo[5m",
            "foo[5x]",
            "rate(foo)",
            "rate(foo[5m], 1)",
            "nosuch(foo)",
            "1 > 2",
            "1 and 2",
            "foo + bool bar",
            "sum(foo[5m])",
            "topk(foo)",
            "topk(foo, bar)",
            "(foo)[5m]",
            "foo[5m][5m]",
            "foo offset 1m offset 2m",
            "rate(foo[5m]) offset 1m",
            "foo @ end",
            "foo and on(a) group_left b",
            "a + on(x) group_left(x) b",
            "foo\n  + by",
            r#""unterminated"#,
            "1m",
            "foo bar",
            "sum by foo (bar)",
            "foo[5m] + 1",
        ],
        expect![[r#"

              => ERR 1:1: parse error: no expression found in input
            foo{
              => ERR 1:5: parse error: unexpected end of input in label matching, expected label or "}"
            foo{a=}
              => ERR 1:7: parse error: unexpected "}" in label matching, expected string
            foo{a~"b"}
              => ERR 1:6: parse error: unexpected character: '~'
            {}
              => ERR 1:1: parse error: vector selector must contain at least one non-empty matcher
            {a=""}
              => ERR 1:1: parse error: vector selector must contain at least one non-empty matcher
            foo{__name__="bar"}
              => ERR 1:5: parse error: metric name must not be set twice: "foo" or "bar"
            sum(
              => ERR 1:5: parse error: unexpected end of input
            1 +
              => ERR 1:4: parse error: unexpected end of input
            foo[5m
              => ERR 1:7: parse error: unexpected end of input in range selector, expected "]"
            foo[5x]
              => ERR 1:5: parse error: bad number or duration syntax: "5x"
            rate(foo)
              => ERR 1:1: parse error: expected type range vector in call to function "rate", got instant vector
            rate(foo[5m], 1)
              => ERR 1:1: parse error: expected 1 argument(s) in call to "rate", got 2
            nosuch(foo)
              => ERR 1:1: parse error: unknown function with name "nosuch"
            1 > 2
              => ERR 1:3: parse error: comparisons between scalars must use BOOL modifier
            1 and 2
              => ERR 1:3: parse error: set operator "and" not allowed in binary scalar expression
            foo + bool bar
              => ERR 1:5: parse error: bool modifier can only be used on comparison operators
            sum(foo[5m])
              => ERR 1:1: parse error: expected type instant vector in aggregation expression, got range vector
            topk(foo)
              => ERR 1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1
            topk(foo, bar)
              => ERR 1:1: parse error: expected type scalar in aggregation parameter, got instant vector
            (foo)[5m]
              => ERR 1:6: parse error: ranges only allowed for vector selectors
            foo[5m][5m]
              => ERR 1:8: parse error: ranges only allowed for vector selectors
            foo offset 1m offset 2m
              => ERR 1:15: parse error: offset may not be set multiple times
            rate(foo[5m]) offset 1m
              => ERR 1:15: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery
            foo @ end
              => ERR 1:7: parse error: unexpected identifier "end" in @, expected timestamp
            foo and on(a) group_left b
              => ERR 1:15: parse error: no grouping allowed for "and" operation
            a + on(x) group_left(x) b
              => ERR 1:11: parse error: label "x" must not occur in ON and GROUP clause at once
            foo
              + by
              => ERR 2:5: parse error: unexpected <by>
            "unterminated
              => ERR 1:1: parse error: unterminated quoted string
            1m
              => ERR 1:1: parse error: unexpected duration
            foo bar
              => ERR 1:5: parse error: unexpected identifier "bar"
            sum by foo (bar)
              => ERR 1:8: parse error: unexpected identifier "foo" in grouping opts, expected "("
            foo[5m] + 1
              => ERR 1:9: parse error: binary expression must contain only scalar and instant vector types
        "#]],
    );
}

#[test]
fn printed_form_reparses_to_itself() {
    let reg = FunctionRegistry::with_builtins();
    for q in [
        "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / on(job) group_left sum by (job) (rate(http_requests_total[5m]))",
        "max_over_time(deriv(foo[5m])[1h:1m] offset -5m)",
        "-(a ^ -b) % 3 atan2 c",
        "foo @ 100 offset 1m and bar unless baz or qux",
    ] {
        let once = parse(q, &reg).unwrap().to_string();
        let twice = parse(&once, &reg).unwrap().to_string();
        assert_eq!(once, twice, "{q}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let reg = FunctionRegistry::with_builtins();
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = parse(&deep, &reg).unwrap_err();
    assert!(err.msg.contains("too deep"), "{err}");
    let ok = format!("{}1{}", "(".repeat(150), ")".repeat(150));
    assert!(parse(&ok, &reg).is_ok());
    let minus = format!("{}1", "-".repeat(100_000));
    assert!(parse(&minus, &reg).is_err());
}
