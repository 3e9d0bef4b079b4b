//! WebAssembly plugins through the real `strata single` binary: ingestion over HTTP, TCP and
//! UDP with real line protocols, a plugin query function through the query API, hostile
//! plugins failing one request each while the node goes on, the listing, and reloads (HTTP,
//! file change, SIGHUP, under load).
//!
//! Needs the components in plugins/dist/ (`scripts/build-plugins`; scripts/test runs it).

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata_e2e::{Reply, Strata, free_port, run_to_end};

/// `plugins/dist/<file>.wasm`, or a panic that says how to build it.
fn component(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(format!("{file}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (scripts/test does)",
        path.display()
    );
    path.canonicalize().unwrap()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes an appliance.toml with `plugins` (TOML of `[[plugins]]` tables) into `dir`.
fn config(dir: &Path, plugins: &str) -> String {
    let path = dir.join("appliance.toml");
    std::fs::write(&path, plugins).unwrap();
    path.display().to_string()
}

fn plugin(name: &str, path: &Path, kind: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\nname = {name:?}\npath = {:?}\nkind = {kind:?}\ntimeout = \"500ms\"\nmax_memory = \"64MiB\"\n{extra}\n",
        path.display().to_string()
    )
}

fn start(config: &str) -> Strata {
    Strata::builder().arg("--config").arg(config).start()
}

/// Polls an instant query until it returns `n` series; returns the result array.
fn wait_series(node: &Strata, query: &str, n: usize) -> Vec<serde_json::Value> {
    let path = format!("/api/v1/query?query={}", urlencode(query));
    let reply = node.poll(&path, Duration::from_secs(15), |r| {
        r.status == 200 && r.json()["data"]["result"].as_array().is_some_and(|a| a.len() == n)
    });
    let result = reply.json()["data"]["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(result.len(), n, "{query}: {}\nlogs:\n{}", reply.body, node.logs());
    result
}

fn value(series: &serde_json::Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn listing(node: &Strata) -> Vec<serde_json::Value> {
    let r = node.get("/api/v1/plugins");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["data"].as_array().cloned().unwrap()
}

fn status_of(node: &Strata, name: &str) -> serde_json::Value {
    listing(node)
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

#[test]
fn influx_over_http_tcp_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp, udp) = (free_port(), free_port());
    let cfg = config(
        dir.path(),
        &plugin(
            "influx",
            &component("strata_influx"),
            "ingest",
            &format!("tcp_listen_addr = \"127.0.0.1:{tcp}\"\nudp_listen_addr = \"127.0.0.1:{udp}\""),
        ),
    );
    let node = start(&cfg);
    let ts = now_s();

    let r = node.post(
        "/write?db=e2e&precision=s",
        "text/plain",
        format!("cpu,host=a usage_user=1.5,usage_system=2 {ts}\n").as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let s = wait_series(&node, "cpu_usage_user", 1);
    assert_eq!(s[0]["metric"]["host"], "a");
    assert_eq!(s[0]["metric"]["db"], "e2e");
    assert_eq!(value(&s[0]), 1.5);
    let r = node.post("/api/v2/write?precision=s", "text/plain", b"cpu,host=a usage_user=");
    assert_eq!(r.status, 400, "a bad line is the client's error: {}", r.body);
    assert!(r.body.contains("influx"), "{}", r.body);

    let mut stream = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    stream
        .write_all(format!("tcpm,via=tcp value=3 {ts}000000000\ntcpm,via=tcp2 value=4 {ts}000000000\n").as_bytes())
        .unwrap();
    stream.flush().unwrap();
    let s = wait_series(&node, "tcpm_value", 2);
    let total: f64 = s.iter().map(value).sum();
    assert_eq!(total, 7.0);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(
        format!("udpm,via=udp value=5 {ts}000000000\n").as_bytes(),
        ("127.0.0.1", udp),
    )
    .unwrap();
    let s = wait_series(&node, "udpm_value", 1);
    assert_eq!(value(&s[0]), 5.0);

    // The listing shows both listeners with what went through them (the TCP connection is
    // still open: its session lives as long as the connection).
    // (The counters are bumped right after the samples are stored: give them a moment.)
    let mut listeners = Vec::new();
    for _ in 0..50 {
        listeners = status_of(&node, "influx")["listeners"].as_array().cloned().unwrap();
        if listeners.iter().filter_map(|l| l["samples"].as_u64()).sum::<u64>() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let find = |proto: &str| {
        listeners
            .iter()
            .find(|l| l["protocol"] == proto)
            .cloned()
            .unwrap_or_else(|| panic!("no {proto} listener in {listeners:?}"))
    };
    let (t, u) = (find("tcp"), find("udp"));
    assert_eq!(t["address"], format!("127.0.0.1:{tcp}"));
    assert_eq!(
        (t["samples"].as_u64(), t["open_connections"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(u["address"], format!("127.0.0.1:{udp}"));
    assert_eq!(u["samples"].as_u64(), Some(1));
    drop(stream);
}

#[test]
fn graphite_opentsdb_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (graphite_tcp, tsdb_tcp) = (free_port(), free_port());
    let plugins = [
        plugin(
            "graphite",
            &component("strata_graphite"),
            "ingest",
            &format!("tcp_listen_addr = \"127.0.0.1:{graphite_tcp}\""),
        ),
        plugin(
            "opentsdb",
            &component("strata_opentsdb"),
            "ingest",
            &format!("tcp_listen_addr = \"127.0.0.1:{tsdb_tcp}\""),
        ),
        plugin("csv", &component("strata_csv"), "ingest", ""),
    ]
    .concat();
    let node = start(&config(dir.path(), &plugins));
    let ts = now_s();

    // Graphite plaintext over a raw socket, as `nc` would send it.
    let mut g = TcpStream::connect(("127.0.0.1", graphite_tcp)).unwrap();
    g.write_all(format!("servers.web01.load;dc=eu;rack=r1 0.75 {ts}\nservers.web02.load 1.25 {ts}\n").as_bytes())
        .unwrap();
    drop(g);
    let s = wait_series(&node, r#"{__name__=~"servers\\..*\\.load"}"#, 2);
    let tagged = s.iter().find(|x| x["metric"]["dc"] == "eu").expect("tagged series");
    assert_eq!(tagged["metric"]["rack"], "r1");
    assert_eq!(value(tagged), 0.75);

    // OpenTSDB telnet put over TCP and JSON over HTTP.
    let mut t = TcpStream::connect(("127.0.0.1", tsdb_tcp)).unwrap();
    t.write_all(format!("put sys.cpu.user {ts} 42.5 host=web01 cpu=0\n").as_bytes())
        .unwrap();
    drop(t);
    let s = wait_series(&node, r#"{__name__="sys.cpu.user"}"#, 1);
    assert_eq!(s[0]["metric"]["host"], "web01");
    assert_eq!(value(&s[0]), 42.5);
    let body = format!(
        r#"[{{"metric":"sys.mem","timestamp":{ts},"value":7,"tags":{{"host":"a"}}}},{{"metric":"sys.mem","timestamp":{ts},"value":"8","tags":{{"host":"b"}}}}]"#
    );
    let r = node.post("/api/put", "application/json", body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.body);
    let s = wait_series(&node, r#"{__name__="sys.mem"}"#, 2);
    assert_eq!(s.iter().map(value).sum::<f64>(), 15.0);

    // CSV as VictoriaMetrics imports it.
    let r = node.post(
        "/api/v1/import/csv?format=2:metric:ask,3:metric:bid,1:label:ticker,4:time:unix_s&extra_label=src=csv",
        "text/csv",
        format!("GOOG,1.23,4.56,{ts}\nMSFT,3.21,1.67,{ts}\n").as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let s = wait_series(&node, r#"ask{src="csv"}"#, 2);
    let goog = s.iter().find(|x| x["metric"]["ticker"] == "GOOG").unwrap();
    assert_eq!(value(goog), 1.23);
    let r = node.post("/api/v1/import/csv?format=1:nope:x", "text/csv", b"1\n");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("format"), "{}", r.body);
}

#[test]
fn metricsql_functions_through_the_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(
        dir.path(),
        &plugin("metricsql", &component("strata_metricsql"), "function", ""),
    ));
    let ts = now_s() * 1000;
    // Five samples 10 s apart: 1 2 3 4 100 -> median 3, range 99, built-in mad 1.
    let body: String = [1.0, 2.0, 3.0, 4.0, 100.0]
        .iter()
        .enumerate()
        .map(|(i, v)| format!("jitter{{job=\"x\"}} {v} {}\n", ts - 40_000 + i as u64 * 10_000))
        .collect();
    let r = node.post("/api/v1/import/prometheus", "text/plain", body.as_bytes());
    assert!(r.status == 204 || r.status == 200, "{}", r.body);
    let at = ts as f64 / 1000.0;
    let q = |expr: &str| {
        let path = format!("/api/v1/query?query={}&time={at}", urlencode(expr));
        node.poll(&path, Duration::from_secs(15), |r| {
            r.status == 200 && r.json()["data"]["result"].as_array().is_some_and(|a| !a.is_empty())
        })
    };
    let r = q("median_over_time(jitter[1m])");
    let v = r.json()["data"]["result"][0].clone();
    assert_eq!(value(&v), 3.0, "{}", r.body);
    assert_eq!(v["metric"]["job"], "x");
    assert!(v["metric"].get("__name__").is_none());
    assert_eq!(value(&q("mad_over_time(jitter[1m])").json()["data"]["result"][0]), 1.0);
    assert_eq!(
        value(&q("range_over_time(jitter[1m])").json()["data"]["result"][0]),
        99.0
    );
    let r = q(r#"label_set(jitter, "env", "prod")"#);
    assert_eq!(r.json()["data"]["result"][0]["metric"]["env"], "prod");
    // Listed with its functions.
    let st = status_of(&node, "metricsql");
    assert!(st["functions"].as_array().unwrap().len() >= 12, "{st}");
}

#[test]
fn hostile_plugins_fail_each_request_with_a_reason_and_the_node_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(
        dir.path(),
        &plugin("hostile", &component("strata_hostile"), "ingest", ""),
    ));
    for (mode, status, reason) in [
        ("loop", 503, "timeout"),
        ("bomb", 500, "out of memory"),
        ("trap", 500, "trap"),
        ("invalid", 400, "label"),
        ("error", 400, "refused on purpose"),
    ] {
        let started = Instant::now();
        let r = node.post(&format!("/hostile?mode={mode}"), "text/plain", b"x");
        assert_eq!(r.status, status, "{mode}: {}", r.body);
        assert!(r.body.contains(reason), "{mode}: {}", r.body);
        assert!(r.body.contains("hostile"), "{mode}: the plugin is named: {}", r.body);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode} took {:?}",
            started.elapsed()
        );
        // The next request is served normally.
        let ok = node.post("/hostile?mode=ok", "text/plain", b"x");
        assert_eq!(ok.status, 204, "after {mode}: {}", ok.body);
        assert_eq!(node.get("/health").status, 200);
    }
    let st = status_of(&node, "hostile");
    assert_eq!(st["failures"]["timeout"], 1, "{st}");
    assert_eq!(st["failures"]["out_of_memory"], 1, "{st}");
    assert_eq!(st["failures"]["trap"], 1, "{st}");
    let metrics = node.get("/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strata_plugin_failures_total{") && l.contains("hostile") && l.contains("timeout")),
        "{metrics}"
    );
    wait_series(&node, "hostile_ok", 1);
}

/// A copy of a component that differs in content only: a custom section appended (valid in
/// a component), so a reload sees a new file.
fn variant(original: &Path, tag: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(original).unwrap();
    // Custom section: id 0, 5 bytes: name length 3, "tst", one payload byte.
    bytes.extend_from_slice(&[0, 5, 3, b't', b's', b't', tag]);
    bytes
}

fn loaded_at(node: &Strata, name: &str) -> i64 {
    status_of(node, name)["loaded_at_ms"].as_i64().unwrap()
}

#[test]
fn listing_reload_file_watch_sighup_and_refused_versions() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("influx.wasm");
    std::fs::copy(component("strata_influx"), &wasm).unwrap();
    let node = start(&config(dir.path(), &plugin("influx", &wasm, "ingest", "")));
    let write = |n: u32| {
        node.post(
            "/write",
            "text/plain",
            format!("reload,n={n} value={n} {}000000000\n", now_s()).as_bytes(),
        )
    };

    let st = status_of(&node, "influx");
    assert_eq!(st["kind"], "ingest");
    assert!(
        st["http_paths"].as_array().unwrap().iter().any(|p| p == "/write"),
        "{st}"
    );
    assert_eq!(st["info"]["name"], "influx");

    // POST reload swaps in the same file again.
    let before = loaded_at(&node, "influx");
    std::thread::sleep(Duration::from_millis(5));
    let r = node.post("/api/v1/plugins/reload", "text/plain", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(loaded_at(&node, "influx") > before);

    // A changed file is picked up by the watcher.
    let before = loaded_at(&node, "influx");
    std::fs::write(dir.path().join("v2.tmp"), variant(&wasm, 1)).unwrap();
    std::fs::rename(dir.path().join("v2.tmp"), &wasm).unwrap();
    node.poll("/api/v1/plugins", Duration::from_secs(15), |r| {
        r.json()["data"][0]["loaded_at_ms"].as_i64().unwrap_or(0) > before
    });
    assert_eq!(write(1).status, 204);

    // A broken file is refused; the old version keeps serving.
    let before = loaded_at(&node, "influx");
    std::fs::write(&wasm, b"\0asm broken").unwrap();
    let r = node.post("/api/v1/plugins/reload", "text/plain", b"");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("influx") && r.body.contains("kept the previous version"),
        "{}",
        r.body
    );
    std::thread::sleep(Duration::from_secs(3)); // the watcher sees it too, and refuses it
    assert_eq!(loaded_at(&node, "influx"), before);
    assert_eq!(write(2).status, 204);

    // SIGHUP reloads.
    std::fs::write(&wasm, variant(&component("strata_influx"), 2)).unwrap();
    let before = loaded_at(&node, "influx");
    node.signal("HUP");
    node.poll("/api/v1/plugins", Duration::from_secs(15), |r| {
        r.json()["data"][0]["loaded_at_ms"].as_i64().unwrap_or(0) > before
    });
    assert_eq!(write(3).status, 204);
    wait_series(&node, "reload_value", 3);
}

#[test]
fn reload_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("influx.wasm");
    std::fs::copy(component("strata_influx"), &wasm).unwrap();
    let node = Arc::new(start(&config(dir.path(), &plugin("influx", &wasm, "ingest", ""))));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (node, stop, sent, failed) = (node.clone(), stop.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut last: Option<Reply> = None;
                while !stop.load(Ordering::Relaxed) {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    let r = node.post(
                        "/write",
                        "text/plain",
                        format!("load,w={w} value={n} {}000000000\n", now_s()).as_bytes(),
                    );
                    if r.status != 204 {
                        failed.fetch_add(1, Ordering::Relaxed);
                        last = Some(r);
                    }
                }
                last
            })
        })
        .collect();
    for k in 0..8u8 {
        // Alternate new content (watcher) and explicit reloads.
        std::fs::write(dir.path().join("n.tmp"), variant(&component("strata_influx"), k)).unwrap();
        std::fs::rename(dir.path().join("n.tmp"), &wasm).unwrap();
        let r = node.post("/api/v1/plugins/reload", "text/plain", b"");
        assert_eq!(r.status, 200, "{}", r.body);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let lasts: Vec<Option<Reply>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 20, "only {sent} requests were sent");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failures of {sent}: {lasts:?}");
}

