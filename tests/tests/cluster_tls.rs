//! Mutual TLS on the cluster protocol between real processes, with a CA and certificates made
//! by the test: a storage node that requires client certificates, insert and select nodes that
//! present one; data goes through; a select node without TLS is refused and logs why.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use strata_e2e::{Strata, free_port};
use strata_ingest::prompb::{Label, Sample, TimeSeries, WriteRequest, encode_snappy};

struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "strata e2e cluster CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str, sans: &[&str]| {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        server: leaf("storage", &["127.0.0.1"]),
        client: leaf("client", &["strata-insert"]),
        ca: ca_path,
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn mutual_tls_between_cluster_roles() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (ip, sp) = (free_port(), free_port());
    let _storage = Strata::builder()
        .role("storage")
        .arg("--insert-listen-addr")
        .arg(format!("127.0.0.1:{ip}"))
        .arg("--select-listen-addr")
        .arg(format!("127.0.0.1:{sp}"))
        .arg("--cluster-tls-cert-file")
        .arg(path(&pki.server.0))
        .arg("--cluster-tls-key-file")
        .arg(path(&pki.server.1))
        .arg("--cluster-tls-ca-file")
        .arg(path(&pki.ca))
        .start();
    let with_tls = |role: &str, port: u16| {
        Strata::builder()
            .role(role)
            .arg("--storage-node")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cluster-tls-ca-file")
            .arg(path(&pki.ca))
            .arg("--cluster-tls-cert-file")
            .arg(path(&pki.client.0))
            .arg("--cluster-tls-key-file")
            .arg(path(&pki.client.1))
            .start()
    };
    let insert = with_tls("insert", ip);
    let select = with_tls("select", sp);

    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 / 1000 * 1000;
    let req = WriteRequest {
        timeseries: (0..5)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "tls_metric".into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: format!("h{i}"),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect(),
        metadata: Vec::new(),
    };
    let r = insert.post_with(
        "/insert/0/prometheus/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode_snappy(&req),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let q = format!(
        "/select/0/prometheus/api/v1/query?query=count(tls_metric)&time={}",
        t / 1000
    );
    let r = select.poll(&q, Duration::from_secs(20), |r| {
        r.status == 200 && r.json()["data"]["result"][0]["value"][1] == "5"
    });
    assert_eq!(r.json()["data"]["result"][0]["value"][1], "5", "{}", r.body);

    // A select node without TLS settings is refused by the storage node, and says why.
    let plain = Strata::builder()
        .role("select")
        .arg("--storage-node")
        .arg(format!("127.0.0.1:{sp}"))
        .start();
    let r = plain.get(&q);
    assert_eq!(r.status, 503, "{}", r.body);
    let logs = plain.logs();
    assert!(logs.contains("requires TLS"), "{logs}");
}
