use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

/// A receiver answering with the next status of `script` (then 204), recording the samples of
/// each request it accepts.
type Accepted = Arc<Mutex<Vec<Vec<(String, i64, f64)>>>>;

struct Receiver_ {
    url: String,
    accepted: Accepted,
    requests: Arc<Mutex<usize>>,
}

fn receiver(script: Vec<(u16, Option<&'static str>)>) -> Receiver_ {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(Mutex::new(0));
    let (a, r) = (Arc::clone(&accepted), Arc::clone(&requests));
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0; len];
            stream.read_exact(&mut body).unwrap();
            *r.lock().unwrap() += 1;
            let (status, retry_after) = script.next().unwrap_or((204, None));
            if status == 204 {
                assert!(head.contains("content-encoding: snappy"));
                let raw = strata_ingest::decompress::snappy(&body, 1 << 26).unwrap();
                let mut batch = MetricBatch::new();
                strata_ingest::remote_write::decode_v1(&raw, &mut batch).unwrap();
                let samples = batch
                    .iter()
                    .flat_map(|s| {
                        let name = s.metric_name().to_owned();
                        s.timestamps()
                            .iter()
                            .zip(s.values())
                            .map(move |(t, v)| (name.clone(), *t, *v))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                a.lock().unwrap().push(samples);
            }
            let extra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Receiver_ {
        url,
        accepted,
        requests,
    }
}

fn options(dir: &std::path::Path, urls: Vec<String>) -> RemoteWriteOptions {
    RemoteWriteOptions {
        urls,
        queue_path: dir.to_owned(),
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        send_timeout: Duration::from_secs(5),
        max_samples_per_block: 2,
        // These tests are about the queue and retries; 2.0 has its own tests below.
        protocol: Protocol::V1,
        ..RemoteWriteOptions::default()
    }
}

fn batch(n: i64) -> MetricBatch {
    let mut b = MetricBatch::new();
    for i in 0..n {
        b.add_series([("__name__", "m"), ("i", &i.to_string())], [(1000 + i, i as f64)])
            .unwrap();
    }
    b
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn delivers_in_order_with_retries_and_drops_on_400() {
    let rx = receiver(vec![(503, None), (500, Some("0")), (400, None)]);
    let dir = tempfile::tempdir().unwrap();
    let writer = RemoteWriter::start(options(dir.path(), vec![rx.url.clone()])).unwrap();
    // 5 samples → blocks of 2, 2, 1. The first block: 503, 500, then refused with 400 (dropped).
    writer.push(Tenant::default(), &batch(5)).unwrap();
    wait_for("delivery", || rx.accepted.lock().unwrap().len() == 2);
    let got = rx.accepted.lock().unwrap().clone();
    assert_eq!(got[0], vec![("m".into(), 1002, 2.0), ("m".into(), 1003, 3.0)]);
    assert_eq!(got[1], vec![("m".into(), 1004, 4.0)]);
    let stats = writer.stats();
    assert_eq!(
        (stats[0].blocks_sent, stats[0].blocks_rejected, stats[0].retries),
        (2, 1, 2)
    );
    assert_eq!(stats[0].pending_bytes, 0);
    assert_eq!(*rx.requests.lock().unwrap(), 5);
    writer.shutdown();
}

#[test]
fn queued_blocks_survive_a_restart_while_the_receiver_is_down() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port now.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let writer = RemoteWriter::start(options(dir.path(), vec![url.clone()])).unwrap();
    writer.push(Tenant::default(), &batch(3)).unwrap();
    wait_for("a retry", || writer.stats()[0].retries > 0);
    assert!(writer.stats()[0].pending_bytes > 0);
    writer.shutdown();
    let queue_dir = dir.path().join("persistent-queue").join(queue_dir_name(0, &url));
    assert!(queue_dir.join("metainfo.json").is_file());

    // The receiver comes back on the same URL; a new writer sends what was queued.
    let listener = TcpListener::bind(("127.0.0.1", port));
    let Ok(listener) = listener else { return }; // the port was taken meanwhile: nothing to prove
    drop(listener);
    let rx = receiver_on(port);
    let writer = RemoteWriter::start(options(dir.path(), vec![url])).unwrap();
    wait_for("delivery after restart", || rx.lock().unwrap().len() == 3);
    writer.shutdown();
}

/// A plain 204 receiver on `port`, returning the names of accepted samples.
fn receiver_on(port: u16) -> Arc<Mutex<Vec<i64>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0; len];
            stream.read_exact(&mut body).unwrap();
            let raw = strata_ingest::decompress::snappy(&body, 1 << 26).unwrap();
            let mut batch = MetricBatch::new();
            strata_ingest::remote_write::decode_v1(&raw, &mut batch).unwrap();
            for s in batch.iter() {
                g.lock().unwrap().extend_from_slice(s.timestamps());
            }
            let _ = write!(
                stream,
                "HTTP/1.1 204 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    got
}

#[test]
fn names_and_redaction() {
    assert_eq!(redact("http://u:secret@h:1/x"), "http://u:xxx@h:1/x");
    assert_eq!(redact("http://h:1/x"), "http://h:1/x");
    assert_eq!(queue_dir_name(0, "http://h/x?a=1"), queue_dir_name(0, "http://h/x"));
    assert!(queue_dir_name(1, "http://h/x").starts_with("2_"));
    assert_eq!(queue_dir_name(1, "http://h/x").len(), 2 + 16);
    let blocks = RemoteWriter::encode_blocks(&batch(5), 2);
    assert_eq!(blocks.len(), 3);
}

/// How a [`versioned_receiver`] treats a 2.0 body.
#[derive(Clone, Copy)]
enum V2Support {
    /// Decodes it and confirms with the written headers.
    Full,
    /// Answers 415 Unsupported Media Type.
    Refuse415,
    /// A 1.0-only receiver that ignores the Content-Type: decodes the body as 1.0 (finding no
    /// series) and answers 204 without the 2.0 headers.
    Ignores,
}

/// Per accepted request: the version it came as and its samples' timestamps.
type Versioned = Arc<Mutex<Vec<(&'static str, Vec<i64>)>>>;

/// A receiver recording what it accepted.
fn versioned_receiver(support: V2Support) -> (String, Versioned) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0; len];
            stream.read_exact(&mut body).unwrap();
            let v2 = head.contains("io.prometheus.write.v2.request");
            if v2 {
                assert!(head.contains("x-prometheus-remote-write-version: 2.0.0"), "{head}");
            }
            let raw = strata_ingest::decompress::snappy(&body, 1 << 26).unwrap();
            let mut batch = MetricBatch::new();
            let (status, headers) = match (v2, support) {
                (true, V2Support::Refuse415) => (415, ""),
                (true, V2Support::Full) => {
                    strata_ingest::remote_write::decode_v2(&raw, &mut batch).unwrap();
                    (204, "X-Prometheus-Remote-Write-Samples-Written: 1\r\n")
                }
                _ => {
                    strata_ingest::remote_write::decode_v1(&raw, &mut batch).unwrap();
                    (204, "")
                }
            };
            if status == 204 {
                let ts = batch.iter().flat_map(|s| s.timestamps().to_vec()).collect();
                g.lock().unwrap().push((if v2 { "2.0" } else { "1.0" }, ts));
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, got)
}

