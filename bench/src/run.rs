//! One target's whole benchmark: ingestion runs on fresh servers, then flush + merge, disk,
//! queries, memory and restarts on the last one, then influx line protocol.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::datagen::Dataset;
use crate::http::Http;
use crate::load::{Load, LoadResult};
use crate::plan::Plan;
use crate::procfs;
use crate::queries::{self, QueryResult, Window};
use crate::remote_write;
use crate::report::Fig;
use crate::stats;
use crate::target::{Kind, Server, Target};

/// How the run is shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// Client counts to measure ingestion with.
    pub clients: Vec<usize>,
    /// Repetitions of each ingestion figure (median taken).
    pub reps: usize,
    /// Timed runs of each query (after one warm-up).
    pub query_reps: usize,
    /// Scrape rounds between client barriers (see [`Load::round_scrapes`]).
    pub round_scrapes: usize,
    /// After this instant, remaining figures are skipped and marked so.
    pub deadline: Instant,
    /// Where temporary data directories go.
    pub work_dir: PathBuf,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What every target is fed and asked.
pub struct Inputs {
    /// The series and their values.
    pub data: Dataset,
    /// Remote-write bodies.
    pub remote_write: Plan,
    /// Influx line-protocol bodies (a prefix of the same scrapes).
    pub influx: Plan,
    /// The window queries look at.
    pub window: Window,
}

/// Everything measured on one target.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Per client count: samples/s, CPU s per 1M samples, peak RSS bytes (medians).
    pub ingest: Vec<(usize, Fig, Fig, Fig)>,
    /// Samples rejected over all ingestion runs.
    pub rejected: Fig,
    /// Start-up time with an empty data directory, seconds (median of the fresh starts).
    pub empty_start: Fig,
    /// Disk bytes per sample: data, index, whole directory.
    pub disk: (Fig, Fig, Fig),
    /// Samples of `node_load1` stored divided by sent (1.0 when nothing was lost).
    pub stored_share: Fig,
    /// Per suite query.
    pub queries: Vec<Result<QueryResult, String>>,
    /// Peak RSS after the query suite, bytes.
    pub rss_after_queries: Fig,
    /// Accepted samples on disk at restart, and restart time in seconds (median).
    pub startup: (u64, Fig),
    /// Influx: samples/s, CPU s per 1M samples.
    pub influx: (Fig, Fig),
    /// What to say under the table.
    pub notes: Vec<String>,
}

fn skipped() -> Fig {
    Err("skipped (time limit)".to_owned())
}

impl Figures {
    fn new(clients: &[usize], queries: usize) -> Figures {
        Figures {
            ingest: clients.iter().map(|c| (*c, skipped(), skipped(), skipped())).collect(),
            rejected: skipped(),
            empty_start: skipped(),
            disk: (skipped(), skipped(), skipped()),
            stored_share: skipped(),
            queries: vec![Err("skipped (time limit)".to_owned()); queries],
            rss_after_queries: skipped(),
            startup: (0, skipped()),
            influx: (skipped(), skipped()),
            notes: Vec::new(),
        }
    }

    /// Marks every data-dependent figure with `why` (the target could not ingest).
    fn no_data(&mut self, why: &str) {
        let na = || Err(why.to_owned());
        for row in &mut self.ingest {
            *row = (row.0, na(), na(), na());
        }
        self.rejected = na();
        self.disk = (na(), na(), na());
        self.stored_share = na();
        self.queries.iter_mut().for_each(|q| *q = Err(why.to_owned()));
        self.rss_after_queries = na();
        self.startup.1 = na();
    }
}

fn median_fig(values: &[f64], why: &str) -> Fig {
    stats::median(values).ok_or_else(|| why.to_owned())
}

/// A server kept after ingestion, with its directories and what it was fed.
struct Kept {
    server: Server,
    run_dir: PathBuf,
    data_dir: PathBuf,
    accepted: u64,
}

