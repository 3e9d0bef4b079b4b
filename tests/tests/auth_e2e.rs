//! Tokens, roles and tenants against the real binary (issue #12): each token × endpoint kind
//! × tenant gives the right status on a single node and on the cluster insert and select
//! roles; and overload answers 503 with `Retry-After` while the node stays healthy.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use strata_e2e::{Reply, Strata, free_port};

const WRITER: &str = "writer-token-0123456789";
const READER: &str = "reader-token-0123456789";
const ADMIN: &str = "admin-token-0123456789a";
const TENANT42: &str = "tenant42-token-01234567";
const WRONG: &str = "not-a-configured-token-0";

/// Tokens every test node uses.
const TOKENS: &str = r#"
[[auth.tokens]]
token = "writer-token-0123456789"
roles = ["write"]

[[auth.tokens]]
token = "reader-token-0123456789"
roles = ["read"]

[[auth.tokens]]
token = "admin-token-0123456789a"
roles = ["admin", "read", "write"]
tenants = ["*"]

[[auth.tokens]]
token = "tenant42-token-01234567"
roles = ["read", "write", "admin"]
tenants = ["42:*"]
"#;

fn config_file(dir: &tempfile::TempDir, extra: &str) -> PathBuf {
    let path = dir.path().join("appliance.toml");
    std::fs::write(&path, format!("{TOKENS}\n{extra}")).unwrap();
    path
}

fn auth_header(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("Authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

fn get(node: &Strata, token: Option<&str>, path: &str) -> Reply {
    let headers = auth_header(token);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    node.get_with(path, &headers)
}

fn post(node: &Strata, token: Option<&str>, path: &str, body: &[u8]) -> Reply {
    let mut headers = auth_header(token);
    headers.push(("Content-Type", "text/plain".to_owned()));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    node.post_with(path, &headers, body)
}

/// Checks one row of a table: `want` is an exact status, or 0 for "passed authorization"
/// (anything but 400, 401 and 403, for endpoints whose own answer depends on the cluster).
fn check(reply: &Reply, want: u16, what: &str) {
    if want == 0 {
        assert!(
            ![400, 401, 403].contains(&reply.status),
            "{what}: want authorized, got {} {}",
            reply.status,
            reply.body
        );
        return;
    }
    assert_eq!(reply.status, want, "{what}: {}", reply.body);
    if want == 401 || want == 403 {
        let body = reply.json();
        assert_eq!(body["status"], "error", "{what}");
        let kind = if want == 401 { "unauthorized" } else { "forbidden" };
        assert_eq!(body["errorType"], kind, "{what}");
    }
    if want == 401 {
        let challenges = reply.header_values("www-authenticate");
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic")),
            "{what}: {challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")),
            "{what}: {challenges:?}"
        );
    }
}

#[test]
fn single_node_roles_and_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let node = Strata::builder()
        .arg("--config")
        .arg(config_file(&dir, "").to_str().unwrap())
        .start();

    // token, [write, read, admin] statuses. Single-node paths are tenant 0:0, which the
    // tenant-42 token may not use whatever its roles.
    let table: [(Option<&str>, [u16; 3]); 6] = [
        (None, [401, 401, 401]),
        (Some(WRONG), [401, 401, 401]),
        (Some(WRITER), [204, 403, 403]),
        (Some(READER), [403, 200, 403]),
        (Some(ADMIN), [204, 200, 200]),
        (Some(TENANT42), [403, 403, 403]),
    ];
    for (token, [write, read, admin]) in table {
        let who = token.unwrap_or("no token");
        let r = post(&node, token, "/api/v1/import/prometheus", b"auth_test_metric 1\n");
        check(&r, write, &format!("{who} write"));
        let r = get(&node, token, "/api/v1/query?query=1");
        check(&r, read, &format!("{who} read"));
        let r = post(&node, token, "/internal/force_flush", b"");
        check(&r, admin, &format!("{who} admin"));
        // Probes and /metrics stay open (protect_metrics is off).
        check(&get(&node, token, "/health"), 200, &format!("{who} health"));
        check(&get(&node, token, "/metrics"), 200, &format!("{who} metrics"));
    }
    // More admin and read endpoints.
    check(
        &post(&node, Some(READER), "/api/v1/admin/tsdb/delete_series?match[]=x", b""),
        403,
        "reader delete_series",
    );
    check(
        &post(
            &node,
            Some(ADMIN),
            "/api/v1/admin/tsdb/delete_series?match[]=nothing_here",
            b"",
        ),
        204,
        "admin delete_series",
    );
    check(&get(&node, Some(WRITER), "/api/v1/labels"), 403, "writer labels");
    check(
        &get(&node, Some(READER), "/api/v1/export?match[]=x"),
        200,
        "reader export",
    );
    check(&get(&node, None, "/"), 401, "UI without token");

    // Basic auth: the token as password (any user), or as user name with no password.
    let basic = |user_pass: &str| {
        let encoded = base64_encode(user_pass.as_bytes());
        node.get_with(
            "/api/v1/query?query=1",
            &[("Authorization", &format!("Basic {encoded}"))],
        )
    };
    check(&basic(&format!("grafana:{READER}")), 200, "basic password");
    check(&basic(&format!("{READER}:")), 200, "basic user");
    check(&basic("grafana:wrong"), 401, "basic wrong");

    // The failures were counted.
    let metrics = node.get("/metrics").body;
    assert!(
        metrics.contains("strata_http_auth_failures_total{reason=\"missing\"}"),
        "{metrics}"
    );
}

