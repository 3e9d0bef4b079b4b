//! The agent role end to end: a real `strata agent` scrapes HTTP and HTTPS targets served by
//! this test (and a real node_exporter when installed) and remote-writes (1.0 or 2.0) into a
//! real `strata single`, which also scrapes itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_e2e::{Strata, free_port};

/// A target serving `agent_e2e_seq{k="v"} <n>` where n counts the requests (1, 2, 3, ...),
/// optionally hanging before it answers.
struct SeqTarget {
    addr: String,
    served: Arc<AtomicU64>,
}

fn seq_target(hang: Duration) -> SeqTarget {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                read_head(&mut stream);
                std::thread::sleep(hang);
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!("# TYPE agent_e2e_seq counter\nagent_e2e_seq{{k=\"v\"}} {n}\n");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    SeqTarget { addr, served }
}

fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
}

/// A TCP forwarder on a fixed port to whatever port `upstream` holds (None: connections are
/// closed at once, as if the receiver were down). Lets the receiver restart on a new port
/// while the agent keeps one URL.
fn forwarder(upstream: Arc<Mutex<Option<u16>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Some(up) = *upstream.lock().unwrap() else {
                drop(client);
                continue;
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", up)) else {
                continue;
            };
            let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c2, mut s2) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut s1);
                let _ = s1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Writes prometheus.yml and appliance.toml into `dir`; returns the appliance.toml path.
fn agent_config(dir: &Path, jobs: &str, remote_write_url: &str) -> String {
    agent_config_with(dir, jobs, remote_write_url, "")
}

fn agent_config_with(dir: &Path, jobs: &str, remote_write_url: &str, extra: &str) -> String {
    let prom = dir.join("prometheus.yml");
    std::fs::write(
        &prom,
        format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\nscrape_configs:\n{jobs}"),
    )
    .unwrap();
    let appliance = dir.join("appliance.toml");
    std::fs::write(
        &appliance,
        format!(
            "[agent]\nscrape_config_file = {:?}\nremote_write_urls = [{:?}]\nconfig_check_interval = \"1s\"\n{extra}",
            prom.display().to_string(),
            remote_write_url
        ),
    )
    .unwrap();
    appliance.display().to_string()
}