fn auto_options(dir: &std::path::Path, url: String) -> RemoteWriteOptions {
    RemoteWriteOptions {
        protocol: Protocol::Auto,
        ..options(dir, vec![url])
    }
}

#[test]
fn auto_sends_2_0_to_a_receiver_that_takes_it() {
    let (url, got) = versioned_receiver(V2Support::Full);
    let dir = tempfile::tempdir().unwrap();
    let writer = RemoteWriter::start(auto_options(dir.path(), url)).unwrap();
    writer.push(Tenant::default(), &batch(3)).unwrap();
    wait_for("delivery", || got.lock().unwrap().len() == 2);
    let got = got.lock().unwrap().clone();
    assert_eq!(got, vec![("2.0", vec![1000, 1001]), ("2.0", vec![1002])]);
    assert_eq!(writer.stats()[0].protocol, "2.0");
    writer.shutdown();
}

#[test]
fn auto_falls_back_to_1_0_on_415_and_on_a_silent_1_0_receiver() {
    for support in [V2Support::Refuse415, V2Support::Ignores] {
        let (url, got) = versioned_receiver(support);
        let dir = tempfile::tempdir().unwrap();
        let writer = RemoteWriter::start(auto_options(dir.path(), url)).unwrap();
        writer.push(Tenant::default(), &batch(3)).unwrap();
        wait_for("delivery", || {
            got.lock().unwrap().iter().filter(|(v, _)| *v == "1.0").count() == 2
        });
        let got = got.lock().unwrap().clone();
        // Every sample arrives as 1.0; a silent receiver saw one 2.0 body it could not read.
        let v1: Vec<_> = got.iter().filter(|(v, _)| *v == "1.0").cloned().collect();
        assert_eq!(v1, vec![("1.0", vec![1000, 1001]), ("1.0", vec![1002])]);
        assert!(got.iter().filter(|(v, _)| *v == "2.0").count() <= 1, "{got:?}");
        let stats = writer.stats();
        assert_eq!(
            (stats[0].protocol, stats[0].blocks_sent, stats[0].blocks_rejected),
            ("1.0", 2, 0)
        );
        writer.shutdown();
    }
}

