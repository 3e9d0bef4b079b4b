//! HTTPS on the real binary (issue #12): `--tls-cert-file/--tls-key-file` serve TLS only, a
//! renewed certificate is picked up without a restart, a broken renewal keeps the last good
//! pair, and a bad pair at start-up stops the process naming the file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use strata_e2e::{Strata, free_port, run_to_end};

/// A self-signed certificate for `localhost` plus `extra_name`; returns its DER.
fn write_cert(dir: &Path, extra_name: &str) -> CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), extra_name.to_owned()]).unwrap();
    // Write to temporary names and rename, as renewal tools do, so the server never reads a
    // half-written pair from this test.
    let (cert_tmp, key_tmp) = (dir.join("cert.pem.tmp"), dir.join("key.pem.tmp"));
    std::fs::write(&cert_tmp, made.cert.pem()).unwrap();
    std::fs::write(&key_tmp, made.key_pair.serialize_pem()).unwrap();
    std::fs::rename(&key_tmp, dir.join("key.pem")).unwrap();
    std::fs::rename(&cert_tmp, dir.join("cert.pem")).unwrap();
    made.cert.der().clone()
}

/// One HTTPS GET trusting only `trusted`; returns the status line's code and the leaf
/// certificate the server presented.
fn https_get(port: u16, path: &str, trusted: &[CertificateDer<'static>]) -> Result<(u16, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A close without close_notify is fine for a test that only needs the head.
    let _ = tls.read_to_end(&mut response);
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or("no peer certificate")?;
    let text = String::from_utf8_lossy(&response);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((code, leaf))
}

fn wait_for(what: &str, node: &Strata, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; logs:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn https_serves_reloads_and_refuses_plain_http() {
    let certs = tempfile::tempdir().unwrap();
    let first = write_cert(certs.path(), "first.test");
    let node = Strata::builder()
        .arg("--tls-cert-file")
        .arg(certs.path().join("cert.pem").to_str().unwrap())
        .arg("--tls-key-file")
        .arg(certs.path().join("key.pem").to_str().unwrap())
        .spawn();
    let port = node.port();
    wait_for("HTTPS /health", &node, || {
        matches!(https_get(port, "/health", std::slice::from_ref(&first)), Ok((200, _)))
    });
    let (code, leaf) = https_get(port, "/api/v1/query?query=1%2B1", std::slice::from_ref(&first)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(leaf, first.as_ref());

    // A client that does not trust the certificate fails the handshake.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    assert!(https_get(port, "/health", &[stranger.cert.der().clone()]).is_err());

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "plain HTTP was answered"
    );

    // Renewal: new files are served without a restart (the mtime check runs every second).
    std::thread::sleep(Duration::from_millis(1100));
    let second = write_cert(certs.path(), "second.test");
    let trusted = [first.clone(), second.clone()];
    wait_for(
        "the renewed certificate",
        &node,
        || matches!(https_get(port, "/health", &trusted), Ok((200, leaf)) if leaf == second.as_ref()),
    );

    // A broken renewal keeps the last good pair and the node keeps serving.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(certs.path().join("cert.pem"), "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let (code, leaf) = https_get(port, "/health", &trusted).unwrap();
    assert_eq!((code, leaf), (200, second.as_ref().to_vec()));
    assert!(
        node.logs().contains("keeping the previous TLS certificate"),
        "{}",
        node.logs()
    );
}

#[test]
fn a_bad_certificate_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "x.test");
    let missing = dir.path().join("missing.pem");
    let data = dir.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let finished = run_to_end(&[
        "single",
        "--storage-data-path",
        data.to_str().unwrap(),
        "--http-listen-addr",
        &addr,
        "--tls-cert-file",
        missing.to_str().unwrap(),
        "--tls-key-file",
        dir.path().join("key.pem").to_str().unwrap(),
    ]);
    assert!(!finished.status.success());
    let output = format!("{}{}", finished.stdout, finished.stderr);
    assert!(output.contains("missing.pem"), "{output}");

    // Only one of the two flags is a configuration error.
    let finished = run_to_end(&["check-config", "/dev/null", "--tls-cert-file", "x.pem"]);
    let output = format!("{}{}", finished.stdout, finished.stderr);
    assert!(!finished.status.success(), "{output}");
}
