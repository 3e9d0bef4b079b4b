use std::io::{Read, Write};
use std::net::TcpListener;

use strata_ingest::MemorySink;

use super::*;
use crate::config::parse;
use crate::discovery::discover;

/// A tiny HTTP server answering every request with the current (status, body, gzip, delay).
pub(crate) struct TestTarget {
    pub addr: String,
    pub reply: Arc<Mutex<(u16, String, bool, Duration)>>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TestTarget {
    pub fn start(body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reply = Arc::new(Mutex::new((200, body.to_owned(), false, Duration::ZERO)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (Arc::clone(&reply), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (r, q) = (Arc::clone(&r), Arc::clone(&q));
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    q.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    let (status, body, gzip, delay) = r.lock().unwrap().clone();
                    std::thread::sleep(delay);
                    let payload = if gzip {
                        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        enc.write_all(body.as_bytes()).unwrap();
                        enc.finish().unwrap()
                    } else {
                        body.into_bytes()
                    };
                    let encoding = if gzip { "Content-Encoding: gzip\r\n" } else { "" };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        payload.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&payload);
                });
            }
        });
        Self { addr, reply, requests }
    }

    pub fn set(&self, status: u16, body: &str) {
        let mut r = self.reply.lock().unwrap();
        r.0 = status;
        r.1 = body.to_owned();
    }
}

fn spec(addr: &str, extra: &str) -> TargetSpec {
    let text = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 500ms, external_labels: {{dc: eu}}}}\nscrape_configs:\n  - job_name: t\n    static_configs: [{{targets: ['{addr}']}}]\n{extra}"
    );
    let loaded = parse(&text, std::path::Path::new("p.yml"), true).unwrap();
    discover(&loaded).targets.remove(0)
}

fn scrape_loop(spec: TargetSpec) -> (ScrapeLoop, Arc<MemorySink>, Arc<Mutex<TargetStatus>>) {
    let sink = Arc::new(MemorySink::new());
    let status = Arc::new(Mutex::new(TargetStatus::default()));
    let l = ScrapeLoop::new(spec, sink.clone() as Arc<dyn SampleSink>, Arc::clone(&status));
    (l, sink, status)
}

/// (labels as "k=v,..." string, value) of every sample pushed so far.
fn pushed(sink: &MemorySink) -> Vec<(String, f64)> {
    sink.series()
        .iter()
        .flat_map(|s| {
            let key = s
                .labels
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            s.samples.iter().map(move |(_, v)| (key.clone(), *v))
        })
        .collect()
}

fn value_of(samples: &[(String, f64)], name: &str) -> Option<f64> {
    let prefix = format!("__name__={name},");
    samples
        .iter()
        .rev()
        .find(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| *v)
}

