//! The end-to-end harness: starts the real `strata` binary on a free port with a temporary data
//! directory, waits until `/health` answers, offers a small HTTP client, and always stops the
//! process — also when a test panics — because [`Strata`] kills it on drop.
//!
//! The binary is `$STRATA_BIN` if set, else `target/<profile>/strata` beside the test
//! executable. `scripts/test` builds it before running the tests.

pub mod parts;

pub use parts::check_parts;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `strata` binary under test.
pub fn strata_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(path);
    }
    // Test executables live in target/<profile>/deps/; the binary in target/<profile>/.
    let exe = std::env::current_exe().expect("cannot find the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("unexpected test executable location");
    let bin = profile_dir.join("strata");
    assert!(
        bin.is_file(),
        "{} does not exist: build it first with `cargo build -p strata` (scripts/test does), or set STRATA_BIN",
        bin.display()
    );
    bin
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// Runs `strata` with `args` to completion (for commands such as `check-config`).
pub fn run_to_end(args: &[&str]) -> Finished {
    let output = Command::new(strata_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run strata");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A finished `strata` run.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// A running `strata` process; killed on drop if still running.
pub struct Strata {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    _temp: tempfile::TempDir,
    http: ureq::Agent,
}

/// What to start.
#[derive(Default)]
pub struct StrataBuilder {
    role: Option<String>,
    args: Vec<String>,
    data_dir: Option<PathBuf>,
}

impl StrataBuilder {
    /// The role to run (default: `single`).
    pub fn role(mut self, role: &str) -> Self {
        self.role = Some(role.to_owned());
        self
    }

    /// One more command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Use this data directory instead of a fresh temporary one. The default one is removed
    /// when the node is dropped; a test that restarts on the same data after a kill passes a
    /// directory it owns.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Starts the process and waits until `/health` answers 200.
    pub fn start(self) -> Strata {
        let strata = self.spawn();
        strata.wait_healthy();
        strata
    }

    /// Starts the process without waiting for it.
    pub fn spawn(self) -> Strata {
        let temp = tempfile::tempdir().expect("cannot create a temp dir");
        let data_dir = self.data_dir.unwrap_or_else(|| temp.path().join("data"));
        let log_path = temp.path().join("strata.log");
        let port = free_port();
        let log = std::fs::File::create(&log_path).expect("cannot create the log file");
        let mut command = Command::new(strata_bin());
        command
            .current_dir(temp.path())
            .arg(self.role.as_deref().unwrap_or("single"))
            .arg("--http-listen-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--storage-data-path")
            .arg(&data_dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot share the log file"))
            .stderr(log);
        let child = command.spawn().expect("cannot start strata");
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Strata {
            child: Some(child),
            port,
            data_dir,
            log_path,
            _temp: temp,
            http,
        }
    }
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Content-Type header, if any.
    pub content_type: Option<String>,
    /// The body as text.
    pub body: String,
    /// Every response header as (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The values of header `name` (lower case).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

impl Strata {
    /// A builder for a node.
    pub fn builder() -> StrataBuilder {
        StrataBuilder::default()
    }

    /// Starts a single node with defaults.
    pub fn single() -> Strata {
        Self::builder().start()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Reply {
        let response = self.http.get(&format!("{}{path}", self.base_url())).call();
        self.reply(response, path)
    }

    /// GET `path` with these headers (e.g. `("Authorization", "Bearer ...")`).
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(&format!("{}{path}", self.base_url()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.call();
        self.reply(response, path)
    }

    /// POST `body` to `path` with a content type.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.post_with(path, &[("Content-Type", content_type)], body)
    }

    /// POST `body` to `path` with these headers.
    pub fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.http.post(&format!("{}{path}", self.base_url()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send(body);
        self.reply(response, path)
    }

    /// Polls `path` until `done` accepts the reply, at most `timeout`; returns the last reply.
    pub fn poll(&self, path: &str, timeout: Duration, done: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.get(path);
            if done(&reply) || Instant::now() >= deadline {
                return reply;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn reply(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>, path: &str) -> Reply {
        let mut response =
            response.unwrap_or_else(|err| panic!("request to {path} failed: {err}\nlogs:\n{}", self.logs()));
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = String::new();
        response
            .body_mut()
            .as_reader()
            .read_to_string(&mut body)
            .unwrap_or_else(|err| panic!("cannot read the body from {path}: {err}"));
        Reply {
            status: response.status().as_u16(),
            content_type,
            body,
            headers,
        }
    }

    /// Waits until `/health` answers 200; panics with the logs if the process exits or the
    /// time runs out.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        loop {
            if let Ok(response) = probe.get(&format!("{}/health", self.base_url())).call()
                && response.status() == 200
            {
                return;
            }
            if let Some(child) = &self.child {
                // try_wait needs &mut; a clone of the pid check through /proc keeps &self.
                if !Path::new(&format!("/proc/{}", child.id())).exists() {
                    panic!("strata exited before it was healthy; logs:\n{}", self.logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "strata not healthy after {START_TIMEOUT:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (e.g. "TERM", "INT", "KILL") to the process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("process already reaped");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `timeout`; returns its status, or None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("cannot wait for strata") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait up to 30 s for a clean exit; returns the status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("strata did not exit within 30 s of SIGTERM; logs:\n{}", self.logs()))
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a whole file into a string, for assertions on files the node wrote.
pub fn read_to_string(path: &Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text
}

/// Another program the tests run beside Strata (Prometheus, vmagent, node_exporter); killed on
/// drop like [`Strata`], with its output kept in a log file for failure messages.
pub struct Peer {
    child: Child,
    log_path: PathBuf,
    _temp: tempfile::TempDir,
}

/// The path of a program the tests need; panics naming the script that installs it.
pub fn require_program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/install-peers (scripts/test does)"))
}

impl Peer {
    /// Starts `program` with `args`; `{dir}` in an argument is replaced by a fresh temp dir
    /// that lives as long as the peer.
    pub fn start(program: &str, args: &[String]) -> Peer {
        let temp = tempfile::tempdir().expect("cannot create a temp dir");
        let dir = temp.path().to_str().expect("temp dir is not UTF-8").to_owned();
        let log_path = temp.path().join("peer.log");
        let log = std::fs::File::create(&log_path).expect("cannot create the log file");
        let child = Command::new(require_program(program))
            .args(args.iter().map(|a| a.replace("{dir}", &dir)))
            .current_dir(temp.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot share the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
        Peer {
            child,
            log_path,
            _temp: temp,
        }
    }

    /// The peer's temp dir (where `{dir}` pointed).
    pub fn dir(&self) -> &Path {
        self._temp.path()
    }

    /// What the peer printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