#[test]
fn a_missing_component_refuses_to_start_and_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &plugin("influx", &dir.path().join("nope/strata_influx.wasm"), "ingest", ""),
    );
    let data = dir.path().join("data");
    let run = run_to_end(&[
        "--config",
        &cfg,
        "single",
        "--http-listen-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--storage-data-path",
        data.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stderr.contains("scripts/build-plugins"), "{}", run.stderr);
    assert!(run.stderr.contains("influx"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// With tokens configured, a plugin's ingestion path needs the `write` role whatever it looks
/// like: a custom mount such as `/custom/graphite` is not mistaken for a read endpoint.
#[test]
fn plugin_paths_need_the_write_role() {
    const WRITER: &str = "writer-token-0123456789";
    const READER: &str = "reader-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[auth.tokens]]\ntoken = {WRITER:?}\nroles = [\"write\", \"read\"]\n\n[[auth.tokens]]\ntoken = {READER:?}\nroles = [\"read\"]\n",
        plugin(
            "graphite",
            &component("strata_graphite"),
            "ingest",
            "http_paths = [\"/custom/graphite\"]"
        )
    );
    let node = start(&config(dir.path(), &text));
    let line = format!("custom.path.metric 3 {}\n", now_s());

    let bearer = |t: &str| format!("Bearer {t}");
    let anonymous = node.post("/custom/graphite", "text/plain", line.as_bytes());
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let reader = node.post_with(
        "/custom/graphite",
        &[("Content-Type", "text/plain"), ("Authorization", &bearer(READER))],
        line.as_bytes(),
    );
    assert_eq!(reader.status, 403, "a read token must not ingest: {}", reader.body);
    let writer = node.post_with(
        "/custom/graphite",
        &[("Content-Type", "text/plain"), ("Authorization", &bearer(WRITER))],
        line.as_bytes(),
    );
    assert!(writer.status < 300, "{} {}", writer.status, writer.body);

    let path = format!(
        "/api/v1/query?query={}",
        urlencode(r#"{__name__="custom.path.metric"}"#)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let stored = loop {
        let reply = node.get_with(&path, &[("Authorization", &bearer(READER))]);
        let found = reply.status == 200 && reply.json()["data"]["result"].as_array().is_some_and(|a| a.len() == 1);
        if found || Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stored.json()["data"]["result"][0]["value"][1], "3", "{}", stored.body);
}
