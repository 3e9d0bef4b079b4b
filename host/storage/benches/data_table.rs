//! Table benchmarks that print figures:
//! 1. bytes per sample of the data files after a full merge, on node_exporter-like data
//!    (counters and gauges scraped every 15 s with jitter, 12 h per series);
//!    side by side with VictoriaMetrics (`/usr/bin/victoria-metrics`, or `STRATA_BENCH_VM`) fed
//!    the same samples over its Prometheus text import on a loopback port;
//! 2. `add_rows` throughput on 1 and 2 threads for 100k series × 100 samples.
//!
//! Run: `cargo bench -p strata-storage --bench data_table`
//! (`STRATA_BENCH_ONLY=bytes|add_rows` runs one half; `STRATA_BENCH_TARGETS` = scrape targets per mix, default 100; 112 series each in the
//! node_exporter-like mix, 40 in the all-busy one.)

// Benchmarks exist to print their figures.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_storage::data::{RawRow, Table, TableOptions};
use strata_storage::{NoDeletedMetricIds, Tsid};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How one node_exporter-like series evolves per scrape.
#[derive(Clone, Copy)]
enum Kind {
    /// Seconds counter with two decimals (cpu seconds): + up to `n` hundredths per scrape.
    Centi(u64),
    /// Integer counter: + up to `n` per scrape (bytes, packets, operations).
    Counter(u64),
    /// Error/drop counter: +1 in about one scrape of 500.
    Rare,
    /// Bytes in 4 KiB pages, random walk of up to ±`n` pages.
    Pages(u64),
    /// Load-average-like gauge, two decimals.
    Load,
    /// Temperature-like gauge, one decimal.
    Temperature,
    /// Scrape-duration-like gauge: a fresh float with 6 significant digits every scrape.
    Duration,
    /// Never changes (sizes, info, up, success flags, idle devices).
    Constant,
}

/// (metric name, series of that name, how each evolves). Series of one name sit next to each
/// other in TSID order, as in the real index.
fn realistic_mix() -> Vec<(u64, Kind)> {
    use Kind::*;
    let mut v = Vec::new();
    let mut add = |name: u64, kinds: &[Kind]| v.extend(kinds.iter().map(|k| (name, *k)));
    let cpu = [
        Centi(1500),
        Centi(300),
        Centi(200),
        Centi(20),
        Centi(5),
        Centi(5),
        Constant,
        Constant,
    ];
    add(1, &[cpu, cpu].concat()); // node_cpu_seconds_total{cpu,mode}
    add(2, &[Counter(2_000_000), Counter(50_000), Constant]); // receive_bytes eth0, lo, docker0
    add(3, &[Counter(500_000), Counter(50_000), Constant]); // transmit_bytes
    add(4, &[Counter(2000), Counter(100), Constant]); // receive_packets
    add(5, &[Counter(800), Counter(100), Constant]); // transmit_packets
    add(6, &[Rare, Constant, Constant, Rare, Constant, Constant]); // errs
    add(7, &[Rare, Constant, Constant, Rare, Constant, Constant]); // drop
    add(8, &[Counter(50), Counter(5)]); // disk reads completed
    add(9, &[Counter(80), Counter(10)]); // disk writes completed
    add(10, &[Counter(400_000), Counter(40_000)]); // disk read bytes
    add(11, &[Counter(900_000), Counter(90_000)]); // disk written bytes
    add(12, &[Centi(150), Centi(10)]); // disk io time seconds
    add(13, &[Constant, Constant, Constant, Constant, Constant]); // memory totals
    add(
        14,
        &[
            Pages(64),
            Pages(64),
            Pages(16),
            Pages(16),
            Pages(4),
            Pages(4),
            Pages(1),
            Pages(1),
        ],
    );
    add(
        15,
        &[Pages(32), Pages(8), Pages(8), Pages(2), Pages(2), Pages(1), Pages(0)],
    );
    add(16, &[Pages(8), Pages(1), Pages(0)]); // filesystem avail
    add(17, &[Pages(8), Pages(1), Pages(0)]); // filesystem free
    add(18, &[Constant; 12]); // filesystem size, files, readonly, device_error
    add(19, &[Counter(3), Constant, Constant]); // files_free-like slow gauge
    add(20, &[Load, Load, Load]);
    add(21, &[Temperature, Temperature]);
    add(22, &[Duration; 6]); // node_scrape_collector_duration_seconds
    add(23, &[Constant; 6]); // node_scrape_collector_success
    add(24, &[Constant; 4]); // node_uname_info, node_boot_time, up, ...
    v
}

