//! `strata-bench`: runs the side-by-side benchmark and prints the table (Markdown) on stdout.
//! Progress goes to stderr. `scripts/bench` is the one command that installs the peers, builds
//! and runs this.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use strata_bench::datagen::{Dataset, GenConfig};
use strata_bench::plan::Plan;
use strata_bench::queries::Window;
use strata_bench::run::{self, Inputs, Options};
use strata_bench::target::{Kind, Target};
use strata_bench::{influx, procfs, remote_write, summary};

/// Strata side by side with VictoriaMetrics and Prometheus on the same data.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Small and fast: 10k series × 60 scrapes, 4-minute limit (about 2–3 minutes).
    #[arg(long)]
    quick: bool,
    /// Active series (rounded up to whole 134-series instances). Default 100000 (quick: 10000).
    #[arg(long)]
    series: Option<usize>,
    /// Scrapes per series at 15 s. Default 100 (quick: 60).
    #[arg(long)]
    scrapes: Option<usize>,
    /// Samples (series) per remote-write request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent client counts to measure ingestion with.
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    clients: Vec<usize>,
    /// Repetitions per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Timed runs per query (after one warm-up). Default 10 (quick: 5).
    #[arg(long)]
    query_reps: Option<usize>,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Scrape rounds between client barriers.
    #[arg(long, default_value_t = 20)]
    round_scrapes: usize,
    /// Most samples sent in the influx line-protocol runs. Default 2000000 (quick: 600000).
    #[arg(long)]
    influx_max_samples: Option<u64>,
    /// Seconds after which no new measurement starts (the running one finishes). Default 1020
    /// (quick: 240).
    #[arg(long)]
    time_limit: Option<u64>,
    /// Targets, in column order. `strata-wal` is Strata with `--storage-wal` (its ratio column
    /// `strata/strata-wal` is the write-ahead log's cost).
    #[arg(long, value_delimiter = ',', default_value = "strata,victoriametrics,prometheus")]
    targets: Vec<String>,
    /// The strata binary (default: beside this executable, or $STRATA_BIN).
    #[arg(long)]
    strata_bin: Option<PathBuf>,
    /// The victoria-metrics binary.
    #[arg(long, default_value = "/usr/bin/victoria-metrics")]
    vm_bin: PathBuf,
    /// The prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prom_bin: PathBuf,
    /// Where temporary data directories go (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn strata_bin(args: &Args) -> PathBuf {
    if let Some(bin) = &args.strata_bin {
        return bin.clone();
    }
    if let Some(bin) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(bin);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("strata")))
        .unwrap_or_else(|| PathBuf::from("strata"))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("strata-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let began = Instant::now();
    let args = Args::parse();
    let q = args.quick;
    let series = args.series.unwrap_or(if q { 10_000 } else { 100_000 });
    let scrapes = args.scrapes.unwrap_or(if q { 60 } else { 100 });
    let limit = Duration::from_secs(args.time_limit.unwrap_or(if q { 240 } else { 1020 }));
    let mut targets = Vec::new();
    for name in &args.targets {
        let (kind, bin) = match name.as_str() {
            "strata" => (Kind::Strata, strata_bin(&args)),
            "strata-wal" => (Kind::StrataWal, strata_bin(&args)),
            "victoriametrics" | "vm" => (Kind::VictoriaMetrics, args.vm_bin.clone()),
            "prometheus" | "prom" => (Kind::Prometheus, args.prom_bin.clone()),
            other => {
                return Err(format!(
                    "unknown target {other:?} (strata, strata-wal, victoriametrics, prometheus)"
                ));
            }
        };
        targets.push(Target { kind, bin });
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    // The data ends five minutes ago, on a whole minute, so no engine treats it as "in the future".
    let mut cfg = GenConfig::new(args.seed, series, scrapes, 0);
    cfg.start_ms = (now_ms - scrapes as i64 * cfg.interval_ms - 300_000) / 60_000 * 60_000;
    let data = Dataset::new(cfg);
    eprintln!(
        "generating {} series × {} scrapes = {} samples",
        data.series_count(),
        scrapes,
        data.sample_count()
    );
    let remote = Plan::build(&data, args.batch, usize::MAX, remote_write::encode);
    let influx_max = args.influx_max_samples.unwrap_or(if q { 600_000 } else { 2_000_000 });
    let influx_scrapes = (influx_max / data.series_count().max(1) as u64).max(1) as usize;
    let influx_plan = Plan::build(&data, args.batch, influx_scrapes, influx::encode);
    eprintln!(
        "encoded: remote_write {} bodies, {:.1} MiB; influx {} samples, {:.1} MiB ({:.1} s)",
        remote.scrapes.iter().map(Vec::len).sum::<usize>(),
        remote.bytes as f64 / 1048576.0,
        influx_plan.samples,
        influx_plan.bytes as f64 / 1048576.0,
        began.elapsed().as_secs_f64()
    );
    let window = Window {
        start: data.config().start_ms / 1000,
        end: data.last_timestamp() / 1000 + 1,
    };
    let work = match &args.work_dir {
        Some(dir) => tempfile::Builder::new().prefix("strata-bench-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("strata-bench-").tempdir(),
    }
    .map_err(|e| format!("cannot create a work directory: {e}"))?;
    let opts = Options {
        clients: args.clients.clone(),
        reps: args.reps.max(1),
        query_reps: args.query_reps.unwrap_or(if q { 5 } else { 10 }).max(1),
        round_scrapes: args.round_scrapes,
        deadline: began + limit,
        work_dir: work.path().to_path_buf(),
        timeout: Duration::from_secs(120),
    };
    let inputs = Inputs {
        data,
        remote_write: remote,
        influx: influx_plan,
        window,
    };
    let load_before = procfs::load_average();
    let mut results = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let left = (targets.len() - i) as u32;
        results.push((target.kind, run::bench(target, &inputs, &opts, left)));
    }
    let report = summary::report(&results, inputs.data.series_count(), args.batch);
    let command: Vec<String> = std::env::args().collect();
    let text = format!(
        "Machine: {}\n\nCommand: `{}`\n\nData: {} series ({} instances × {}) × {} scrapes at 15 s = {} samples, seed {}; \
         {} reps per figure, {} timed runs per query. 1-minute load average {} at start, {} at end; \
         run took {:.0} s.\n{}",
        procfs::machine(),
        command.join(" "),
        inputs.data.series_count(),
        inputs.data.instances(),
        strata_bench::datagen::SERIES_PER_INSTANCE,
        scrapes,
        inputs.data.sample_count(),
        args.seed,
        opts.reps,
        opts.query_reps,
        load_before,
        procfs::load_average(),
        began.elapsed().as_secs_f64(),
        report.markdown()
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    if let Some(out) = &args.out {
        std::fs::write(out, &text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}
