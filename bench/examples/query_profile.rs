//! The dashboard suite in process, without HTTP: loads the bench data set into a local
//! `Storage` once, then times every PromQL query of [`strata_bench::queries::suite`] through
//! `strata_query::Engine` over `strata_http::local::StorageSource` — the same path the query API
//! takes — and prints the median latency and the process' peak RSS. Meant for profiling
//! (`perf record -g`) and quick before/after comparisons of the query engine.
//!
//! ```sh
//! cargo run --release -p strata-bench --example query_profile -- /tmp/qp-data 100000 100 5
//! ```
//! Arguments: data directory (reused when it already holds the data), series, scrapes, reps,
//! and optionally a substring selecting the queries to run.

#![allow(clippy::print_stdout)] // A command-line tool: the table on stdout is its output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use strata_bench::datagen::{Dataset, GenConfig};
use strata_bench::queries::{Ask, suite};
use strata_http::local::StorageSource;
use strata_query::{Engine, QueryOptions, QueryValue};
use strata_storage::index::Label;
use strata_storage::{Storage, StorageOptions, Tenant};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/strata-query-profile".into()),
    );
    let series: usize = arg(&args, 2, 100_000);
    let scrapes: usize = arg(&args, 3, 100);
    let reps: usize = arg(&args, 4, 5);
    let only = args.get(5).cloned().unwrap_or_default();
    std::fs::create_dir_all(&dir)?;
    let marker = dir.join("loaded-start-ms");
    let start_ms = match std::fs::read_to_string(&marker) {
        Ok(s) => s.trim().parse::<i64>()?,
        Err(_) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
            (now - scrapes as i64 * 15_000 - 300_000) / 60_000 * 60_000
        }
    };
    let data = Dataset::new(GenConfig::new(42, series, scrapes, start_ms));
    let storage = Arc::new(Storage::open(StorageOptions {
        data_path: dir.join("storage"),
        table: Default::default(),
        index: Default::default(),
    })?);
    if !marker.exists() {
        let began = Instant::now();
        let mut generator = data.generator();
        while let Some(scrape) = generator.next_scrape() {
            for (i, v) in scrape.values.iter().enumerate() {
                let labels: Vec<Label<'_>> = data
                    .labels(i)
                    .iter()
                    .map(|(n, v)| Label { name: n, value: v })
                    .collect();
                let t = scrape.timestamps[data.instance_of(i)];
                storage.add_series(Tenant::default(), &labels, &[t], &[*v])?;
            }
        }
        storage.force_flush()?;
        storage.force_merge("")?;
        std::fs::write(&marker, start_ms.to_string())?;
        eprintln!(
            "loaded {} series × {scrapes} scrapes in {:.1} s",
            data.series_count(),
            began.elapsed().as_secs_f64()
        );
    }
    let opts = QueryOptions::default();
    let source = StorageSource::new(Arc::clone(&storage), Tenant::default(), opts.max_series);
    let engine = Engine::new(Arc::new(source), opts);
    // The bench's window: instant queries at the end, range queries over the last hour.
    let end = data.last_timestamp() / 1000 + 1;
    let first = start_ms / 1000;
    let rstart = first.max(end - 3600);
    let step = (((end - rstart) / 120).max(15) / 15) * 15;
    eprintln!("rss before queries: {:.0} MiB", peak_rss_mib());
    let mut log_sum = 0.0;
    let mut count = 0;
    for q in suite() {
        if !only.is_empty() && !q.name.contains(&only) {
            continue;
        }
        let mut times = Vec::new();
        let mut len = 0;
        for rep in 0..=reps {
            let began = Instant::now();
            let res = match &q.ask {
                Ask::Instant(e) => engine.instant_query(e, end * 1000)?,
                Ask::Range(e) => engine.range_query(e, rstart * 1000, end * 1000, step * 1000)?,
                _ => continue,
            };
            if rep > 0 {
                times.push(began.elapsed().as_secs_f64() * 1000.0);
            }
            len = match res.value {
                QueryValue::Vector(v) => v.len(),
                QueryValue::Matrix(m) => m.len(),
                _ => 1,
            };
        }
        if times.is_empty() {
            continue;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        log_sum += median.ln();
        count += 1;
        println!(
            "{:<32} {:>9.2} ms  ({len} series, peak RSS {:.0} MiB)",
            q.name,
            median,
            peak_rss_mib()
        );
    }
    if count > 0 {
        println!("geomean {:.2} ms over {count} queries", (log_sum / count as f64).exp());
    }
    Ok(())
}