/// Every series busy: the harsh case.
fn busy_mix() -> Vec<(u64, Kind)> {
    use Kind::*;
    let kinds = [
        Centi(1500),
        Counter(1_000_000),
        Counter(2000),
        Pages(32),
        Load,
        Temperature,
        Counter(100),
        Centi(300),
    ];
    (0..40).map(|i| (i as u64 / 5, kinds[i % kinds.len()])).collect()
}

struct Target {
    tsids: Vec<Tsid>,
    state: Vec<f64>,
    offset: i64,
}

fn targets(n: usize, mix: &[(u64, Kind)], rng: &mut Rng) -> Vec<Target> {
    (0..n)
        .map(|t| {
            let tsids = mix
                .iter()
                .enumerate()
                .map(|(s, (name, _))| Tsid {
                    metric_group_id: *name,
                    job_id: 1,
                    instance_id: t as u32,
                    metric_id: (t * mix.len() + s) as u64,
                    ..Default::default()
                })
                .collect();
            let state = mix
                .iter()
                .map(|(_, k)| match k {
                    Kind::Centi(_) => rng.below(10_000_000) as f64 / 100.0,
                    Kind::Counter(_) => rng.below(1 << 40) as f64,
                    Kind::Rare => rng.below(10) as f64,
                    Kind::Pages(_) => (rng.below(1 << 20) * 4096) as f64,
                    Kind::Load => rng.below(400) as f64 / 100.0,
                    Kind::Temperature => (400 + rng.below(200)) as f64 / 10.0,
                    Kind::Duration => 0.0,
                    Kind::Constant => (rng.below(64) * 1024 * 1024 * 1024) as f64,
                })
                .collect();
            Target {
                tsids,
                state,
                offset: rng.below(15_000) as i64,
            }
        })
        .collect()
}

fn step(k: Kind, v: f64, rng: &mut Rng) -> f64 {
    match k {
        Kind::Centi(n) => ((v * 100.0).round() + rng.below(n + 1) as f64) / 100.0,
        Kind::Counter(n) => v + rng.below(n + 1) as f64,
        Kind::Rare => v + f64::from(rng.below(500) == 0),
        Kind::Pages(n) => (v + (rng.below(2 * n + 1) as f64 - n as f64) * 4096.0).max(0.0),
        Kind::Load => (((v * 100.0).round() + rng.below(21) as f64 - 10.0).max(0.0)) / 100.0,
        Kind::Temperature => (((v * 10.0).round() + rng.below(5) as f64 - 2.0).clamp(300.0, 900.0)) / 10.0,
        Kind::Duration => (100_000 + rng.below(900_000)) as f64 / 1e9,
        Kind::Constant => v,
    }
}

fn dir_bytes(dir: &Path, by_name: &mut std::collections::BTreeMap<String, u64>) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_bytes(&p, by_name);
        } else if let Ok(m) = p.metadata() {
            total += m.len();
            *by_name.entry(e.file_name().to_string_lossy().into_owned()).or_default() += m.len();
        }
    }
    total
}