/// Standard base64 with padding, enough for test credentials.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn cluster_insert_and_select_check_the_path_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir, "");
    let config = config.to_str().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (insert_rpc, select_rpc) = (free_port(), free_port());
    let storage = Strata::builder()
        .role("storage")
        .data_dir(data.path())
        .arg("--config")
        .arg(config)
        .arg("--insert-listen-addr")
        .arg(format!("127.0.0.1:{insert_rpc}"))
        .arg("--select-listen-addr")
        .arg(format!("127.0.0.1:{select_rpc}"))
        .start();
    let insert = Strata::builder()
        .role("insert")
        .arg("--config")
        .arg(config)
        .arg("--storage-node")
        .arg(format!("127.0.0.1:{insert_rpc}"))
        .start();
    let select = Strata::builder()
        .role("select")
        .arg("--config")
        .arg(config)
        .arg("--storage-node")
        .arg(format!("127.0.0.1:{select_rpc}"))
        .start();

    let body = b"auth_cluster_metric 1\n";
    // (token, tenant in the path, insert status, select status, delete status)
    let table: [(Option<&str>, &str, u16, u16, u16); 10] = [
        (None, "42", 401, 401, 401),
        (Some(WRONG), "42", 401, 401, 401),
        (Some(TENANT42), "42", 204, 200, 0),
        (Some(TENANT42), "42:7", 204, 200, 0),
        (Some(TENANT42), "0", 403, 403, 403),
        (Some(TENANT42), "43:0", 403, 403, 403),
        (Some(WRITER), "0", 204, 403, 403),
        (Some(WRITER), "42", 403, 403, 403),
        (Some(READER), "0", 403, 200, 403),
        (Some(ADMIN), "9:9", 204, 200, 0),
    ];
    for (token, tenant, want_insert, want_select, want_delete) in table {
        let who = format!("{} @ {tenant}", token.unwrap_or("no token"));
        let r = post(
            &insert,
            token,
            &format!("/insert/{tenant}/prometheus/api/v1/import/prometheus"),
            body,
        );
        check(&r, want_insert, &format!("{who} insert"));
        let r = get(
            &select,
            token,
            &format!("/select/{tenant}/prometheus/api/v1/query?query=1"),
        );
        check(&r, want_select, &format!("{who} select"));
        let r = post(
            &select,
            token,
            &format!("/delete/{tenant}/prometheus/api/v1/admin/tsdb/delete_series?match[]=nothing_here"),
            b"",
        );
        check(&r, want_delete, &format!("{who} delete"));
    }
    // A query with the admin path under /select needs admin, not read.
    check(
        &get(
            &select,
            Some(READER),
            "/select/0/prometheus/api/v1/admin/tsdb/delete_series?match[]=x",
        ),
        403,
        "reader admin path under select",
    );
    // The storage node's own HTTP API is protected too (tenant 0:0).
    check(
        &get(&storage, Some(READER), "/api/v1/export?match[]=x"),
        200,
        "storage export",
    );
    check(
        &post(&storage, Some(READER), "/internal/force_merge", b""),
        403,
        "storage merge",
    );
    check(&get(&storage, None, "/health"), 200, "storage health");
}

/// Opens a request whose body never completes, so the handler holds its slot until the
/// socket is closed.
fn hold_slot(node: &Strata, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", node.port())).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nquery="
    )
    .unwrap();
    stream.flush().unwrap();
    stream
}

fn throttled(node: &Strata, kind: &str) -> u64 {
    let metrics = node.get("/metrics").body;
    let name = format!("{kind}{{");
    metrics
        .lines()
        .find(|l| l.starts_with(&name) || l.starts_with(&format!("{kind} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn overload_answers_503_with_retry_after_and_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let limits = dir.path().join("limits.toml");
    std::fs::write(
        &limits,
        "[limits]\nquery_queue_wait = \"200ms\"\ningest_queue_wait = \"200ms\"\n",
    )
    .unwrap();
    let node = Strata::builder()
        .arg("--max-concurrent-queries")
        .arg("1")
        .arg("--max-concurrent-ingest")
        .arg("1")
        .arg("--config")
        .arg(limits.to_str().unwrap())
        .start();

    // Queries: one held, the next waits 200 ms and gets 503.
    let held = hold_slot(&node, "/api/v1/query");
    std::thread::sleep(Duration::from_millis(300));
    let burst: Vec<Reply> = (0..4).map(|_| node.get("/api/v1/query?query=1")).collect();
    for reply in &burst {
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.header_values("retry-after"), vec!["1"]);
        assert_eq!(reply.json()["errorType"], "unavailable");
        assert!(reply.body.contains("max_concurrent_queries"), "{}", reply.body);
    }
    assert_eq!(node.get("/health").status, 200, "probes are never throttled");
    assert!(throttled(&node, "strata_http_requests_throttled_total") >= 4);
    drop(held);
    let after = node.poll("/api/v1/query?query=1", Duration::from_secs(5), |r| r.status == 200);
    assert_eq!(
        after.status, 200,
        "the slot comes back when the client goes: {}",
        after.body
    );

    // Ingestion: the same with its own limit.
    let held = hold_slot(&node, "/api/v1/import/prometheus");
    std::thread::sleep(Duration::from_millis(300));
    let reply = node.post("/api/v1/import/prometheus", "text/plain", b"overload_metric 1\n");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header_values("retry-after"), vec!["1"]);
    assert!(throttled(&node, "strata_ingest_requests_throttled_total") >= 1);
    // Queries are a separate pool and still work.
    assert_eq!(node.get("/api/v1/query?query=1").status, 200);
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        if node
            .post("/api/v1/import/prometheus", "text/plain", b"overload_metric 1\n")
            .status
            == 204
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "ingestion recovers once the slot is free");
    assert_eq!(node.get("/health").status, 200);
}
