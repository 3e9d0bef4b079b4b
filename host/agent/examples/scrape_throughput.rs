//! Scrape throughput: one target exposing `SERIES` series (default 100k) served from memory on
//! 127.0.0.1, scraped `SCRAPES` times (default 20) by a [`ScrapeLoop`] into a sink that encodes
//! remote-write blocks and counts; prints samples per second and CPU seconds per million samples (this process's user
//! + system time from /proc, which includes the tiny server writing the body).
//!
//! `cargo run --release -p strata-agent --example scrape_throughput [SERIES] [SCRAPES]`

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use strata_agent::config::parse;
use strata_agent::discovery::discover;
use strata_agent::scrape::{ScrapeLoop, TargetStatus};
use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError, Tenant};

struct CountingSink(AtomicU64);

impl SampleSink for CountingSink {
    fn push(&self, _tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        // Encode as the agent role would before queueing (snappy remote-write 1.0 blocks), so
        // the figure compares with vmagent's scrape + encode work.
        let blocks = strata_agent::RemoteWriter::encode_blocks(batch, 10_000);
        std::hint::black_box(blocks);
        self.0.fetch_add(batch.sample_count() as u64, Ordering::Relaxed);
        Ok(PushOutcome {
            samples_written: batch.sample_count() as u64,
        })
    }
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[allow(clippy::print_stdout, reason = "the example reports its figures")]
fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let scrapes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let mut body = String::new();
    for i in 0..series {
        body.push_str(&format!(
            "bench_metric_total{{instance_id=\"{}\",path=\"/api/v1/item/{}\",code=\"{}\"}} {}\n",
            i % 100,
            i,
            200 + i % 5,
            i * 3
        ));
    }
    let body = Arc::new(body);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let served = Arc::clone(&body);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                served.len()
            );
            let _ = stream.write_all(served.as_bytes());
        }
    });
    let text = format!(
        "global: {{scrape_interval: 1m, scrape_timeout: 50s}}\nscrape_configs:\n  - job_name: bench\n    static_configs: [{{targets: ['{addr}']}}]\n"
    );
    let loaded = parse(&text, std::path::Path::new("bench.yml"), true).expect("config");
    let spec = discover(&loaded).targets.remove(0);
    let sink = Arc::new(CountingSink(AtomicU64::new(0)));
    let status = Arc::new(Mutex::new(TargetStatus::default()));
    let mut scrape = ScrapeLoop::new(spec, Arc::clone(&sink) as Arc<dyn SampleSink>, Arc::clone(&status));
    scrape.scrape_once(); // warm-up: first scrape adds every series
    let before = sink.0.load(Ordering::Relaxed);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    for _ in 0..scrapes {
        scrape.scrape_once();
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let samples = (sink.0.load(Ordering::Relaxed) - before) as f64;
    let st = status.lock().map(|s| s.clone()).unwrap_or_default();
    println!(
        "series={series} scrapes={scrapes} health={} samples={samples} wall={wall:.2}s samples/s={:.0} cpu={cpu:.2}s cpu_s_per_million={:.3}",
        st.health.as_str(),
        samples / wall,
        cpu / (samples / 1e6)
    );
}
