use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use super::*;

/// A CA, a server certificate for `names` signed by it, and a client certificate signed by it,
/// all written as PEM files into `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path, names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(names)
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["scraper".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server-key.pem", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
    }
}

/// An HTTPS server on 127.0.0.1 answering every request with a one-line exposition; with
/// `require_client_cert` it refuses clients without a certificate from the CA.
fn https_server(pki: &Pki, require_client_cert: bool) -> u16 {
    let provider = provider();
    let chain = read_certs("cert", &pki.server_cert).unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(read_certs("ca", &pki.ca).unwrap());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let body = "tls_ok 1\n";
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

fn get(url: &str, settings: &TlsSettings) -> Result<String, String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .build();
    let tls = RustlsConnector::new(settings).map_err(|e| e.to_string())?;
    let client = agent(config, Some(tls));
    let mut response = client.get(url).call().map_err(|e| e.to_string())?;
    response.body_mut().read_to_string().map_err(|e| e.to_string())
}

#[test]
fn verifies_against_ca_file_and_skips_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), &["localhost", "127.0.0.1"]);
    let port = https_server(&pki, false);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let with_ca = TlsSettings {
        ca_file: Some(pki.ca.clone()),
        ..TlsSettings::default()
    };
    assert_eq!(get(&url, &with_ca).unwrap(), "tls_ok 1\n");
    // A DNS name in the certificate works too.
    assert_eq!(
        get(&format!("https://localhost:{port}/metrics"), &with_ca).unwrap(),
        "tls_ok 1\n"
    );
    // Without our CA the certificate is unknown (system roots, or no bundle at all).
    let err = get(&url, &TlsSettings::default()).unwrap_err();
    assert!(err.contains("certificate") || err.contains("CA bundle"), "{err}");
    let insecure = TlsSettings {
        insecure_skip_verify: true,
        ..TlsSettings::default()
    };
    assert_eq!(get(&url, &insecure).unwrap(), "tls_ok 1\n");
}

#[test]
fn server_name_replaces_the_url_host_for_verification() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), &["metrics.strata.test"]);
    let port = https_server(&pki, false);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let mut settings = TlsSettings {
        ca_file: Some(pki.ca.clone()),
        ..TlsSettings::default()
    };
    let err = get(&url, &settings).unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    settings.server_name = Some("metrics.strata.test".into());
    assert_eq!(get(&url, &settings).unwrap(), "tls_ok 1\n");
    settings.server_name = Some("other.strata.test".into());
    assert!(get(&url, &settings).is_err());
}

#[test]
fn presents_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), &["127.0.0.1"]);
    let port = https_server(&pki, true);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let mut settings = TlsSettings {
        ca_file: Some(pki.ca.clone()),
        ..TlsSettings::default()
    };
    assert!(
        get(&url, &settings).is_err(),
        "the server requires a client certificate"
    );
    settings.cert_file = Some(pki.client_cert.clone());
    settings.key_file = Some(pki.client_key.clone());
    assert_eq!(get(&url, &settings).unwrap(), "tls_ok 1\n");
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let missing = TlsSettings {
        ca_file: Some(dir.path().join("nope.pem")),
        ..TlsSettings::default()
    };
    let err = RustlsConnector::new(&missing).unwrap_err().to_string();
    assert!(err.contains("ca_file") && err.contains("nope.pem"), "{err}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem").unwrap();
    let err = RustlsConnector::new(&TlsSettings {
        ca_file: Some(garbage),
        ..TlsSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
    let half = TlsSettings {
        cert_file: Some(dir.path().join("c.pem")),
        insecure_skip_verify: true,
        ..TlsSettings::default()
    };
    assert!(
        RustlsConnector::new(&half)
            .unwrap_err()
            .to_string()
            .contains("go together")
    );
    let bad_name = TlsSettings {
        server_name: Some("not a name!".into()),
        insecure_skip_verify: true,
        ..TlsSettings::default()
    };
    assert!(RustlsConnector::new(&bad_name).is_err());
}
