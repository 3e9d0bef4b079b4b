use strata_ingest::MemorySink;

use super::*;
use crate::scrape::{Health, STALE_NAN_BITS};

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn scrapes_reloads_and_marks_removed_targets_stale() {
    let t1 = crate::scrape::tests::TestTarget::start("m 1\n");
    let t2 = crate::scrape::tests::TestTarget::start("n 2\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let sd = dir.path().join("sd.json");
    write(&sd, &format!(r#"[{{"targets": ["{}"]}}]"#, t2.addr));
    write(
        &config,
        &format!(
            "global: {{scrape_interval: 200ms}}\nscrape_configs:\n  - job_name: a\n    static_configs: [{{targets: ['{}']}}]\n  - job_name: b\n    file_sd_configs: [{{files: [sd.json]}}]\n",
            t1.addr
        ),
    );
    let sink = Arc::new(MemorySink::new());
    let manager = ScrapeManager::start(
        ScrapeOptions {
            config_file: Some(config.clone()),
            strict_parse: true,
            check_interval: Duration::from_millis(50),
            self_scrape: None,
        },
        sink.clone(),
    )
    .unwrap();
    wait_for("both targets up", || {
        let t = manager.targets();
        t.active.len() == 2 && t.active.iter().all(|a| a.status.health == Health::Up)
    });
    let has = |name: &str| sink.series().iter().any(|s| s.labels[0].1 == name);
    assert!(has("m") && has("n"));

    // The file_sd file empties: target b goes, and its series get markers.
    write(&sd, "[]");
    wait_for("b removed", || manager.targets().active.len() == 1);
    // The loop is stopped right after the target list changes.
    wait_for("stale markers for b", || {
        sink.series()
            .iter()
            .any(|s| s.labels[0].1 == "n" && s.samples[0].1.to_bits() == STALE_NAN_BITS)
    });

    // An explicit reload of an unchanged file keeps the running loop.
    let summary = manager.reload().unwrap();
    assert_eq!((summary.targets, summary.started, summary.stopped), (1, 0, 0));

    // A broken configuration is refused; the old one keeps running.
    write(&config, "scrape_configs:\n  - job_name: a\n    bogus: 1\n");
    let err = manager.reload().unwrap_err().to_string();
    assert!(err.contains("bogus") && err.contains("line 3"), "{err}");
    assert_eq!(manager.targets().active.len(), 1);
    manager.shutdown();
    assert!(manager.targets().active.is_empty());
}

#[test]
fn a_bad_file_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let options = ScrapeOptions {
        config_file: Some(dir.path().join("missing.yml")),
        strict_parse: true,
        check_interval: Duration::ZERO,
        self_scrape: None,
    };
    let err = ScrapeManager::start(options, Arc::new(MemorySink::new()))
        .err()
        .unwrap();
    assert!(matches!(err, ConfigError::Io { .. }));
}

#[test]
fn self_scrape_without_a_file() {
    let own = crate::scrape::tests::TestTarget::start("strata_build_info 1\n");
    let sink = Arc::new(MemorySink::new());
    let manager = ScrapeManager::start(
        ScrapeOptions {
            config_file: None,
            strict_parse: true,
            check_interval: Duration::ZERO,
            self_scrape: Some(SelfScrape {
                address: own.addr.clone(),
                interval: Duration::from_millis(200),
                bearer_token: Some("self-scrape-token".into()),
                ..SelfScrape::default()
            }),
        },
        sink.clone(),
    )
    .unwrap();
    wait_for("a self-scrape", || {
        sink.series().iter().any(|s| {
            s.labels[0].1 == "strata_build_info" && s.labels.contains(&("job".to_owned(), SELF_JOB.to_owned()))
        })
    });
    let targets = manager.targets();
    assert_eq!(targets.active[0].spec.job, SELF_JOB);
    assert!(
        matches!(&targets.active[0].spec.auth, crate::discovery::Auth::Header { credentials: Some(c), .. } if c == "self-scrape-token")
    );
    assert!(targets.active[0].spec.url.starts_with("http://"));
    assert_eq!(targets.active[0].spec.timeout, Duration::from_millis(200));
}