fn bytes_per_sample(label: &str, mix: &[(u64, Kind)]) {
    let n_targets: usize = std::env::var("STRATA_BENCH_TARGETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let scrapes = 12 * 3600 / 15;
    let dir = tempfile::tempdir().expect("tempdir");
    let table = Table::open(
        dir.path(),
        TableOptions {
            min_free_disk_bytes: 0,
            ..Default::default()
        },
        Arc::new(NoDeletedMetricIds),
    )
    .expect("open");
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut tg = targets(n_targets, mix, &mut rng);
    let start = now_ms() - 13 * 3_600_000;
    let mut samples = 0u64;
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(n_targets * mix.len());
    let mut vm = Vm::start();
    let mut text = String::new();
    for i in 0..scrapes {
        batch.clear();
        for t in &mut tg {
            // Scrape jitter: the same timestamp for every series of a target, ±10 ms.
            let ts = start + t.offset + i * 15_000 + rng.below(21) as i64 - 10;
            for (s, (_, k)) in mix.iter().enumerate() {
                t.state[s] = step(*k, t.state[s], &mut rng);
                batch.push(RawRow {
                    tsid: t.tsids[s],
                    timestamp: ts,
                    value: t.state[s],
                });
            }
        }
        samples += batch.len() as u64;
        table.add_rows(&batch).expect("add_rows");
        if let Some(v) = &mut vm {
            use std::fmt::Write;
            text.clear();
            for r in &batch {
                let t = &r.tsid;
                let _ = writeln!(
                    text,
                    "m{}{{instance=\"t{}\",s=\"{}\"}} {} {}",
                    t.metric_group_id, t.instance_id, t.metric_id, r.value, r.timestamp
                );
            }
            v.import(&text);
        }
    }
    table.force_merge("").expect("force_merge");
    let ingest = t0.elapsed();
    let st = table.stats();
    let mut by_name = std::collections::BTreeMap::new();
    let total = dir_bytes(dir.path(), &mut by_name);
    println!(
        "{label}: {n_targets} targets x {} series x {scrapes} samples = {samples} samples; ingest+full merge {:.1}s; parts small {} big {}",
        mix.len(),
        ingest.as_secs_f64(),
        st.small.parts,
        st.big.parts
    );
    println!(
        "  data bytes/sample after full merge: {:.3} (total {total} bytes)",
        total as f64 / samples as f64
    );
    for (name, b) in by_name {
        println!(
            "    {name:<16} {:>12} bytes  {:.4} B/sample",
            b,
            b as f64 / samples as f64
        );
    }
    table.close().expect("close");
    match vm {
        Some(mut v) => match v.merged_data_bytes() {
            Some(vb) => println!(
                "  VictoriaMetrics {} fed the same samples: {:.3} B/sample (data/small+big {vb} bytes); strata/VM = {:.2}",
                v.version,
                vb as f64 / samples as f64,
                total as f64 / vb as f64
            ),
            None => println!("  VictoriaMetrics: could not measure (see {})", v.log.display()),
        },
        None => println!("  VictoriaMetrics: binary not found (set STRATA_BENCH_VM), no side-by-side figure"),
    }
}

/// A VictoriaMetrics single-node process on a loopback port, fed the same samples over its
/// Prometheus text import, for the side-by-side bytes-per-sample figure.
struct Vm {
    child: std::process::Child,
    addr: String,
    dir: tempfile::TempDir,
    log: std::path::PathBuf,
    version: String,
    failed: bool,
}

impl Vm {
    fn start() -> Option<Vm> {
        let bin = std::env::var("STRATA_BENCH_VM").unwrap_or_else(|_| "/usr/bin/victoria-metrics".into());
        if !Path::new(&bin).exists() {
            return None;
        }
        let version = std::process::Command::new(&bin)
            .arg("-version")
            .output()
            .map(|o| {
                let out = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&out).trim().to_string()
            })
            .unwrap_or_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let log = dir.path().join("vm.log");
        let child = std::process::Command::new(&bin)
            .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1y")
            .arg("-loggerLevel=ERROR")
            .stdout(std::fs::File::create(&log).ok()?)
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let vm = Vm {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
            log,
            version,
            failed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while vm.request("GET", "/health", "").is_none() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut vm = vm;
        vm.version = format!("({bin})");
        if let Some((_, m)) = vm.request("GET", "/metrics", "")
            && let Some(v) = m
                .split("vm_app_version{version=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            && !v.is_empty()
        {
            vm.version = v.to_string();
        }
        Some(vm)
    }

    /// One HTTP/1.1 request; the status code, or None if the connection failed.
    fn request(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body.as_bytes()).ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let code = resp.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, resp))
    }

    fn import(&mut self, text: &str) {
        if !self.failed && !matches!(self.request("POST", "/api/v1/import/prometheus", text), Some((204, _))) {
            self.failed = true;
        }
    }

    /// Flushes, force-merges, waits until merges are done, and sums data/small and data/big.
    fn merged_data_bytes(&mut self) -> Option<u64> {
        if self.failed {
            return None;
        }
        self.request("GET", "/internal/force_flush", "")?;
        self.request("GET", "/internal/force_merge", "")?;
        let mut quiet = 0;
        let deadline = Instant::now() + Duration::from_secs(600);
        while quiet < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let (_, m) = self.request("GET", "/metrics", "")?;
            let busy = m
                .lines()
                .filter(|l| l.starts_with("vm_active_merges{type=\"storage/"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            quiet = if busy == 0.0 { quiet + 1 } else { 0 };
        }
        let mut bytes = 0;
        for tier in ["small", "big"] {
            bytes += dir_bytes_skip(&self.dir.path().join("vm").join("data").join(tier));
        }
        Some(bytes)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Like `dir_bytes`, without snapshots.
fn dir_bytes_skip(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name() == "snapshots" {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            total += dir_bytes_skip(&p);
        } else if let Ok(m) = p.metadata() {
            total += m.len();
        }
    }
    total
}

fn add_rows_throughput(threads: usize) {
    const SERIES: usize = 100_000;
    const SAMPLES: i64 = 100;
    const BATCH: usize = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let table = Arc::new(
        Table::open(
            dir.path(),
            TableOptions {
                min_free_disk_bytes: 0,
                ..Default::default()
            },
            Arc::new(NoDeletedMetricIds),
        )
        .expect("open"),
    );
    let start = now_ms() - 2 * 3_600_000;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let table = table.clone();
            s.spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                // Each thread owns a slice of the series, scraped round by round.
                let lo = th * SERIES / threads;
                let hi = (th + 1) * SERIES / threads;
                for i in 0..SAMPLES {
                    for id in lo..hi {
                        batch.push(RawRow {
                            tsid: Tsid {
                                metric_group_id: (id % 500) as u64,
                                metric_id: id as u64,
                                ..Default::default()
                            },
                            timestamp: start + i * 15_000,
                            value: (id as i64 * 10 + i) as f64,
                        });
                        if batch.len() == BATCH {
                            table.add_rows(&batch).expect("add_rows");
                            batch.clear();
                        }
                    }
                }
                if !batch.is_empty() {
                    table.add_rows(&batch).expect("add_rows");
                }
            });
        }
    });
    let added = t0.elapsed();
    table.flush().expect("flush");
    let flushed = t0.elapsed();
    let rows = (SERIES as f64) * SAMPLES as f64;
    println!(
        "add_rows {threads} thread(s), {SERIES} series x {SAMPLES} samples: {:.2} M rows/s ({:.2}s), {:.2} M rows/s including flush to disk ({:.2}s)",
        rows / added.as_secs_f64() / 1e6,
        added.as_secs_f64(),
        rows / flushed.as_secs_f64() / 1e6,
        flushed.as_secs_f64()
    );
    drop(table);
    std::thread::sleep(Duration::from_millis(10));
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("data_table bench: pass --bench (cargo bench) to run");
        return;
    }
    // STRATA_BENCH_ONLY=bytes|add_rows runs one half.
    let only = std::env::var("STRATA_BENCH_ONLY").unwrap_or_default();
    if only != "add_rows" {
        bytes_per_sample("node_exporter-like mix", &realistic_mix());
        bytes_per_sample("all-busy mix", &busy_mix());
    }
    if only == "bytes" {
        return;
    }
    add_rows_throughput(1);
    add_rows_throughput(2);
}