fn remove_run(dir: &Path) {
    // Only temporary directories this harness made; failure just leaves disk used.
    let _ = std::fs::remove_dir_all(dir);
}

fn progress(kind: Kind, what: &str) {
    eprintln!("[{kind}] {what} (load {})", procfs::load_average());
}

/// Benchmarks one target. `targets_left` (this one included) shares the remaining time: this
/// target gets its part of it, ingestion repetitions at most 55% of that part, so a slow peer
/// loses repetitions rather than its disk, query and restart figures. The first pass over the
/// client counts, one query suite and one restart always run unless the overall limit passed.
pub fn bench(target: &Target, inputs: &Inputs, opts: &Options, targets_left: u32) -> Figures {
    let suite = queries::suite();
    let mut f = Figures::new(&opts.clients, suite.len());
    let root = opts.work_dir.join(target.kind.to_string());
    let began = Instant::now();
    let budget = opts.deadline.saturating_duration_since(began) / targets_left.max(1);
    let ingest_deadline = began + budget.mul_f64(0.55);
    let own = Options {
        deadline: began + budget,
        ..opts.clone()
    };
    let late = || Instant::now() > opts.deadline;
    let http = Http::new(opts.timeout);
    let mut kept: Option<Kept> = None;
    let mut empty_starts = Vec::new();
    let mut rejected = 0u64;
    let mut write_missing: Option<String> = None;
    // Per client count: rates, CPU per million, peak RSS of each run.
    let mut runs: Vec<[Vec<f64>; 3]> = vec![Default::default(); opts.clients.len()];
    // Repetition-major, so a cut leaves every client count with as many runs as the others.
    'runs: for rep in 0..opts.reps {
        for (ci, &clients) in opts.clients.iter().enumerate() {
            if late() || (rep > 0 && Instant::now() > ingest_deadline) {
                break 'runs;
            }
            let [rates, cpus, hwms] = &mut runs[ci];
            // Only the last run's server is kept; an idle one beside the next run would take
            // its memory and background CPU from it.
            if let Some(old) = kept.take() {
                drop(old.server);
                remove_run(&old.run_dir);
            }
            let run_dir = root.join(format!("c{clients}-r{rep}"));
            let data_dir = run_dir.join("data");
            let server = match std::fs::create_dir_all(&run_dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    target
                        .start(&data_dir, &run_dir, &run_dir.join("server.log"))
                        .map_err(|e| e.to_string())
                }) {
                Ok(s) => s,
                Err(e) => {
                    f.notes.push(format!("{}: could not start: {e}", target.kind));
                    f.no_data("n/a (did not start)");
                    return f;
                }
            };
            empty_starts.push(server.ready_after.as_secs_f64());
            let url = format!("{}{}", server.base(), target.write_path());
            let probe = http.post(&url, &remote_write::HEADERS, &remote_write::empty());
            if let Ok(reply) = &probe
                && matches!(reply.status, 404 | 405 | 501)
            {
                f.notes.push(format!(
                    "{}: POST {} answers {}: no ingestion, so no data-dependent figures",
                    target.kind,
                    target.write_path(),
                    reply.status
                ));
                write_missing = Some("n/a (endpoint missing)".to_owned());
                drop(server);
                remove_run(&run_dir);
                break 'runs;
            }
            progress(target.kind, &format!("ingesting, {clients} clients, run {}", rep + 1));
            let load = Load {
                url,
                headers: &remote_write::HEADERS,
                clients,
                round_scrapes: opts.round_scrapes,
                pid: server.pid(),
                timeout: opts.timeout,
            };
            let r: LoadResult = load.run(&inputs.remote_write);
            rates.push(r.samples_per_second());
            cpus.push(r.cpu_per_million());
            if let Some(hwm) = procfs::status_bytes(server.pid(), "VmHWM") {
                hwms.push(hwm as f64);
            }
            rejected += r.samples_rejected;
            if let Some(first) = &r.first_rejection {
                f.notes.push(format!(
                    "{}: {clients} clients run {}: {} of {} requests rejected, {} unanswered; first: {first}",
                    target.kind,
                    rep + 1,
                    r.rejected_requests,
                    r.requests,
                    r.failed_requests
                ));
            }
            progress(
                target.kind,
                &format!(
                    "{:.0} samples/s, {:.2} CPU s/1M samples, {} rejected",
                    r.samples_per_second(),
                    r.cpu_per_million(),
                    r.samples_rejected
                ),
            );
            kept = Some(Kept {
                server,
                run_dir,
                data_dir,
                accepted: r.samples_sent - r.samples_rejected,
            });
        }
    }
    let none = "skipped (time limit)";
    for (ci, [rates, cpus, hwms]) in runs.iter().enumerate() {
        let clients = opts.clients[ci];
        if !rates.is_empty() && rates.len() < opts.reps {
            f.notes.push(format!(
                "{}: {clients} clients: median of {} runs, not {} (time budget)",
                target.kind,
                rates.len(),
                opts.reps
            ));
        }
        f.ingest[ci] = (
            clients,
            median_fig(rates, none),
            median_fig(cpus, none),
            median_fig(hwms, none),
        );
    }
    f.empty_start = median_fig(&empty_starts, "skipped (time limit)");
    if let Some(why) = write_missing {
        f.no_data(&why);
        probe_query_endpoint(target, opts, &mut f);
    } else {
        f.rejected = Ok(rejected as f64);
        if let Some(kept) = kept {
            after_ingest(target, inputs, &own, opts.deadline, kept, &mut f);
        }
    }
    influx(target, inputs, &own, opts.deadline, &root, &mut f);
    remove_run(&root);
    f
}