#[test]
fn scrape_labels_auto_metrics_and_staleness() {
    let target = TestTarget::start("# TYPE a counter\na{x=\"1\"} 1\na{x=\"2\"} 2\nb{job=\"inner\"} 3 1000\n");
    let (mut l, sink, status) = scrape_loop(spec(&target.addr, ""));
    l.scrape_once();
    let got = pushed(&sink);
    let instance = &target.addr;
    assert!(
        got.contains(&(format!("__name__=a,dc=eu,instance={instance},job=t,x=1"), 1.0)),
        "{got:?}"
    );
    // honor_labels is off: the scraped job label is kept as exported_job.
    assert!(
        got.contains(&(
            format!("__name__=b,dc=eu,exported_job=inner,instance={instance},job=t"),
            3.0
        )),
        "{got:?}"
    );
    assert_eq!(value_of(&got, "up"), Some(1.0));
    assert_eq!(value_of(&got, "scrape_samples_scraped"), Some(3.0));
    assert_eq!(value_of(&got, "scrape_series_added"), Some(3.0));
    assert_eq!(status.lock().unwrap().health, Health::Up);
    // honor_timestamps (default): the exposed timestamp is used.
    let b = sink.series().into_iter().find(|s| s.labels[0].1 == "b").unwrap();
    assert_eq!(b.samples[0].0, 1000);
    // The requests accept gzip and say the timeout.
    let head = target.requests.lock().unwrap()[0].to_lowercase();
    assert!(head.contains("accept-encoding: gzip"), "{head}");
    assert!(head.contains("x-prometheus-scrape-timeout-seconds: 0.5"), "{head}");

    // a{x="2"} disappears: it gets a stale marker; nothing new was added.
    target.set(200, "a{x=\"1\"} 5\nb{job=\"inner\"} 3 1000\n");
    let before = sink.series().len();
    l.scrape_once();
    let new: Vec<_> = sink.series()[before..].to_vec();
    let stale: Vec<_> = new
        .iter()
        .filter(|s| s.samples[0].1.to_bits() == STALE_NAN_BITS)
        .map(|s| s.labels.clone())
        .collect();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].contains(&("x".to_owned(), "2".to_owned())));
    assert_eq!(value_of(&pushed(&sink), "scrape_series_added"), Some(0.0));

    // A failing scrape: up 0, the error kept, every series of the last scrape marked stale.
    target.set(500, "oops");
    let before = sink.series().len();
    l.scrape_once();
    let new: Vec<_> = sink.series()[before..].to_vec();
    let stale = new
        .iter()
        .filter(|s| s.samples[0].1.to_bits() == STALE_NAN_BITS)
        .count();
    assert_eq!(stale, 2);
    assert_eq!(value_of(&pushed(&sink), "up"), Some(0.0));
    let st = status.lock().unwrap().clone();
    assert_eq!(st.health, Health::Down);
    assert!(st.last_error.contains("500"), "{}", st.last_error);

    // The target goes away: markers for the auto series too.
    target.set(200, "a 1\n");
    l.scrape_once();
    let before = sink.series().len();
    l.finish(Stop::Stale);
    let new: Vec<_> = sink.series()[before..].to_vec();
    assert_eq!(new.len(), 1 + AUTO_METRICS.len());
    assert!(new.iter().all(|s| s.samples[0].1.to_bits() == STALE_NAN_BITS));
}

#[test]
fn limits_relabeling_and_honor_options() {
    let target = TestTarget::start("a{x=\"1\",y=\"2\"} 1\nb 2 1000\ngo_x 3\n");
    let extra = "    honor_labels: true\n    honor_timestamps: false\n    metric_relabel_configs:\n      - {source_labels: [__name__], regex: 'go_.*', action: drop}\n";
    let (mut l, sink, _) = scrape_loop(spec(&target.addr, extra));
    l.scrape_once();
    let got = pushed(&sink);
    assert_eq!(value_of(&got, "scrape_samples_scraped"), Some(3.0));
    assert_eq!(value_of(&got, "scrape_samples_post_metric_relabeling"), Some(2.0));
    assert!(!got.iter().any(|(k, _)| k.contains("go_x")));
    let b = sink.series().into_iter().find(|s| s.labels[0].1 == "b").unwrap();
    assert_ne!(b.samples[0].0, 1000, "honor_timestamps: false uses the scrape time");

    for (extra, want) in [
        ("    sample_limit: 2\n", "sample_limit exceeded"),
        ("    label_limit: 2\n", "label_limit exceeded"),
    ] {
        let (mut l, sink, status) = scrape_loop(spec(&target.addr, extra));
        l.scrape_once();
        assert_eq!(value_of(&pushed(&sink), "up"), Some(0.0));
        assert!(status.lock().unwrap().last_error.contains(want));
        assert_eq!(sink.series().len(), AUTO_METRICS.len(), "only the auto series");
    }
}

#[test]
fn gzip_bad_text_and_timeouts() {
    let target = TestTarget::start("m 1\n");
    target.reply.lock().unwrap().2 = true;
    let (mut l, sink, _) = scrape_loop(spec(&target.addr, ""));
    l.scrape_once();
    assert_eq!(value_of(&pushed(&sink), "up"), Some(1.0));
    assert!(
        pushed(&sink)
            .iter()
            .any(|(k, v)| k.starts_with("__name__=m,") && *v == 1.0)
    );

    target.reply.lock().unwrap().2 = false;
    target.set(200, "m{ 1\n");
    l.scrape_once();
    assert!(l.status.lock().unwrap().last_error.contains("cannot parse"));

    // A target that hangs longer than scrape_timeout (500ms) is down.
    target.set(200, "m 1\n");
    target.reply.lock().unwrap().3 = Duration::from_secs(3);
    let start = Instant::now();
    l.scrape_once();
    assert!(start.elapsed() < Duration::from_secs(2));
    let st = l.status.lock().unwrap().clone();
    assert_eq!(st.health, Health::Down);
    assert!(st.last_error.contains("timed out"), "{}", st.last_error);
}

