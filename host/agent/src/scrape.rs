//! One scrape loop per target: fetch, parse, label, relabel, limit, add the automatic series and
//! staleness markers (FORMATS.md §6.4, §6.5), push to the sink.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_ingest::exposition::{Line, Parser};
use strata_ingest::{MetricBatch, SampleSink, Tenant};

use crate::discovery::{Auth, TargetSpec};
use crate::relabel::{self, Labels};

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Largest response body read from a target (bigger ones fail the scrape).
pub const MAX_SCRAPE_SIZE: u64 = 64 << 20;

/// Names of the series added to every scrape.
pub const AUTO_METRICS: [&str; 7] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "scrape_timeout_seconds",
    "scrape_response_size_bytes",
];

/// Health of a target, as Prometheus reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    #[default]
    Unknown,
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
}

impl Health {
    /// `unknown`, `up` or `down`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// What the targets page shows about a target.
#[derive(Clone, Debug, Default)]
pub struct TargetStatus {
    /// Health after the last scrape.
    pub health: Health,
    /// The error of the last scrape ("" if it succeeded).
    pub last_error: String,
    /// Start of the last scrape, ms since the epoch (0: never).
    pub last_scrape_ms: i64,
    /// How long the last scrape took.
    pub last_duration: Duration,
    /// Samples pushed by the last scrape after relabeling.
    pub last_samples: usize,
}

/// How a loop is told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The process is stopping: no markers (the series go on after a restart).
    Quiet,
    /// The target went away: mark all its series stale.
    Stale,
}

/// The result of one scrape before the automatic series.
struct Scraped {
    batch: MetricBatch,
    series: HashMap<u64, Box<[u8]>>,
    scraped: usize,
    post_relabel: usize,
    body_bytes: usize,
}

/// The state of one target's loop.
pub struct ScrapeLoop {
    spec: TargetSpec,
    sink: Arc<dyn SampleSink>,
    status: Arc<Mutex<TargetStatus>>,
    client: ureq::Agent,
    /// Why the TLS client of an `https` target could not be built (retried every scrape, so a
    /// fixed certificate file is picked up without a reload).
    tls_error: Option<String>,
    /// Series of the last successful scrape, for staleness.
    last_series: HashMap<u64, Box<[u8]>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ScrapeLoop {
    /// A loop for `spec` writing into `sink` and reporting into `status`.
    pub fn new(spec: TargetSpec, sink: Arc<dyn SampleSink>, status: Arc<Mutex<TargetStatus>>) -> Self {
        let (client, tls_error) = Self::client(&spec);
        Self {
            spec,
            sink,
            status,
            client,
            tls_error,
            last_series: HashMap::new(),
        }
    }

    /// The HTTP client of `spec`, with TLS for `https` URLs (or the reason TLS is unavailable).
    fn client(spec: &TargetSpec) -> (ureq::Agent, Option<String>) {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(spec.timeout))
            .max_redirects(10)
            .build();
        if !spec.url.starts_with("https://") {
            return (crate::tls::agent(config, None), None);
        }
        match crate::tls::RustlsConnector::new(&spec.tls.clone().unwrap_or_default()) {
            Ok(tls) => (crate::tls::agent(config, Some(tls)), None),
            Err(err) => (crate::tls::agent(config, None), Some(err.to_string())),
        }
    }

