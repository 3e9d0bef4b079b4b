//! [`ScrapeManager`]: runs one scrape loop per discovered target, reloads the configuration
//! on demand or when prometheus.yml or a file_sd file changes, and reports target health.
//!
//! On reload, a target whose scrape settings and labels are unchanged keeps its loop (no gap,
//! no duplicate scrape); a target that went away is stopped with staleness markers; new
//! targets start. An invalid new configuration is refused and the running one stays.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use strata_ingest::SampleSink;

use crate::config::{ConfigError, LoadedConfig, PromConfig, ScrapeConfig, StaticConfig, TlsConfig, load_file};
use crate::discovery::{DroppedTarget, TargetSpec, discover};
use crate::duration::PromDuration;
use crate::scrape::{ScrapeLoop, Stop, TargetStatus};

/// How the manager finds and watches its configuration.
#[derive(Clone, Debug)]
pub struct ScrapeOptions {
    /// The Prometheus scrape configuration file (None: only the self-scrape job, if any).
    pub config_file: Option<PathBuf>,
    /// Refuse unknown keys (true) or log and skip them.
    pub strict_parse: bool,
    /// How often prometheus.yml and file_sd files are checked for changes (zero: never).
    pub check_interval: Duration,
    /// Scrape the process's own `/metrics` as job `strata`.
    pub self_scrape: Option<SelfScrape>,
}

/// The self-scrape job: `http://<address>/metrics` with `job="strata"` every `interval`.
#[derive(Clone, Debug, Default)]
pub struct SelfScrape {
    /// `host:port` of the node's own HTTP server.
    pub address: String,
    /// Scrape interval (the timeout is the smaller of 10s and the interval).
    pub interval: Duration,
    /// The node serves HTTPS: scrape with `https` and without verifying the certificate (it is
    /// our own listener, and its certificate need not name the address it is bound to).
    pub https: bool,
    /// Sent as `Authorization: Bearer` when `/metrics` needs a token.
    pub bearer_token: Option<String>,
}

/// The job name of the self-scrape.
pub const SELF_JOB: &str = "strata";

/// One active target as the targets page shows it.
#[derive(Clone, Debug)]
pub struct ActiveTarget {
    /// Everything about how it is scraped.
    pub spec: TargetSpec,
    /// Its last scrape.
    pub status: TargetStatus,
}

/// Active and dropped targets.
#[derive(Clone, Debug, Default)]
pub struct TargetsSnapshot {
    /// Scraped targets.
    pub active: Vec<ActiveTarget>,
    /// Targets dropped by relabeling.
    pub dropped: Vec<DroppedTarget>,
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Targets after the reload.
    pub targets: usize,
    /// Loops started.
    pub started: usize,
    /// Loops stopped.
    pub stopped: usize,
    /// Non-fatal warnings (ignored keys, unreadable file_sd files).
    pub warnings: Vec<String>,
}

struct Running {
    spec: TargetSpec,
    status: Arc<Mutex<TargetStatus>>,
    stop: Sender<Stop>,
    thread: JoinHandle<()>,
}

type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

#[derive(Default)]
struct State {
    running: Vec<Running>,
    dropped: Vec<DroppedTarget>,
    watched: Fingerprint,
}

struct Inner {
    options: ScrapeOptions,
    sink: Arc<dyn SampleSink>,
    state: Mutex<State>,
    /// Serialises reloads (the state lock is released while loops are joined).
    reload_lock: Mutex<()>,
}

/// Scrapes the targets of a prometheus.yml into a sink. Cheap to share behind an `Arc`.
pub struct ScrapeManager {
    inner: Arc<Inner>,
    watcher: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fingerprint(files: impl IntoIterator<Item = PathBuf>) -> Fingerprint {
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (path, meta)
        })
        .collect()
}

impl ScrapeManager {
    /// Loads the configuration, starts a loop per target and, if `check_interval` is set, a
    /// watcher. Fails if the configuration is invalid.
    pub fn start(options: ScrapeOptions, sink: Arc<dyn SampleSink>) -> Result<Self, ConfigError> {
        let check_interval = options.check_interval;
        let inner = Arc::new(Inner {
            options,
            sink,
            state: Mutex::new(State::default()),
            reload_lock: Mutex::new(()),
        });
        let summary = inner.reload()?;
        tracing::info!(targets = summary.targets, "scraping started");
        let manager = Self {
            inner: Arc::clone(&inner),
            watcher: Mutex::new(None),
        };
        if !check_interval.is_zero() {
            let (tx, rx) = std::sync::mpsc::channel();
            let watched = Arc::clone(&inner);
            let thread = std::thread::Builder::new()
                .name("scrape-config-watch".into())
                .spawn(move || watch(&watched, &rx, check_interval))
                .map_err(|source| ConfigError::Io {
                    path: inner.options.config_file.clone().unwrap_or_default(),
                    source,
                })?;
            *lock(&manager.watcher) = Some((tx, thread));
        }
        Ok(manager)
    }

    /// Re-reads the configuration and file_sd files now. On error nothing changes.
    pub fn reload(&self) -> Result<ReloadSummary, ConfigError> {
        self.inner.reload()
    }

    /// Active targets with their last scrape, and dropped ones.
    pub fn targets(&self) -> TargetsSnapshot {
        let state = lock(&self.inner.state);
        TargetsSnapshot {
            active: state
                .running
                .iter()
                .map(|r| ActiveTarget {
                    spec: r.spec.clone(),
                    status: lock(&r.status).clone(),
                })
                .collect(),
            dropped: state.dropped.clone(),
        }
    }