#[test]
fn fixed_2_0_drops_blocks_a_receiver_refuses_with_415() {
    let (url, got) = versioned_receiver(V2Support::Refuse415);
    let dir = tempfile::tempdir().unwrap();
    let writer = RemoteWriter::start(RemoteWriteOptions {
        protocol: Protocol::V2,
        ..options(dir.path(), vec![url])
    })
    .unwrap();
    writer.push(Tenant::default(), &batch(3)).unwrap();
    wait_for("both blocks refused", || writer.stats()[0].blocks_rejected == 2);
    assert!(got.lock().unwrap().is_empty());
    assert_eq!(writer.stats()[0].protocol, "2.0");
    writer.shutdown();
}

#[test]
fn v2_encoding_round_trips_through_the_receiver_decoder() {
    let mut b = MetricBatch::new();
    b.add_series([("__name__", "a"), ("job", "x")], [(1, 1.5), (2, 2.5)])
        .unwrap();
    b.add_series(
        [("__name__", "b"), ("job", "x")],
        [(3, f64::from_bits(crate::scrape::STALE_NAN_BITS))],
    )
    .unwrap();
    let block = &RemoteWriter::encode_blocks(&b, 100)[0];
    let v2 = v1_block_to_v2(block).unwrap();
    let raw = strata_ingest::decompress::snappy(&v2, 1 << 20).unwrap();
    let mut back = MetricBatch::new();
    strata_ingest::remote_write::decode_v2(&raw, &mut back).unwrap();
    type Decoded = (Vec<(String, String)>, Vec<i64>, Vec<u64>);
    let series: Vec<Decoded> = back
        .iter()
        .map(|s| {
            (
                s.labels().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
                s.timestamps().to_vec(),
                s.values().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect();
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0].0,
        vec![("__name__".into(), "a".into()), ("job".into(), "x".into())]
    );
    assert_eq!(series[0].1, vec![1, 2]);
    assert_eq!(series[0].2, vec![1.5f64.to_bits(), 2.5f64.to_bits()]);
    // The stale marker keeps its exact bits.
    assert_eq!(series[1].2, vec![crate::scrape::STALE_NAN_BITS]);
    assert!(v1_block_to_v2(b"not snappy").is_err());
}
