//! The foundation's end-to-end checks: a real `strata` process, real HTTP.

use std::time::Duration;

use strata_e2e::{Strata, run_to_end};

#[test]
fn health_answers_ok() {
    let node = Strata::single();
    let reply = node.get("/health");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "OK");
}

#[test]
fn metrics_expose_process_and_build_info() {
    let node = Strata::single();
    // One request first, so the request counter has a sample for /health.
    assert_eq!(node.get("/health").status, 200);
    let reply = node.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.as_deref().unwrap_or("").starts_with("text/plain"));
    let text = &reply.body;
    assert!(text.contains("strata_build_info{"), "{text}");
    assert!(
        text.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("role=\"single\""), "{text}");
    let rss = metric_value(text, "process_resident_memory_bytes").expect("no RSS");
    assert!(rss > 1_000_000.0, "RSS of {rss} bytes is implausible");
    assert!(metric_value(text, "process_open_fds").expect("no fds") >= 3.0);
    assert!(metric_value(text, "process_cpu_seconds_total").is_some());
    let start = metric_value(text, "process_start_time_seconds").expect("no start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - start).abs() < 600.0, "start time {start} is not near now {now}");
    assert!(
        text.contains("strata_http_requests_total{path=\"/health\",code=\"200\"}"),
        "{text}"
    );
}

#[test]
fn unknown_path_gets_prometheus_error_shape() {
    let node = Strata::single();
    let reply = node.get("/api/v1/does-not-exist");
    assert_eq!(reply.status, 404);
    let json = reply.json();
    assert_eq!(json["status"], "error");
    assert_eq!(json["errorType"], "not_found");
    assert!(json["error"].as_str().unwrap().contains("/api/v1/does-not-exist"));
}

#[test]
fn oversized_body_is_refused_with_413_before_it_is_read() {
    use std::io::{Read, Write};
    let node = Strata::single();
    // Declare 33 MiB (over the 32 MiB default) but send only the headers: the answer must come
    // without the server waiting for the body.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", node.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        33 * 1024 * 1024
    )
    .unwrap();
    let mut head = [0u8; 4096];
    let n = stream.read(&mut head).expect("no answer before the body was sent");
    let text = String::from_utf8_lossy(&head[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"errorType\":\"bad_data\""), "{text}");
    assert!(text.contains("max_request_body"), "{text}");
    // The node is still fine.
    assert_eq!(node.get("/health").status, 200);
}

#[test]
fn sigterm_exits_cleanly_and_releases_the_data_dir() {
    let mut node = Strata::single();
    let data_dir = node.data_dir().to_path_buf();
    let status = node.stop();
    assert!(status.success(), "exit status {status:?}; logs:\n{}", node.logs());
    assert!(node.logs().contains("shutdown complete"), "{}", node.logs());
    // The lock is released: a new process can use the same directory.
    let again = Strata::builder().data_dir(&data_dir).start();
    assert_eq!(again.get("/health").status, 200);
}

#[test]
fn sigint_exits_cleanly() {
    let mut node = Strata::single();
    node.signal("INT");
    let status = node.wait_exit(Duration::from_secs(30)).expect("did not exit");
    assert!(status.success(), "{status:?}");
}

#[test]
fn second_process_on_same_data_dir_is_refused() {
    let first = Strata::single();
    let mut second = Strata::builder().data_dir(first.data_dir()).spawn();
    let status = second
        .wait_exit(Duration::from_secs(30))
        .expect("second process kept running");
    assert_eq!(status.code(), Some(1));
    let logs = second.logs();
    assert!(logs.contains("locked by another process"), "{logs}");
    assert_eq!(first.get("/health").status, 200);
}

#[test]
fn bad_config_exits_2_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[storage]\ndata_path = \"x\"\nretention = \"30d\"\n").unwrap();
    let path = path.to_str().unwrap();

    let run = run_to_end(&["--config", path, "single"]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("retention"), "{}", run.stderr);
    assert!(run.stderr.contains("line 3"), "{}", run.stderr);

    let check = run_to_end(&["check-config", path]);
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    assert!(
        check.stderr.contains("retention_period"),
        "allowed keys listed: {}",
        check.stderr
    );
}

#[test]
fn check_config_accepts_the_repository_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../appliance.toml");
    let run = run_to_end(&["check-config", path]);
    assert!(run.status.success(), "{run:?}");
    assert!(run.stdout.contains("OK"), "{}", run.stdout);
}

#[test]
fn missing_config_file_is_exit_2() {
    let run = run_to_end(&["--config", "/nonexistent/strata.toml", "single"]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("/nonexistent/strata.toml"), "{}", run.stderr);
}

#[test]
fn roles_missing_their_required_settings_exit_1_and_say_which() {
    for (role, needle) in [
        ("insert", "storage_nodes"),
        ("select", "storage_nodes"),
        ("agent", "agent.scrape_config_file"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let run = run_to_end(&[
            role,
            "--storage-data-path",
            data.to_str().unwrap(),
            "--http-listen-addr",
            "127.0.0.1:0",
        ]);
        assert_eq!(run.status.code(), Some(1), "{role}: {run:?}");
        assert!(run.stderr.contains(needle), "{role}: {}", run.stderr);
    }
}

#[test]
fn version_flag_prints_version() {
    let run = run_to_end(&["--version"]);
    assert!(run.status.success());
    assert!(run.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", run.stdout);
}

/// The value of an unlabelled metric in Prometheus text format.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