    /// Stops every loop (without staleness markers: the series go on after a restart) and the
    /// watcher, and waits for them.
    pub fn shutdown(&self) {
        if let Some((tx, thread)) = lock(&self.watcher).take() {
            drop(tx);
            let _ = thread.join();
        }
        let running = std::mem::take(&mut lock(&self.inner.state).running);
        for r in &running {
            let _ = r.stop.send(Stop::Quiet);
        }
        for r in running {
            let _ = r.thread.join();
        }
    }
}

impl Drop for ScrapeManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn watch(inner: &Inner, stop: &Receiver<()>, every: Duration) {
    loop {
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let watched = lock(&inner.state).watched.clone();
        let now = fingerprint(watched.iter().map(|(p, _)| p.clone()));
        if now != watched {
            tracing::info!("scrape configuration or file_sd files changed; reloading");
            if let Err(err) = inner.reload() {
                tracing::error!("keeping the previous scrape configuration: {err}");
                // Do not retry the same broken files every tick.
                lock(&inner.state).watched = now;
            }
        }
    }
}

impl Inner {
    /// The configuration file (or an empty one) plus the self-scrape job.
    fn load(&self) -> Result<LoadedConfig, ConfigError> {
        let mut loaded = match &self.options.config_file {
            Some(path) => load_file(path, self.options.strict_parse)?,
            None => LoadedConfig {
                path: PathBuf::from("(no scrape configuration file)"),
                config: PromConfig::default(),
                relabel: Vec::new(),
                metric_relabel: Vec::new(),
                warnings: Vec::new(),
            },
        };
        if let Some(own) = &self.options.self_scrape {
            if loaded.config.scrape_configs.iter().any(|j| j.job_name == SELF_JOB) {
                loaded.warnings.push(format!(
                    "job {SELF_JOB:?} is defined in the file; the built-in self-scrape is skipped"
                ));
            } else {
                loaded.config.scrape_configs.push(ScrapeConfig {
                    job_name: SELF_JOB.to_owned(),
                    scrape_interval: Some(PromDuration(own.interval)),
                    scrape_timeout: Some(PromDuration(own.interval.min(Duration::from_secs(10)))),
                    metrics_path: "/metrics".to_owned(),
                    honor_labels: false,
                    honor_timestamps: true,
                    scheme: if own.https { "https" } else { "http" }.to_owned(),
                    params: Default::default(),
                    basic_auth: None,
                    bearer_token: own.bearer_token.clone(),
                    bearer_token_file: None,
                    authorization: None,
                    tls_config: own.https.then(|| TlsConfig {
                        insecure_skip_verify: true,
                        ..TlsConfig::default()
                    }),
                    static_configs: vec![StaticConfig {
                        targets: vec![own.address.clone()],
                        labels: Default::default(),
                    }],
                    file_sd_configs: Vec::new(),
                    relabel_configs: Vec::new(),
                    metric_relabel_configs: Vec::new(),
                    sample_limit: 0,
                    label_limit: 0,
                });
                loaded.relabel.push(Vec::new());
                loaded.metric_relabel.push(Vec::new());
            }
        }
        Ok(loaded)
    }

    fn reload(&self) -> Result<ReloadSummary, ConfigError> {
        let _serial = lock(&self.reload_lock);
        let loaded = match self.load() {
            Ok(loaded) => loaded,
            Err(err) => {
                metrics::counter!("strata_agent_config_reloads_errors_total").increment(1);
                return Err(err);
            }
        };
        let discovered = discover(&loaded);
        let mut warnings = loaded.warnings.clone();
        warnings.extend(discovered.warnings.iter().cloned());
        for w in &warnings {
            tracing::warn!("{}: {w}", loaded.path.display());
        }
        let mut watched_files: Vec<PathBuf> = self.options.config_file.iter().cloned().collect();
        watched_files.extend(discovered.files.iter().cloned());
        // Fingerprint before acting, so a change during the reload triggers another one.
        let watched = fingerprint(watched_files);

        let mut state = lock(&self.state);
        let mut old: HashMap<u64, Running> = std::mem::take(&mut state.running)
            .into_iter()
            .map(|r| (r.spec.key, r))
            .collect();
        let mut started = 0;
        for spec in discovered.targets {
            if let Some(running) = old.remove(&spec.key) {
                state.running.push(running);
                continue;
            }
            let status = Arc::new(Mutex::new(TargetStatus::default()));
            let (tx, rx) = std::sync::mpsc::channel();
            let scrape = ScrapeLoop::new(spec.clone(), Arc::clone(&self.sink), Arc::clone(&status));
            let name = format!("scrape-{}", spec.job);
            let thread = match std::thread::Builder::new().name(name).spawn(move || scrape.run(&rx)) {
                Ok(t) => t,
                Err(err) => {
                    tracing::error!(target = %spec.url, "cannot start a scrape thread: {err}");
                    continue;
                }
            };
            started += 1;
            state.running.push(Running {
                spec,
                status,
                stop: tx,
                thread,
            });
        }
        state.dropped = discovered.dropped;
        state.watched = watched;
        let targets = state.running.len();
        drop(state);
        let stopped = old.len();
        for r in old.values() {
            let _ = r.stop.send(Stop::Stale);
        }
        for (_, r) in old {
            let _ = r.thread.join();
        }
        metrics::counter!("strata_agent_config_reloads_total").increment(1);
        metrics::gauge!("strata_agent_targets").set(targets as f64);
        Ok(ReloadSummary {
            targets,
            started,
            stopped,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