    /// Runs until told to stop. Scrapes of a job are spread over the interval by an offset
    /// derived from the target's key, so they do not all fire at once.
    pub fn run(mut self, stop: &Receiver<Stop>) {
        let interval_ms = i64::try_from(self.spec.interval.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut next = first_scrape_at(now_ms(), interval_ms, self.spec.key);
        loop {
            let wait = u64::try_from(next - now_ms()).unwrap_or(0);
            match stop.recv_timeout(Duration::from_millis(wait)) {
                Ok(how) => return self.finish(how),
                Err(RecvTimeoutError::Disconnected) => return self.finish(Stop::Quiet),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.scrape_once();
            next += interval_ms;
            let now = now_ms();
            if next <= now {
                // The scrape overran: skip the missed ticks, keep the phase.
                next += (now - next) / interval_ms * interval_ms + interval_ms;
            }
        }
    }

    fn finish(&mut self, how: Stop) {
        if how == Stop::Stale {
            let ts = now_ms();
            let mut batch = MetricBatch::new();
            self.add_stale(&mut batch, ts, None);
            for name in AUTO_METRICS {
                let labels = self.auto_labels(name);
                add(&mut batch, &labels, ts, stale_nan());
            }
            self.push(&batch);
        }
    }

    /// Scrapes once now and pushes the result. Public for tests and benchmarks.
    pub fn scrape_once(&mut self) {
        if self.tls_error.is_some() {
            (self.client, self.tls_error) = Self::client(&self.spec);
        }
        let start = Instant::now();
        let ts = now_ms();
        let result = self.fetch().and_then(|body| self.process(&body, ts));
        let duration = start.elapsed();
        let (mut batch, up, scraped, post, added, size, error) = match result {
            Ok(s) => {
                let added = s.series.keys().filter(|k| !self.last_series.contains_key(k)).count();
                let mut batch = s.batch;
                self.add_stale(&mut batch, ts, Some(&s.series));
                self.last_series = s.series;
                (
                    batch,
                    1.0,
                    s.scraped,
                    s.post_relabel,
                    added,
                    s.body_bytes,
                    String::new(),
                )
            }
            Err(err) => {
                let mut batch = MetricBatch::new();
                self.add_stale(&mut batch, ts, None);
                self.last_series.clear();
                (batch, 0.0, 0, 0, 0, 0, err)
            }
        };
        let auto = [
            up,
            duration.as_secs_f64(),
            scraped as f64,
            post as f64,
            added as f64,
            self.spec.timeout.as_secs_f64(),
            size as f64,
        ];
        for (name, value) in AUTO_METRICS.iter().zip(auto) {
            let labels = self.auto_labels(name);
            add(&mut batch, &labels, ts, value);
        }
        metrics::counter!("strata_agent_scrapes_total").increment(1);
        if up == 0.0 {
            metrics::counter!("strata_agent_scrapes_failed_total").increment(1);
            tracing::debug!(target = %self.spec.url, error = %error, "scrape failed");
        }
        metrics::counter!("strata_agent_scraped_samples_total").increment(post as u64);
        self.push(&batch);
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        *status = TargetStatus {
            health: if up == 1.0 { Health::Up } else { Health::Down },
            last_error: error,
            last_scrape_ms: ts,
            last_duration: duration,
            last_samples: post,
        };
    }

    fn push(&self, batch: &MetricBatch) {
        if batch.is_empty() {
            return;
        }
        if let Err(err) = self.sink.push(Tenant::default(), batch) {
            metrics::counter!("strata_agent_push_errors_total").increment(1);
            tracing::warn!(target = %self.spec.url, "cannot store scraped samples: {err}");
        }
    }

    fn auto_labels(&self, name: &str) -> Labels {
        let mut labels = self.spec.labels.clone();
        relabel::set(&mut labels, "__name__", name.to_owned());
        add_external(&mut labels, &self.spec.external_labels);
        labels
    }

    /// Markers for the last scrape's series that are not in `current` (all if `None`).
    fn add_stale(&self, batch: &mut MetricBatch, ts: i64, current: Option<&HashMap<u64, Box<[u8]>>>) {
        for (key, compact) in &self.last_series {
            if current.is_none_or(|c| !c.contains_key(key)) {
                let ok = decode_compact(compact)
                    .try_for_each(|(n, v)| batch.push_label(n, v))
                    .is_ok();
                if !ok {
                    batch.abandon_series();
                    continue;
                }
                batch.push_sample(ts, stale_nan());
                if batch.finish_series().is_err() {
                    batch.abandon_series();
                }
            }
        }
    }

    fn fetch(&self) -> Result<String, String> {
        if let Some(err) = &self.tls_error {
            return Err(err.clone());
        }
        let mut request = self
            .client
            .get(&self.spec.url)
            .header(
                "Accept",
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=1,*/*;q=0.1",
            )
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.spec.timeout.as_secs_f64()),
            )
            .header("User-Agent", concat!("strata-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(value) = authorization(&self.spec.auth)? {
            request = request.header("Authorization", value);
        }
        let mut response = request.call().map_err(|e| match e {
            ureq::Error::Timeout(_) => format!("scrape timed out after {:?}", self.spec.timeout),
            other => other.to_string(),
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("server returned HTTP status {status}"));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_SCRAPE_SIZE)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => format!("scrape timed out after {:?}", self.spec.timeout),
                other => format!("cannot read the body: {other}"),
            })?;
        String::from_utf8(body).map_err(|_| "the response is not valid UTF-8".to_owned())
    }

    fn process(&self, body: &str, ts: i64) -> Result<Scraped, String> {
        let spec = &self.spec;
        let mut batch = MetricBatch::new();
        let mut series = HashMap::new();
        let mut scraped = 0;
        let mut post = 0;
        for line in Parser::new(body) {
            let line = line.map_err(|e| format!("cannot parse the response: {e}"))?;
            let Line::Sample(sample) = line else { continue };
            scraped += 1;
            if spec.label_limit > 0 && sample.labels.len() + 1 > spec.label_limit {
                return Err(format!(
                    "label_limit exceeded: a series has {} labels, the limit is {}",
                    sample.labels.len() + 1,
                    spec.label_limit
                ));
            }
            let t = match sample.timestamp {
                Some(t) if spec.honor_timestamps => t,
                _ => ts,
            };
            // Fast path, borrowed labels and one allocation per series: no metric relabeling
            // and no label conflict that needs an exported_ name.
            if spec.metric_relabel.is_empty() {
                let mut labels: Vec<(&str, &str)> =
                    Vec::with_capacity(sample.labels.len() + spec.labels.len() + spec.external_labels.len() + 1);
                labels.push(("__name__", sample.name));
                labels.extend(sample.labels.iter().map(|(n, v)| (*n, v.as_ref())));
                normalize_ref(&mut labels);
                if merge_ref(&mut labels, &spec.labels, spec.honor_labels) {
                    for (name, value) in spec.external_labels.iter() {
                        if let Err(at) = labels.binary_search_by(|(n, _)| (*n).cmp(name.as_str())) {
                            labels.insert(at, (name, value));
                        }
                    }
                    post += 1;
                    add_ref(&mut batch, &labels, t, sample.value);
                    let compact = encode_compact(&labels);
                    series.insert(xxhash_rust::xxh64::xxh64(&compact, 0), compact);
                    continue;
                }
            }
            let mut labels: Labels = Vec::with_capacity(sample.labels.len() + spec.labels.len() + 1);
            labels.push(("__name__".to_owned(), sample.name.to_owned()));
            for (name, value) in &sample.labels {
                labels.push(((*name).to_owned(), value.to_string()));
            }
            relabel::normalize(&mut labels);
            merge_target_labels(&mut labels, &spec.labels, spec.honor_labels);
            if !relabel::apply_all(&spec.metric_relabel, &mut labels) {
                continue;
            }
            add_external(&mut labels, &spec.external_labels);
            if relabel::get(&labels, "__name__").is_none() {
                continue;
            }
            post += 1;
            add(&mut batch, &labels, t, sample.value);
            let borrowed: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let compact = encode_compact(&borrowed);
            series.insert(xxhash_rust::xxh64::xxh64(&compact, 0), compact);
        }
        if spec.sample_limit > 0 && post > spec.sample_limit {
            return Err(format!(
                "sample_limit exceeded: {post} samples after relabeling, the limit is {}",
                spec.sample_limit
            ));
        }
        Ok(Scraped {
            batch,
            series,
            scraped,
            post_relabel: post,
            body_bytes: body.len(),
        })
    }
}

/// When a loop started at `now` (ms) scrapes first: at the target's own phase within the
/// interval, `key % interval` after each multiple of the interval. Targets of one job have
/// different keys (hashes of URL and labels), so their scrapes spread evenly over the interval
/// instead of firing together; a target keeps its phase across reloads and restarts, so the
/// spacing of its samples stays even.
pub fn first_scrape_at(now: i64, interval_ms: i64, key: u64) -> i64 {
    let interval_ms = interval_ms.max(1);
    let offset = i64::try_from(key % interval_ms.unsigned_abs()).unwrap_or(0);
    let next = now - now.rem_euclid(interval_ms) + offset;
    if next < now { next + interval_ms } else { next }
}

/// Adds target labels to scraped `labels` (both sorted). With `honor_labels` the scraped
/// value wins; otherwise the scraped one is kept as `exported_<name>` and the target's is set.
pub fn merge_target_labels(labels: &mut Labels, target: &Labels, honor_labels: bool) {
    for (name, value) in target {
        match relabel::get(labels, name) {
            None => relabel::set(labels, name, value.clone()),
            Some(_) if honor_labels => {}
            Some(existing) if existing == value => {}
            Some(existing) => {
                let existing = existing.to_owned();
                let mut exported = format!("exported_{name}");
                while relabel::get(labels, &exported).is_some() {
                    exported.insert_str(0, "exported_");
                }
                relabel::set(labels, &exported, existing);
                relabel::set(labels, name, value.clone());
            }
        }
    }
}

fn add_external(labels: &mut Labels, external: &Labels) {
    for (name, value) in external {
        if relabel::get(labels, name).is_none() {
            relabel::set(labels, name, value.clone());
        }
    }
}

fn add(batch: &mut MetricBatch, labels: &Labels, ts: i64, value: f64) {
    let ok = labels.iter().try_for_each(|(n, v)| batch.push_label(n, v)).is_ok();
    if !ok {
        batch.abandon_series();
        return;
    }
    batch.push_sample(ts, value);
    if batch.finish_series().is_err() {
        batch.abandon_series();
    }
}

/// Sorts borrowed labels by name, keeps the last of a repeated name, drops empty values.
fn normalize_ref(labels: &mut Vec<(&str, &str)>) {
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let mut w = 0;
    for r in 0..labels.len() {
        if w > 0 && labels[w - 1].0 == labels[r].0 {
            labels[w - 1] = labels[r];
        } else {
            labels[w] = labels[r];
            w += 1;
        }
    }
    labels.truncate(w);
    labels.retain(|(_, v)| !v.is_empty());
}

/// [`merge_target_labels`] on borrowed labels; false when a conflict needs an `exported_`
/// name (the caller then takes the owned path).
fn merge_ref<'a>(labels: &mut Vec<(&'a str, &'a str)>, target: &'a Labels, honor_labels: bool) -> bool {
    for (name, value) in target {
        match labels.binary_search_by(|(n, _)| (*n).cmp(name.as_str())) {
            Err(at) => labels.insert(at, (name, value)),
            Ok(_) if honor_labels => {}
            Ok(i) if labels[i].1 == value => {}
            Ok(_) => return false,
        }
    }
    true
}

fn add_ref(batch: &mut MetricBatch, labels: &[(&str, &str)], ts: i64, value: f64) {
    let ok = labels.iter().try_for_each(|(n, v)| batch.push_label(n, v)).is_ok();
    if !ok {
        batch.abandon_series();
        return;
    }
    batch.push_sample(ts, value);
    if batch.finish_series().is_err() {
        batch.abandon_series();
    }
}

/// A label set in one allocation: `u32 LE len | name | u32 LE len | value`, repeated.
fn encode_compact(labels: &[(&str, &str)]) -> Box<[u8]> {
    let size: usize = labels.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (n, v) in labels {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.into_boxed_slice()
}

/// The labels of [`encode_compact`] output (stops at anything malformed).
fn decode_compact(mut bytes: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
        *bytes = &bytes[4 + len..];
        Some(text)
    }
    std::iter::from_fn(move || {
        let name = take(&mut bytes)?;
        let value = take(&mut bytes)?;
        Some((name, value))
    })
}

fn authorization(auth: &Auth) -> Result<Option<String>, String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    Ok(match auth {
        Auth::None => None,
        Auth::Basic {
            username,
            password,
            password_file,
        } => {
            let password = match (password, password_file) {
                (_, Some(file)) => read(file)?,
                (Some(p), None) => p.clone(),
                (None, None) => String::new(),
            };
            Some(format!("Basic {}", base64(format!("{username}:{password}").as_bytes())))
        }
        Auth::Header {
            kind,
            credentials,
            credentials_file,
        } => {
            let credentials = match (credentials, credentials_file) {
                (_, Some(file)) => read(file)?,
                (Some(c), None) => c.clone(),
                (None, None) => String::new(),
            };
            Some(format!("{kind} {credentials}"))
        }
    })
}

/// Standard base64 with padding (for basic auth).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
