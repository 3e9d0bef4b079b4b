use super::*;

/// Labels and samples of one parsed series.
type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn parse(p: &[(&str, &str)], body: &str) -> Result<Vec<Series>, ParseError> {
    parse_with(p, body, &Options::default())
}

fn parse_with(p: &[(&str, &str)], body: &str, opts: &Options) -> Result<Vec<Series>, ParseError> {
    let mut out = BatchBuilder::new();
    parse_lines(&params(p), body.as_bytes(), 42, opts, &mut out)?;
    let b = out.finish();
    Ok((0..b.series_count())
        .map(|s| {
            let labels = b
                .labels(s)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (labels, b.samples(s))
        })
        .collect())
}

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    params(pairs)
}

#[test]
fn fields_become_measurement_field_series_with_tags() {
    let got = parse(&[], "cpu,host=a,region=eu usage=0.5,idle=3i 1700000000000000000\n").unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].0,
        l(&[("__name__", "cpu_usage"), ("host", "a"), ("region", "eu")])
    );
    assert_eq!(got[0].1, vec![(1_700_000_000_000, 0.5)]);
    assert_eq!(got[1].0[0], ("__name__".to_string(), "cpu_idle".to_string()));
    assert_eq!(got[1].1, vec![(1_700_000_000_000, 3.0)]);
}

#[test]
fn precision_and_default_timestamp() {
    assert_eq!(
        parse(&[("precision", "s")], "m v=1 1700000000").unwrap()[0].1,
        vec![(1_700_000_000_000, 1.0)]
    );
    assert_eq!(parse(&[("precision", "ms")], "m v=1 5").unwrap()[0].1, vec![(5, 1.0)]);
    assert_eq!(
        parse(&[("precision", "us")], "m v=1 5000").unwrap()[0].1,
        vec![(5, 1.0)]
    );
    assert_eq!(
        parse(&[("precision", "h")], "m v=1 1").unwrap()[0].1,
        vec![(3_600_000, 1.0)]
    );
    assert_eq!(parse(&[], "m v=1").unwrap()[0].1, vec![(42, 1.0)]);
    assert!(parse(&[("precision", "fortnight")], "m v=1").is_err());
}

#[test]
fn value_types_strings_skipped_booleans_numeric() {
    let got = parse(&[], "m a=\"text, with = spaces\",b=t,c=FALSE,d=-12i,e=7u,f=1e3").unwrap();
    let names: Vec<_> = got.iter().map(|s| s.0[0].1.as_str()).collect();
    assert_eq!(names, ["m_b", "m_c", "m_d", "m_e", "m_f"]);
    let values: Vec<f64> = got.iter().map(|s| s.1[0].1).collect();
    assert_eq!(values, [1.0, 0.0, -12.0, 7.0, 1000.0]);
}

#[test]
fn escapes_db_param_comments_and_sanitizing() {
    let body = "# comment\n\nweb\\ server,path=/a\\,b,my-tag=x req=1\r\n";
    let got = parse(&[("db", "telegraf")], body).unwrap();
    assert_eq!(
        got[0].0,
        l(&[
            ("__name__", "web_server_req"),
            ("path", "/a,b"),
            ("my_tag", "x"),
            ("db", "telegraf")
        ])
    );
    let got = parse(&[("db", "x")], "m,db=own v=1").unwrap();
    assert_eq!(got[0].0, l(&[("__name__", "m_v"), ("db", "own")]));
    // A key to sanitize is fixed once and remembered: the next lines get the same name, and a
    // value spelt like the raw key stays as it is.
    let got = parse(&[], "m,my-tag=a v=1\nm,my-tag=b,k=my-tag v=2\nm,my-tag=c v=3").unwrap();
    assert_eq!(got[1].0, l(&[("__name__", "m_v"), ("my_tag", "b"), ("k", "my-tag")]));
    assert_eq!(got[2].0, l(&[("__name__", "m_v"), ("my_tag", "c")]));
}

#[test]
fn naming_options() {
    let opts = Options {
        separator: ".".into(),
        skip_single_field: true,
    };
    let got = parse_with(&[], "cpu v=1\ncpu a=1,b=2", &opts).unwrap();
    let names: Vec<_> = got.iter().map(|s| s.0[0].1.as_str()).collect();
    // `.` is not a valid name character and is sanitised.
    assert_eq!(names, ["cpu", "cpu_a", "cpu_b"]);
}

#[test]
fn errors_name_line_and_offset() {
    let e = parse(&[], "ok v=1\nbad,tag v=1\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(e.offset, 11, "points at the tag");
    let e = parse(&[], "m v=abc").unwrap_err();
    assert_eq!((e.line, e.offset), (1, 4));
    assert!(e.message.contains("abc"));
    assert!(parse(&[], "m").is_err());
    assert!(parse(&[], "m v=1 notatime").is_err());
    assert!(parse(&[], "m s=\"open").is_err());
    assert!(parse(&[], ",t=1 v=1").is_err());
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "\\",
        "m,\\",
        "m v=",
        "m v=1,",
        "m,a= v=1",
        "= =",
        "m v=1 99999999999999999999",
        "m v=\"\\",
    ];
    for input in inputs {
        let _ = parse(&[], input);
    }
    let _ = parse(&[("precision", "h")], "m v=1 9223372036854775807");
}

#[test]
fn names_stay_right_when_lines_repeat() {
    // Names are cached by (measurement, field, single-field naming): a one-field line of a
    // measurement seen with two fields must still be named by its measurement alone.
    let opts = Options {
        separator: "_".into(),
        skip_single_field: true,
    };
    let body = "cpu a=1,b=2\ncpu a=3,b=4\ncpu a=5\nweb\\ x v=1\nweb\\ x v=2\nweb\\ x v=3,w=4\n";
    let got = parse_with(&[], body, &opts).unwrap();
    let names: Vec<_> = got.iter().map(|s| s.0[0].1.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu_a", "cpu_b", "cpu_a", "cpu_b", "cpu", "web_x", "web_x", "web_x_v", "web_x_w"
        ]
    );
    let values: Vec<f64> = got.iter().map(|s| s.1[0].1).collect();
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn repeated_tag_pairs_keep_their_own_labels() {
    // Tag pairs are cached by their raw `key=value` text: near misses (a longer value, a longer
    // key, an escaped key, a key to sanitize) must each get their own labels.
    let body =
        "m,h=a,r=eu v=1\nm,h=a,r=eu-1 v=2\nm,h=ab,r=eu v=3\nm,hh=a v=4\nm,h\\ x=a v=5\nm,h-x=a v=6\nm,h-x=a,h=a v=7\n";
    let got = parse(&[], body).unwrap();
    let labels: Vec<_> = got.into_iter().map(|s| s.0).collect();
    assert_eq!(
        labels,
        [
            l(&[("__name__", "m_v"), ("h", "a"), ("r", "eu")]),
            l(&[("__name__", "m_v"), ("h", "a"), ("r", "eu-1")]),
            l(&[("__name__", "m_v"), ("h", "ab"), ("r", "eu")]),
            l(&[("__name__", "m_v"), ("hh", "a")]),
            l(&[("__name__", "m_v"), ("h_x", "a")]),
            l(&[("__name__", "m_v"), ("h_x", "a")]),
            l(&[("__name__", "m_v"), ("h_x", "a"), ("h", "a")]),
        ]
    );
}