fn start_agent(config: &str) -> Strata {
    Strata::builder().role("agent").arg("--config").arg(config).start()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls an instant query on `node` until `done` accepts its result array.
fn query_until(
    node: &Strata,
    query: &str,
    timeout: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let path = format!("/api/v1/query?query={}", urlencode(query));
    let reply = node.poll(&path, timeout, |r| {
        r.status == 200 && r.json()["data"]["result"].as_array().is_some_and(|a| done(a))
    });
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn target_health(agent: &Strata, job: &str) -> serde_json::Value {
    let doc = agent.get("/api/v1/targets").json();
    doc["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scrapePool"] == job)
        .cloned()
        .unwrap_or_else(|| panic!("no target of job {job}: {doc}"))
}

#[test]
fn agent_scrapes_and_remote_writes_to_a_single_node() {
    let node = Strata::single();
    let target = seq_target(Duration::ZERO);
    let hang = seq_target(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let jobs = format!(
        "  - job_name: e2e\n    static_configs: [{{targets: ['{}'], labels: {{env: test}}}}]\n  - job_name: hang\n    static_configs: [{{targets: ['{}']}}]\n",
        target.addr, hang.addr
    );
    let config = agent_config(dir.path(), &jobs, &format!("{}/api/v1/write", node.base_url()));
    let agent = start_agent(&config);

    let result = query_until(&node, "agent_e2e_seq", Duration::from_secs(20), |a| !a.is_empty());
    let metric = &result[0]["metric"];
    assert_eq!(metric["job"], "e2e");
    assert_eq!(metric["env"], "test");
    assert_eq!(metric["k"], "v");
    assert_eq!(metric["instance"], target.addr.as_str());
    let up = query_until(&node, "up{job=\"e2e\"}", Duration::from_secs(10), |a| !a.is_empty());
    assert_eq!(up[0]["value"][1], "1");

    // The hanging target hits scrape_timeout: up is 0 and the targets page says why.
    let up = query_until(&node, "up{job=\"hang\"}", Duration::from_secs(20), |a| !a.is_empty());
    assert_eq!(up[0]["value"][1], "0");
    let t = target_health(&agent, "hang");
    assert_eq!(t["health"], "down", "{t}");
    assert!(t["lastError"].as_str().unwrap().contains("timed out"), "{t}");
    assert_eq!(target_health(&agent, "e2e")["health"], "up");

    // Reload: the hang job goes away.
    let prom = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: e2e\n    static_configs: [{{targets: ['{}'], labels: {{env: test}}}}]\n", target.addr),
    )
    .unwrap();
    let reply = agent.post("/-/reload", "text/plain", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let targets = agent.get("/api/v1/targets").json();
    assert_eq!(
        targets["data"]["activeTargets"].as_array().unwrap().len(),
        1,
        "{targets}"
    );
    // A broken file is refused with its line; the running configuration stays.
    std::fs::write(&prom, "scrape_configs:\n  - job_name: x\n    scrape_intervall: 1s\n").unwrap();
    let reply = agent.post("/-/reload", "text/plain", b"");
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("line 3") && reply.body.contains("scrape_intervall"),
        "{}",
        reply.body
    );
    let metrics = agent.get("/metrics").body;
    assert!(metrics.contains("strata_agent_scrapes_total"), "{metrics}");
}

#[test]
fn agent_queues_while_the_receiver_is_down_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let upstream = Arc::new(Mutex::new(None));
    let fwd = forwarder(Arc::clone(&upstream));
    let mut node = Strata::builder().data_dir(data.path().join("node")).start();
    *upstream.lock().unwrap() = Some(node.port());

    let target = seq_target(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let jobs = format!(
        "  - job_name: seq\n    static_configs: [{{targets: ['{}']}}]\n",
        target.addr
    );
    let config = agent_config(dir.path(), &jobs, &format!("http://127.0.0.1:{fwd}/api/v1/write"));
    let agent = start_agent(&config);
    query_until(&node, "agent_e2e_seq", Duration::from_secs(20), |a| !a.is_empty());

    // The receiver dies; the agent keeps scraping into its queue.
    *upstream.lock().unwrap() = None;
    assert!(node.stop().success());
    let down_at = target.served.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.served.load(Ordering::SeqCst) < down_at + 4 {
        assert!(Instant::now() < deadline, "the agent stopped scraping");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pending = agent
        .get("/metrics")
        .body
        .lines()
        .find(|l| l.starts_with("strata_agent_remote_write_pending_bytes"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(pending > 0.0, "nothing queued while the receiver is down");

    // It comes back (new process, same data); everything scraped meanwhile arrives.
    let node = Strata::builder().data_dir(data.path().join("node")).start();
    *upstream.lock().unwrap() = Some(node.port());
    let served_before_restart = target.served.load(Ordering::SeqCst);
    let result = query_until(&node, "agent_e2e_seq[1h]", Duration::from_secs(60), |a| {
        a.first()
            .and_then(|s| s["values"].as_array())
            .is_some_and(|v| v.len() as u64 >= served_before_restart)
    });
    let mut values: Vec<u64> = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap() as u64)
        .collect();
    values.sort_unstable();
    values.dedup();
    let first = values[0];
    let last = *values.last().unwrap();
    assert!(last >= served_before_restart);
    assert_eq!(
        values.len() as u64,
        last - first + 1,
        "a gap in the sequence: samples were lost ({values:?})"
    );
    assert!(first <= 2, "the first scrapes are missing: {values:?}");
}

#[test]
fn agent_scrapes_a_real_node_exporter() {
    let Some(exporter) = ["prometheus-node-exporter", "node_exporter"].iter().find(|b| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {b}"))
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!(
            "SKIPPED agent_scrapes_a_real_node_exporter: prometheus-node-exporter is not installed (apt-get install -y prometheus-node-exporter)"
        );
        return;
    };
    let port = free_port();
    let child = std::process::Command::new(exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start node_exporter");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);
    let node = Strata::single();
    let dir = tempfile::tempdir().unwrap();
    let jobs = format!("  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n");
    let config = agent_config(dir.path(), &jobs, &format!("{}/api/v1/write", node.base_url()));
    let _agent = start_agent(&config);
    let result = query_until(&node, "node_cpu_seconds_total", Duration::from_secs(30), |a| {
        !a.is_empty()
    });
    assert_eq!(result[0]["metric"]["job"], "node");
    assert!(result[0]["metric"]["cpu"].is_string());
    let up = query_until(&node, "up{job=\"node\"}", Duration::from_secs(10), |a| !a.is_empty());
    assert_eq!(up[0]["value"][1], "1");
}

#[test]
fn agent_reloads_on_sighup_and_scrapes_itself() {
    let node = Strata::single();
    let a = seq_target(Duration::ZERO);
    let b = seq_target(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let job = |addr: &str| format!("  - job_name: j\n    static_configs: [{{targets: ['{addr}']}}]\n");
    let config = agent_config_with(
        dir.path(),
        &job(&a.addr),
        &format!("{}/api/v1/write", node.base_url()),
        "self_scrape_interval = \"1s\"\nconfig_check_interval = \"0s\"\n",
    );
    // The second config_check_interval key would be a TOML error: keep the last one only.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replacen("config_check_interval = \"1s\"\n", "", 1);
    std::fs::write(&config, text).unwrap();
    let agent = start_agent(&config);
    assert_eq!(
        target_health(&agent, "j")["scrapeUrl"],
        format!("http://{}/metrics", a.addr)
    );

    // The agent's own metrics arrive as job="strata".
    let own = query_until(
        &node,
        "strata_agent_scrapes_total{job=\"strata\"}",
        Duration::from_secs(30),
        |r| !r.is_empty(),
    );
    assert_eq!(own[0]["metric"]["job"], "strata");

    // File checks are off: only SIGHUP picks up the change.
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n{}", job(&b.addr)),
    )
    .unwrap();
    agent.signal("HUP");
    let reply = agent.poll("/api/v1/targets", Duration::from_secs(10), |r| r.body.contains(&b.addr));
    assert!(reply.body.contains(&b.addr), "{}", reply.body);
    assert!(!reply.body.contains(&a.addr), "{}", reply.body);
}

/// An HTTPS target on 127.0.0.1 with a self-signed certificate for `localhost` and
/// `127.0.0.1`, serving `agent_e2e_tls 1`; returns its address and the certificate's PEM.
fn https_target() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert_pem = made.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let body = "# TYPE agent_e2e_tls gauge\nagent_e2e_tls 1\n";
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (addr, cert_pem)
}

#[test]
fn agent_scrapes_https_targets_with_tls_config() {
    let node = Strata::single();
    let (addr, cert_pem) = https_target();
    let dir = tempfile::tempdir().unwrap();
    // A relative ca_file is relative to prometheus.yml's directory.
    std::fs::write(dir.path().join("target-ca.pem"), cert_pem).unwrap();
    let job = |name: &str, tls: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config: {tls}\n    static_configs: [{{targets: ['{addr}']}}]\n"
        )
    };
    let jobs = [
        job("tls_ca", "{ca_file: target-ca.pem}"),
        job("tls_sni", "{ca_file: target-ca.pem, server_name: localhost}"),
        job("tls_insecure", "{insecure_skip_verify: true}"),
        job("tls_untrusted", "{}"),
    ]
    .concat();
    let config = agent_config(dir.path(), &jobs, &format!("{}/api/v1/write", node.base_url()));
    let agent = start_agent(&config);

    let ups = query_until(&node, "up{job=~\"tls_.*\"}", Duration::from_secs(30), |a| a.len() == 4);
    let up_of = |job: &str| {
        ups.iter()
            .find(|s| s["metric"]["job"] == job)
            .map(|s| s["value"][1].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no up for {job}: {ups:?}"))
    };
    for job in ["tls_ca", "tls_sni", "tls_insecure"] {
        assert_eq!(up_of(job), "1", "{job}: {}", target_health(&agent, job));
    }
    assert_eq!(up_of("tls_untrusted"), "0");
    let scraped = query_until(&node, "agent_e2e_tls", Duration::from_secs(10), |a| a.len() == 3);
    assert_eq!(scraped[0]["metric"]["instance"], addr.as_str());
    // An untrusted certificate is the target's last error, as the targets page shows it.
    let t = target_health(&agent, "tls_untrusted");
    assert_eq!(t["health"], "down", "{t}");
    let error = t["lastError"].as_str().unwrap();
    assert!(error.contains("certificate") || error.contains("CA bundle"), "{t}");
    assert_eq!(t["scrapeUrl"], format!("https://{addr}/metrics"));
}

/// The agent's counter of blocks sent as `version` (0 if absent).
fn blocks_sent(agent: &Strata, version: &str) -> f64 {
    let label = format!("version=\"{version}\"");
    agent
        .get("/metrics")
        .body
        .lines()
        .find(|l| l.starts_with("strata_agent_remote_write_blocks_sent_total") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn agent_sends_remote_write_2_0_set_up_by_flags_only() {
    let node = Strata::single();
    let target = seq_target(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: v2\n    static_configs: [{{targets: ['{}']}}]\n",
            target.addr
        ),
    )
    .unwrap();
    let queue = dir.path().join("queue");
    // No appliance.toml: every setting comes from a flag.
    let agent = Strata::builder()
        .role("agent")
        .arg("--promscrape-config")
        .arg(prom.display().to_string())
        .arg("--remote-write-url")
        .arg(format!("{}/api/v1/write", node.base_url()))
        .arg("--remote-write-tmp-data-path")
        .arg(queue.display().to_string())
        .arg("--remote-write-protocol")
        .arg("2")
        .start();
    let result = query_until(&node, "agent_e2e_seq", Duration::from_secs(20), |a| !a.is_empty());
    assert_eq!(result[0]["metric"]["job"], "v2");
    assert!(blocks_sent(&agent, "2.0") >= 1.0, "{}", agent.get("/metrics").body);
    assert_eq!(blocks_sent(&agent, "1.0"), 0.0);
    // The queue lives where the flag says.
    assert!(queue.join("persistent-queue").is_dir());
    let metrics = agent.get("/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strata_agent_remote_write_protocol_version") && l.ends_with(" 2")),
        "{metrics}"
    );
    // The agent publishes its effective configuration too: the flags are in it.
    let config = agent.get("/api/v1/status/config").json();
    let text = config["data"]["toml"].as_str().unwrap_or_default();
    assert!(text.contains("remote_write_protocol = \"2\""), "{config}");
    assert!(text.contains(&queue.display().to_string()), "{config}");
}

#[test]
fn single_scrapes_itself_by_default_and_a_promscrape_config_given_by_flag() {
    let target = seq_target(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: local\n    static_configs: [{{targets: ['{}']}}]\n",
            target.addr
        ),
    )
    .unwrap();
    // Self-scrape is on without any setting (10s); the first scrape comes within one interval.
    let node = Strata::builder()
        .arg("--promscrape-config")
        .arg(prom.display().to_string())
        .start();
    let local = query_until(&node, "agent_e2e_seq{job=\"local\"}", Duration::from_secs(20), |a| {
        !a.is_empty()
    });
    assert_eq!(local[0]["metric"]["instance"], target.addr.as_str());
    let own = query_until(&node, "up{job=\"strata\"}", Duration::from_secs(30), |a| !a.is_empty());
    assert_eq!(own[0]["value"][1], "1");
    assert_eq!(own[0]["metric"]["instance"], format!("127.0.0.1:{}", node.port()));
    // The node's own metrics are stored: the UI can chart the appliance itself.
    query_until(
        &node,
        "strata_build_info{job=\"strata\"}",
        Duration::from_secs(10),
        |a| !a.is_empty(),
    );

    // --self-scrape-interval 0 turns it off.
    let quiet = Strata::builder().arg("--self-scrape-interval").arg("0").start();
    assert_eq!(
        quiet.get("/api/v1/targets").status,
        404,
        "no scraper without a config or self-scrape"
    );
}

#[test]
fn self_scrape_uses_a_read_token_when_metrics_are_protected() {
    const READER: &str = "agent-e2e-reader-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("appliance.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nself_scrape_interval = \"1s\"\n\n[auth]\nprotect_metrics = true\n\n[[auth.tokens]]\ntoken = \"{READER}\"\nroles = [\"read\"]\n"
        ),
    )
    .unwrap();
    let node = Strata::builder()
        .arg("--config")
        .arg(config.display().to_string())
        .start();
    // /metrics is closed without the token, so the self-scrape must be sending it.
    assert_eq!(node.get("/metrics").status, 401);
    let auth = format!("Bearer {READER}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = node.post_with("/api/v1/query", &headers, b"query=up%7Bjob%3D%22strata%22%7D");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let result = reply.json()["data"]["result"].clone();
        if let Some(first) = result.as_array().and_then(|a| a.first()) {
            assert_eq!(first["value"][1], "1", "the self-scrape was refused: {result}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no self-scrape sample; logs:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