#[test]
fn auth_headers() {
    assert_eq!(base64(b"u:p"), "dTpw");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
    let target = TestTarget::start("m 1\n");
    let (mut l, _, _) = scrape_loop(spec(&target.addr, "    basic_auth: {username: u, password: p}\n"));
    l.scrape_once();
    let (mut l2, _, _) = scrape_loop(spec(&target.addr, "    bearer_token: tok\n"));
    l2.scrape_once();
    let heads = target.requests.lock().unwrap().join("\n").to_lowercase();
    assert!(heads.contains("authorization: basic dtpw"), "{heads}");
    assert!(heads.contains("authorization: bearer tok"), "{heads}");
}

#[test]
fn merge_rules() {
    let mut l: Labels = vec![("__name__".into(), "m".into()), ("job".into(), "a".into())];
    let target: Labels = vec![("instance".into(), "i".into()), ("job".into(), "t".into())];
    let mut honored = l.clone();
    merge_target_labels(&mut honored, &target, true);
    assert_eq!(relabel::get(&honored, "job"), Some("a"));
    assert_eq!(relabel::get(&honored, "instance"), Some("i"));
    merge_target_labels(&mut l, &target, false);
    assert_eq!(relabel::get(&l, "job"), Some("t"));
    assert_eq!(relabel::get(&l, "exported_job"), Some("a"));
}

#[test]
fn borrowed_label_helpers() {
    let mut l = vec![("b", "1"), ("a", "2"), ("b", "3"), ("e", "")];
    normalize_ref(&mut l);
    assert_eq!(l, vec![("a", "2"), ("b", "3")]);
    let compact = encode_compact(&l);
    assert_eq!(decode_compact(&compact).collect::<Vec<_>>(), l);
    assert_eq!(decode_compact(&compact[..5]).count(), 0);
    let target: Labels = vec![("a".into(), "2".into()), ("z".into(), "9".into())];
    assert!(merge_ref(&mut l, &target, false));
    assert_eq!(l, vec![("a", "2"), ("b", "3"), ("z", "9")]);
    let other: Labels = vec![("a".into(), "x".into())];
    assert!(merge_ref(&mut l, &other, true));
    assert!(!merge_ref(&mut l, &other, false), "a conflict needs the owned path");
}

#[test]
fn scrapes_of_a_job_spread_over_the_interval() {
    let interval = 10_000;
    let now = 1_700_000_123_456;
    // 200 targets of one job: keys as discovery makes them (hashes of URL and labels).
    let starts: Vec<i64> = (0..200)
        .map(|i| {
            let key = xxhash_rust::xxh64::xxh64(format!("http://10.0.0.{i}:9100/metrics").as_bytes(), 7);
            first_scrape_at(now, interval, key)
        })
        .collect();
    for &t in &starts {
        assert!((now..now + interval).contains(&t), "{t} outside the first interval");
    }
    // Every tenth of the interval gets some of them, none gets a crowd.
    let mut buckets = [0usize; 10];
    for &t in &starts {
        buckets[usize::try_from((t - now) * 10 / interval).unwrap()] += 1;
    }
    assert!(buckets.iter().all(|&n| (5..=40).contains(&n)), "{buckets:?}");
    // The phase is the target's own: the same key starts at the same point of any interval.
    let key = 123_456_789;
    let a = first_scrape_at(now, interval, key);
    let b = first_scrape_at(now + 3 * interval + 777, interval, key);
    assert_eq!((b - a).rem_euclid(interval), 0);
    // A zero interval does not divide by zero.
    assert_eq!(first_scrape_at(now, 0, key), now);
}
