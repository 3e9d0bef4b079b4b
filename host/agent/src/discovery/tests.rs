use super::*;
use crate::config::parse;

fn label_map(l: &Labels) -> Vec<(&str, &str)> {
    l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

#[test]
fn static_targets_get_job_instance_and_url() {
    let text = r#"
scrape_configs:
  - job_name: node
    metrics_path: /m
    params: {module: [a, b]}
    static_configs:
      - targets: ["127.0.0.1:9100"]
        labels: {env: prod}
"#;
    let loaded = parse(text, Path::new("/x/p.yml"), true).unwrap();
    let d = discover(&loaded);
    assert_eq!(d.targets.len(), 1);
    let t = &d.targets[0];
    assert_eq!(t.url, "http://127.0.0.1:9100/m?module=a&module=b");
    assert_eq!(
        label_map(&t.labels),
        vec![("env", "prod"), ("instance", "127.0.0.1:9100"), ("job", "node")]
    );
    assert!(relabel::get(&t.discovered, "__metrics_path__") == Some("/m"));
}

#[test]
fn relabel_configs_rewrite_drop_and_set_the_address() {
    let text = r#"
scrape_configs:
  - job_name: j
    static_configs:
      - targets: ["a:1", "b:2", "c:3"]
    relabel_configs:
      - source_labels: [__address__]
        regex: 'b:.*'
        action: drop
      - source_labels: [__address__]
        regex: '(.*):(.*)'
        target_label: instance
        replacement: '${1}'
      - source_labels: [__address__]
        regex: 'c:3'
        target_label: __address__
        replacement: 'c:33'
      - target_label: __param_target
        replacement: x y
"#;
    let loaded = parse(text, Path::new("p.yml"), true).unwrap();
    let d = discover(&loaded);
    assert_eq!(d.dropped.len(), 1);
    let urls: Vec<&str> = d.targets.iter().map(|t| t.url.as_str()).collect();
    assert_eq!(
        urls,
        vec!["http://a:1/metrics?target=x%20y", "http://c:33/metrics?target=x%20y"]
    );
    assert_eq!(relabel::get(&d.targets[0].labels, "instance"), Some("a"));
    assert!(
        d.targets
            .iter()
            .all(|t| t.labels.iter().all(|(n, _)| !n.starts_with("__")))
    );
    assert_ne!(d.targets[0].key, d.targets[1].key);
}

#[test]
fn file_sd_reads_json_and_yaml_with_globs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("t")).unwrap();
    std::fs::write(
        dir.path().join("t/a.json"),
        r#"[{"targets": ["h1:1", "h2:2"], "labels": {"team": "x"}}]"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("t/b.yml"), "- targets: [h3:3]\n").unwrap();
    std::fs::write(dir.path().join("t/c.txt"), "ignored").unwrap();
    std::fs::write(dir.path().join("t/bad.json"), "{").unwrap();
    let config = dir.path().join("p.yml");
    let text = "scrape_configs:\n  - job_name: f\n    file_sd_configs:\n      - files: ['t/*.json', 't/*.yml']\n";
    let loaded = parse(text, &config, true).unwrap();
    let d = discover(&loaded);
    let mut addrs: Vec<&str> = d
        .targets
        .iter()
        .map(|t| relabel::get(&t.labels, "instance").unwrap())
        .collect();
    addrs.sort();
    assert_eq!(addrs, vec!["h1:1", "h2:2", "h3:3"]);
    assert_eq!(relabel::get(&d.targets[0].labels, "team"), Some("x"));
    assert_eq!(d.files.len(), 3);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("bad.json"));
}

#[test]
fn wildcards() {
    assert!(wildcard_match("*.json", "a.json"));
    assert!(wildcard_match("a*b*c", "aXbYc"));
    assert!(!wildcard_match("*.json", "a.yml"));
    assert!(!wildcard_match("a*a", "a"));
    assert!(wildcard_match("*", ""));
}
