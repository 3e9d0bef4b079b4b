//! The servers under test: how to start each one on a free port with its own data directory,
//! when it is ready, where its endpoints are, how to force its data to disk, and how to stop it.
//!
//! Strata is one more target with the same interface. Where a target lacks an endpoint (Strata
//! before ingestion exists, Prometheus without influx), the harness finds out by asking and
//! reports "n/a" instead of a figure.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::Http;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// This project's `strata single`.
    Strata,
    /// `strata single --storage-wal`: the same server with the write-ahead log on, so one run
    /// shows what acknowledging only fsynced samples costs (target name `strata-wal`).
    StrataWal,
    /// Debian's `victoria-metrics` (single node).
    VictoriaMetrics,
    /// Debian's `prometheus` with the remote-write receiver on.
    Prometheus,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Strata => "strata",
            Kind::StrataWal => "strata-wal",
            Kind::VictoriaMetrics => "victoriametrics",
            Kind::Prometheus => "prometheus",
        })
    }
}

/// A target to benchmark: its kind and its binary.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which server.
    pub kind: Kind,
    /// The executable.
    pub bin: PathBuf,
}

/// Errors of starting and driving a server.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The process could not be spawned.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        /// The executable.
        bin: String,
        /// Why.
        source: std::io::Error,
    },
    /// It did not become ready in time (or exited).
    #[error("{kind} not ready after {secs} s; log tail: {log}")]
    NotReady {
        /// Which server.
        kind: Kind,
        /// How long we waited.
        secs: u64,
        /// The end of its log.
        log: String,
    },
    /// File system trouble with the work directory.
    #[error("work directory: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a server may take to become ready (Prometheus replays its WAL first).
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Target {
    /// The readiness path: answers 200 once the server accepts requests.
    pub fn ready_path(&self) -> &'static str {
        match self.kind {
            Kind::Strata | Kind::StrataWal | Kind::VictoriaMetrics => "/health",
            Kind::Prometheus => "/-/ready",
        }
    }

    /// The remote_write path.
    pub fn write_path(&self) -> &'static str {
        "/api/v1/write"
    }

    /// The influx line-protocol path, or why there is none.
    pub fn influx_path(&self) -> Result<&'static str, &'static str> {
        match self.kind {
            Kind::VictoriaMetrics => Ok("/write"),
            // Strata's influx plugin (plugins/influx), mounted at /write when its component is
            // built; `start` loads it with VictoriaMetrics' single-field naming.
            Kind::Strata | Kind::StrataWal if influx_component().exists() => Ok("/write"),
            Kind::Strata | Kind::StrataWal => {
                Err("not available (plugins/dist/strata_influx.wasm missing: run scripts/build-plugins)")
            }
            Kind::Prometheus => Err("n/a (no such endpoint)"),
        }
    }

    /// Starts the server on a free port with `data_dir`, logging into `log`, and waits for it.
    /// Strata gets an appliance.toml in `work_dir` loading the influx plugin when it is built.
    pub fn start(&self, data_dir: &Path, work_dir: &Path, log: &Path) -> Result<Server, TargetError> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            Kind::Strata | Kind::StrataWal => {
                let plugin = influx_component();
                if plugin.exists() {
                    // Same naming as VictoriaMetrics' -influxSkipSingleField below.
                    std::fs::write(
                        work_dir.join("appliance.toml"),
                        format!(
                            "[[plugins]]\nname = \"influx\"\npath = {:?}\nkind = \"ingest\"\nconfig = {{ skip_single_field = \"true\" }}\n",
                            plugin.display().to_string()
                        ),
                    )?;
                }
                cmd.arg("single")
                    .arg("--http-listen-addr")
                    .arg(&addr)
                    .arg("--storage-data-path")
                    .arg(data_dir)
                    .arg("--retention-period")
                    .arg("100y")
                    // The peers do not store their own metrics; neither do we here, so every
                    // store holds exactly the generated data.
                    .arg("--self-scrape-interval")
                    .arg("0");
                if self.kind == Kind::StrataWal {
                    cmd.arg("--storage-wal");
                }
            }
            Kind::VictoriaMetrics => {
                cmd.arg(format!("-storageDataPath={}", data_dir.display()))
                    .arg(format!("-httpListenAddr={addr}"))
                    .arg("-retentionPeriod=100y")
                    // Measure query evaluation, not the rollup result cache (Prometheus has none).
                    .arg("-search.disableCache")
                    .arg("-influxSkipSingleField")
                    .arg("-loggerLevel=WARN");
            }
            Kind::Prometheus => {
                let config = work_dir.join("prometheus.yml");
                // No scrape jobs: every sample arrives over remote_write.
                std::fs::write(&config, "global:\n  scrape_interval: 15s\nscrape_configs: []\n")?;
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                    .arg(format!("--web.listen-address={addr}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--web.enable-admin-api")
                    .arg("--storage.tsdb.retention.time=100y")
                    .arg("--log.level=warn");
            }
        }
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        cmd.current_dir(work_dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|source| TargetError::Spawn {
            bin: self.bin.display().to_string(),
            source,
        })?;
        let mut server = Server {
            kind: self.kind,
            child: Some(child),
            base: format!("http://{addr}"),
            log: log.to_path_buf(),
            ready_after: Duration::ZERO,
        };
        server.wait_ready(self.ready_path(), started)?;
        Ok(server)
    }
}

/// The influx plugin component `scripts/build-plugins` builds.
fn influx_component() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/strata_influx.wasm")
}

/// A running server; killed on drop if still running.
pub struct Server {
    /// Which server.
    pub kind: Kind,
    child: Option<Child>,
    base: String,
    log: PathBuf,
    /// Time from spawn until the readiness path answered 200.
    pub ready_after: Duration,
}

impl Server {
    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    fn wait_ready(&mut self, path: &str, started: Instant) -> Result<(), TargetError> {
        let http = Http::new(Duration::from_secs(2));
        let url = format!("{}{path}", self.base);
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                break;
            }
            if http.get(&url, &[]).is_ok_and(|r| r.status == 200) {
                self.ready_after = started.elapsed();
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(TargetError::NotReady {
            kind: self.kind,
            secs: started.elapsed().as_secs(),
            log: self.log_tail(),
        })
    }

    /// Asks the server to stop (SIGTERM, so it flushes like in production) and waits up to a
    /// minute before killing it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
