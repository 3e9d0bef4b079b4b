//! TLS and mutual TLS on the RPC ports with certificates made here (a CA, a server certificate
//! for 127.0.0.1, a client certificate), over the real server and client.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use super::*;
use crate::client::{CallError, ClientOptions, NodeClient};
use crate::proto::{ProtoError, Service, op, status};
use crate::server;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

/// Writes a certificate for `names` signed by `ca` and its key; returns (cert, key) paths.
fn leaf(dir: &Path, file: &str, ca: &Ca, names: &[&str]) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn write_ca(dir: &Path, file: &str, ca: &Ca) -> PathBuf {
    let p = dir.join(format!("{file}.pem"));
    std::fs::write(&p, ca.cert.pem()).unwrap();
    p
}

/// A TLS select-RPC server answering PING; returns the runtime (keep it) and the address.
fn start(config: Arc<rustls::ServerConfig>) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let l = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let handler = server::single(|_| vec![status::OK, 42]);
    rt.spawn(server::serve_tls(
        l,
        Service::Select,
        handler,
        Some(config),
        std::future::pending(),
    ));
    (rt, addr)
}

fn client(addr: &str, tls: Option<ClientTls>) -> NodeClient {
    NodeClient::new(
        addr,
        Service::Select,
        ClientOptions {
            tls,
            ..ClientOptions::default()
        },
    )
}

#[test]
fn mutual_tls_accepts_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster_ca = ca("strata test CA");
    let ca_file = write_ca(d, "ca", &cluster_ca);
    let (server_cert, server_key) = leaf(d, "server", &cluster_ca, &["127.0.0.1", "localhost"]);
    let (client_cert, client_key) = leaf(d, "client", &cluster_ca, &["insert-1"]);
    let (rt, addr) = start(server_config(&server_cert, &server_key, Some(&ca_file)).unwrap());

    // With the CA and a client certificate: the protocol works as usual inside TLS.
    let tls = ClientTls::new(&ca_file, Some((&client_cert, &client_key)), None).unwrap();
    let c = client(&addr, Some(tls.clone()));
    assert_eq!(c.call(&[op::PING]).unwrap(), vec![42]);
    // The pooled connection is reused.
    assert_eq!(c.call(&[op::PING]).unwrap(), vec![42]);

    // Without a client certificate the server refuses the handshake.
    let anonymous = ClientTls::new(&ca_file, None, None).unwrap();
    assert!(matches!(
        client(&addr, Some(anonymous)).call(&[op::PING]),
        Err(CallError::Unavailable { .. })
    ));

    // A plaintext client is told TLS is required.
    match client(&addr, None).call(&[op::PING]) {
        Err(CallError::Unavailable {
            source: ProtoError::Refused(msg),
            ..
        }) => assert!(msg.contains("requires TLS"), "{msg}"),
        other => panic!("{other:?}"),
    }

    // A client that trusts another CA does not accept the server.
    let other_ca = ca("someone else");
    let other_file = write_ca(d, "other", &other_ca);
    let stranger = ClientTls::new(&other_file, Some((&client_cert, &client_key)), None).unwrap();
    assert!(client(&addr, Some(stranger)).call(&[op::PING]).is_err());

    // The certificate names 127.0.0.1 and localhost; asking for another name fails.
    let wrong_name = ClientTls::new(&ca_file, Some((&client_cert, &client_key)), Some("storage-9".into())).unwrap();
    assert!(client(&addr, Some(wrong_name)).call(&[op::PING]).is_err());
    drop(rt);
}

#[test]
fn server_only_tls_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster_ca = ca("strata test CA");
    let ca_file = write_ca(d, "ca", &cluster_ca);
    let (server_cert, server_key) = leaf(d, "server", &cluster_ca, &["localhost"]);
    let (_rt, addr) = start(server_config(&server_cert, &server_key, None).unwrap());
    let port = addr.rsplit_once(':').unwrap().1;
    // Verified by name: dial "localhost".
    let tls = ClientTls::new(&ca_file, None, None).unwrap();
    let c = client(&format!("localhost:{port}"), Some(tls));
    assert_eq!(c.call(&[op::PING]).unwrap(), vec![42]);

    assert!(matches!(
        server_config(&d.join("missing.crt"), &server_key, None),
        Err(TlsError::File { .. })
    ));
    std::fs::write(d.join("empty.pem"), "").unwrap();
    assert!(ClientTls::new(&d.join("empty.pem"), None, None).is_err());
    // A key that does not belong to the certificate.
    let (_, other_key) = leaf(d, "other", &cluster_ca, &["x"]);
    assert!(server_config(&server_cert, &other_key, None).is_err());
    assert_eq!(host_of("[::1]:8401"), "::1");
    assert_eq!(host_of("storage-1:8401"), "storage-1");
}

/// The leaf certificate a TLS server at `addr` presents (a bare handshake, no protocol).
fn presented(addr: &str, tls: &ClientTls) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).unwrap();
    match tls.wrap(addr, tcp).unwrap() {
        Conn::Tls(mut s) => {
            let rustls::StreamOwned { conn, sock } = &mut *s;
            // The server's certificate is known once its flight is read, even if the server
            // then refuses this client's certificate (the error comes after).
            while conn.is_handshaking() && conn.peer_certificates().is_none() {
                if conn.complete_io(sock).is_err() {
                    break;
                }
            }
            conn.peer_certificates().expect("no server certificate")[0]
                .as_ref()
                .to_vec()
        }
        Conn::Plain(_) => panic!("a TLS client dialed in plain text"),
    }
}

/// Longer than the 1 s between two looks at the files.
const PAST_CHECK: std::time::Duration = std::time::Duration::from_millis(1100);

#[test]
fn renewed_server_and_client_pairs_are_picked_up_and_a_broken_renewal_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster_ca = ca("strata test CA");
    let ca_file = write_ca(d, "ca", &cluster_ca);
    let (server_cert, server_key) = leaf(d, "server", &cluster_ca, &["127.0.0.1"]);
    let first = std::fs::read(&server_cert).unwrap();
    // The client starts with a certificate from a CA the storage node does not trust.
    let stranger_ca = ca("someone else");
    let (client_cert, client_key) = leaf(d, "client", &stranger_ca, &["insert-1"]);
    let (rt, addr) = start(server_config(&server_cert, &server_key, Some(&ca_file)).unwrap());
    let tls = ClientTls::new(&ca_file, Some((&client_cert, &client_key)), None).unwrap();
    let old_leaf = presented(&addr, &tls);
    assert!(client(&addr, Some(tls.clone())).call(&[op::PING]).is_err());

    // Both sides renewed in place (same paths, what certbot-like tools do).
    leaf(d, "server", &cluster_ca, &["127.0.0.1"]);
    leaf(d, "client", &cluster_ca, &["insert-1"]);
    assert_ne!(std::fs::read(&server_cert).unwrap(), first);
    std::thread::sleep(PAST_CHECK);
    let new_leaf = presented(&addr, &tls);
    assert_ne!(
        new_leaf, old_leaf,
        "the storage node still presents the old certificate"
    );
    assert_eq!(
        client(&addr, Some(tls.clone())).call(&[op::PING]).unwrap(),
        vec![42],
        "the client did not pick up its renewed certificate"
    );

    // A broken renewal on both sides: the last good pairs keep working.
    std::fs::write(&server_cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    std::fs::write(&client_key, "not a key").unwrap();
    std::thread::sleep(PAST_CHECK);
    assert_eq!(presented(&addr, &tls), new_leaf);
    assert_eq!(client(&addr, Some(tls)).call(&[op::PING]).unwrap(), vec![42]);
    drop(rt);
}