/// Without data, says whether the query API exists at all, so the n/a is precise.
fn probe_query_endpoint(target: &Target, opts: &Options, f: &mut Figures) {
    let dir = opts.work_dir.join(format!("{}-probe", target.kind));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    if let Ok(server) = target.start(&dir.join("data"), &dir, &dir.join("server.log")) {
        let http = Http::new(opts.timeout);
        let reply = http.get(&format!("{}/api/v1/query", server.base()), &[("query", "1")]);
        if let Ok(r) = reply
            && matches!(r.status, 404 | 405 | 501)
        {
            f.notes
                .push(format!("{}: GET /api/v1/query answers {}", target.kind, r.status));
            f.queries
                .iter_mut()
                .for_each(|q| *q = Err("n/a (endpoint missing)".to_owned()));
        }
    }
    remove_run(&dir);
}

/// Sum of `vm_active_merges` (VictoriaMetrics) in /metrics; 0 when the metric is absent.
fn active_merges(http: &Http, base: &str) -> f64 {
    let Ok(reply) = http.get(&format!("{base}/metrics"), &[]) else {
        return 0.0;
    };
    reply
        .body
        .lines()
        .filter(|l| l.starts_with("vm_active_merges"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Flushes and merges, then waits until merges are done and the directory stops changing.
fn flush_and_merge(target: &Target, server: &Server, data_dir: &Path, f: &mut Figures) {
    let http = Http::new(Duration::from_secs(600));
    let base = server.base();
    for path in ["/internal/force_flush", "/internal/force_merge"] {
        match http.get(&format!("{base}{path}"), &[]) {
            Ok(r) if r.ok() => {}
            Ok(r) => f.notes.push(format!(
                "{}: {path} answered {}: disk figures are without it",
                target.kind, r.status
            )),
            Err(e) => f.notes.push(format!("{}: {path} failed: {e}", target.kind)),
        }
    }
    // force_merge returns before the merge ends (VictoriaMetrics runs it in the background).
    let started = Instant::now();
    let (mut last, mut stable) = (procfs::disk_usage(data_dir), 0);
    while started.elapsed() < Duration::from_secs(300) && stable < 6 {
        std::thread::sleep(Duration::from_millis(500));
        let now = procfs::disk_usage(data_dir);
        stable = if now == last && active_merges(&http, base) == 0.0 {
            stable + 1
        } else {
            0
        };
        last = now;
    }
    // Say how many parts are left, so a merge that did not finish shows.
    if let Ok(reply) = http.get(&format!("{base}/metrics"), &[]) {
        let parts: Vec<String> = reply
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("vm_parts{type=\""))
            .filter_map(|l| {
                let (kind, count) = l.split_once("\"} ")?;
                Some(format!("{kind}={count}"))
            })
            .collect();
        if !parts.is_empty() {
            f.notes.push(format!(
                "{}: parts after flush + merge ({:.0} s): {}",
                target.kind,
                started.elapsed().as_secs_f64(),
                parts.join(", ")
            ));
        }
    }
}

/// Prometheus: a snapshot writes the head as a compacted block, the closest we can force to a
/// "merged" state (head compaction itself cannot be triggered over the API). Returns the
/// (chunks, index) bytes of every block in the snapshot.
fn prometheus_snapshot(server: &Server, data_dir: &Path, f: &mut Figures) -> Option<(u64, u64)> {
    let http = Http::new(Duration::from_secs(600));
    let reply = http
        .post(&format!("{}/api/v1/admin/tsdb/snapshot", server.base()), &[], b"")
        .ok()?;
    let json: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
    let Some(name) = json["data"]["name"].as_str() else {
        f.notes.push(format!("prometheus: snapshot failed: {}", reply.body));
        return None;
    };
    let dir = data_dir.join("snapshots").join(name);
    let (mut chunks, mut index) = (0, 0);
    for block in std::fs::read_dir(&dir).ok()?.flatten() {
        chunks += procfs::disk_usage(&block.path().join("chunks"));
        index += procfs::disk_usage(&block.path().join("index"));
    }
    remove_run(&data_dir.join("snapshots"));
    Some((chunks, index))
}

/// Disk, check, queries, memory and restarts on the last ingestion's server. `opts.deadline` is
/// this target's share; `hard` the overall limit.
fn after_ingest(target: &Target, inputs: &Inputs, opts: &Options, hard: Instant, mut kept: Kept, f: &mut Figures) {
    let late = || Instant::now() > hard;
    let http = Http::new(opts.timeout);
    let accepted = kept.accepted.max(1) as f64;
    let per_sample = |bytes: u64| Ok(bytes as f64 / accepted);
    progress(target.kind, "flush, merge, disk");
    match target.kind {
        Kind::Prometheus => {
            let whole = procfs::disk_usage(&kept.data_dir);
            f.disk.2 = per_sample(whole);
            if let Some((chunks, index)) = prometheus_snapshot(&kept.server, &kept.data_dir, f) {
                f.disk.0 = per_sample(chunks);
                f.disk.1 = per_sample(index);
            }
        }
        Kind::VictoriaMetrics | Kind::Strata | Kind::StrataWal => {
            flush_and_merge(target, &kept.server, &kept.data_dir, f);
            f.disk = (
                per_sample(procfs::disk_usage(&kept.data_dir.join("data"))),
                per_sample(procfs::disk_usage(&kept.data_dir.join("indexdb"))),
                per_sample(procfs::disk_usage(&kept.data_dir)),
            );
        }
    }
    // Did everything arrive? Count one metric's stored samples (data may take a moment to be
    // searchable after a flush).
    let data = &inputs.data;
    let expected = (data.instances() * data.config().scrapes) as f64;
    let span = inputs.window.end - inputs.window.start + 60;
    let expr = format!("sum(count_over_time(node_load1[{span}s]))");
    let started = Instant::now();
    f.stored_share = loop {
        match queries::scalar(&http, kept.server.base(), &expr, inputs.window.end) {
            Ok(Some(v)) if v >= expected || started.elapsed() > Duration::from_secs(15) => break Ok(v / expected),
            Ok(None) if started.elapsed() > Duration::from_secs(15) => break Ok(0.0),
            Err(e) => break Err(format!("error: {e}")),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    progress(target.kind, "query suite");
    for (slot, query) in f.queries.iter_mut().zip(queries::suite()) {
        if late() {
            break;
        }
        *slot = Ok(queries::measure(
            &http,
            kept.server.base(),
            &query,
            inputs.window,
            opts.query_reps,
        ));
    }
    f.rss_after_queries = procfs::status_bytes(kept.server.pid(), "VmHWM")
        .map(|b| b as f64)
        .ok_or_else(|| "n/a".to_owned());
    kept.server.stop();
    f.startup.0 = kept.accepted;
    let mut times = Vec::new();
    for rep in 0..opts.reps {
        if late() || (rep > 0 && Instant::now() > opts.deadline) {
            break;
        }
        progress(target.kind, &format!("restart {}", rep + 1));
        let log = kept.run_dir.join("server.log");
        let mut server = match target.start(&kept.data_dir, &kept.run_dir, &log) {
            Ok(s) => s,
            Err(e) => {
                f.notes.push(format!("{}: restart failed: {e}", target.kind));
                break;
            }
        };
        let ready = Instant::now();
        // Ready is not enough: the data must answer a query.
        while ready.elapsed() < Duration::from_secs(120) {
            if matches!(
                queries::scalar(&http, server.base(), "count(node_load1)", inputs.window.end),
                Ok(Some(_))
            ) {
                times.push(server.ready_after.as_secs_f64() + ready.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop();
    }
    f.startup.1 = median_fig(&times, "skipped (time limit)");
    remove_run(&kept.run_dir);
}

/// Influx line-protocol runs on fresh servers; `opts.deadline` is this target's share, `hard`
/// the overall limit.
fn influx(target: &Target, inputs: &Inputs, opts: &Options, hard: Instant, root: &Path, f: &mut Figures) {
    let path = match target.influx_path() {
        Ok(p) => p,
        Err(why) => {
            f.influx = (Err(why.to_owned()), Err(why.to_owned()));
            return;
        }
    };
    let clients = opts.clients.first().copied().unwrap_or(2);
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for rep in 0..opts.reps {
        if Instant::now() > hard || (rep > 0 && Instant::now() > opts.deadline) {
            break;
        }
        let run_dir = root.join(format!("influx-r{rep}"));
        if std::fs::create_dir_all(&run_dir).is_err() {
            break;
        }
        let server = match target.start(&run_dir.join("data"), &run_dir, &run_dir.join("server.log")) {
            Ok(s) => s,
            Err(e) => {
                f.notes
                    .push(format!("{}: influx run could not start: {e}", target.kind));
                break;
            }
        };
        progress(
            target.kind,
            &format!("influx line protocol, {clients} clients, run {}", rep + 1),
        );
        let headers = [("Content-Type", "text/plain; charset=utf-8")];
        let r = Load {
            url: format!("{}{path}", server.base()),
            headers: &headers,
            clients,
            round_scrapes: opts.round_scrapes,
            pid: server.pid(),
            timeout: opts.timeout,
        }
        .run(&inputs.influx);
        if let Some(first) = &r.first_rejection {
            f.notes.push(format!(
                "{}: influx run {}: {} of {} requests rejected; first: {first}",
                target.kind,
                rep + 1,
                r.rejected_requests,
                r.requests
            ));
        }
        rates.push(r.samples_per_second());
        cpus.push(r.cpu_per_million());
        drop(server);
        remove_run(&run_dir);
    }
    f.influx = (
        median_fig(&rates, "skipped (time limit)"),
        median_fig(&cpus, "skipped (time limit)"),
    );
}
