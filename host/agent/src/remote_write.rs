//! The remote-write client: a [`SampleSink`] that cuts batches into snappy-compressed
//! remote-write 1.0 blocks, puts each into a persistent queue per URL, and one sender thread
//! per URL that delivers them in order with retries (FORMATS.md §6.1, §6.2):
//! 2xx done; 400 and 409 dropped (counted, logged); anything else, and network errors, retried
//! forever with exponential backoff (1s doubling to 1m by default), `Retry-After` overriding
//! the next delay. On shutdown the block being retried stays queued and is sent after restart.
//!
//! Remote-write 2.0: the queue always holds 1.0 blocks (so a queue written by one version of
//! the settings is readable by any other, and a fallback needs no second copy); a sender that
//! speaks 2.0 converts each block when it sends it. With [`Protocol::Auto`] a URL starts with
//! 2.0 and switches to 1.0 for the rest of the process when the receiver answers 415, or
//! answers 2xx without the `X-Prometheus-Remote-Write-Samples-Written` header every 2.0
//! receiver must send (a 1.0 receiver silently ignores a 2.0 body, so the block is sent again).

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use strata_ingest::prompb::{self, Label, Sample, TimeSeries, WriteRequest};
use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError, Tenant};

use crate::queue::{DEFAULT_CHUNK_SIZE, FileQueue, Peeked, QueueError, QueueOptions};

/// Which remote-write version to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// 2.0 first, 1.0 for a URL whose receiver does not take 2.0.
    #[default]
    Auto,
    /// Remote-write 1.0 only.
    V1,
    /// Remote-write 2.0 only (a receiver answering 415 has its blocks dropped and counted).
    V2,
}

/// The version a URL's sender currently uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl Version {
    const fn name(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
        }
    }
}

/// Options of the remote-write client.
#[derive(Clone, Debug)]
pub struct RemoteWriteOptions {
    /// Receivers, e.g. `http://127.0.0.1:8428/api/v1/write`.
    pub urls: Vec<String>,
    /// Where the queues live: `<path>/persistent-queue/<n>_<hash>/`.
    pub queue_path: PathBuf,
    /// Disk budget per URL; oldest blocks dropped beyond it (0: unlimited).
    pub max_disk_bytes_per_url: u64,
    /// Chunk file size.
    pub chunk_size: u64,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Timeout of one HTTP request.
    pub send_timeout: Duration,
    /// Samples per block at most.
    pub max_samples_per_block: usize,
    /// Remote-write version (the same for every URL; `Auto` negotiates per URL).
    pub protocol: Protocol,
}

impl Default for RemoteWriteOptions {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            queue_path: PathBuf::from("strata-agent-data"),
            max_disk_bytes_per_url: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_samples_per_block: 10_000,
            protocol: Protocol::Auto,
        }
    }
}

/// Delivery counters of one URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlStats {
    /// The URL with any password hidden.
    pub url: String,
    /// Blocks delivered.
    pub blocks_sent: u64,
    /// Blocks the receiver refused for good (400, 409).
    pub blocks_rejected: u64,
    /// Failed attempts that will be retried.
    pub retries: u64,
    /// Bytes waiting in the queue.
    pub pending_bytes: u64,
    /// Blocks dropped because the queue was full.
    pub dropped_full: u64,
    /// The remote-write version in use now: `1.0` or `2.0`.
    pub protocol: &'static str,
}

struct Url {
    queue: Arc<FileQueue>,
    stats: Arc<Mutex<UrlStats>>,
}

/// The remote-write client. Dropping it without [`RemoteWriter::shutdown`] also stops the
/// senders, but does not wait for them.
pub struct RemoteWriter {
    urls: Vec<Url>,
    stop: Vec<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    max_samples: usize,
}

/// The queue directory name of the `index`th URL: `<index+1>_<xxh64 of the URL without query
/// and fragment, %016X>`, as vmagent names them.
pub fn queue_dir_name(index: usize, url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    format!("{}_{:016X}", index + 1, xxhash_rust::xxh64::xxh64(base.as_bytes(), 0))
}

/// `url` with the password of `user:password@` hidden.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:xxx{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The client of one URL: with TLS (system roots) for `https`.
fn http_client(url: &str, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build();
    if !url.starts_with("https://") {
        return crate::tls::agent(config, None);
    }
    match crate::tls::RustlsConnector::new(&crate::tls::TlsSettings::default()) {
        Ok(tls) => crate::tls::agent(config, Some(tls)),
        Err(err) => {
            // Sends fail (and are retried, so nothing is lost) until this is fixed and the agent restarted.
            tracing::error!(url = %redact(url), "no TLS client for this URL: {err}");
            crate::tls::agent(config, None)
        }
    }
}

impl RemoteWriter {
    /// Opens a queue per URL and starts its sender.
    pub fn start(options: RemoteWriteOptions) -> Result<Self, QueueError> {
        let mut urls = Vec::new();
        let mut stop = Vec::new();
        let mut threads = Vec::new();
        for (i, url) in options.urls.iter().enumerate() {
            let queue = Arc::new(FileQueue::open(QueueOptions {
                dir: options.queue_path.join("persistent-queue").join(queue_dir_name(i, url)),
                name: redact(url),
                chunk_size: options.chunk_size,
                max_disk_bytes: options.max_disk_bytes_per_url,
            })?);
            let version = match options.protocol {
                Protocol::V1 => Version::V1,
                Protocol::Auto | Protocol::V2 => Version::V2,
            };
            let stats = Arc::new(Mutex::new(UrlStats {
                url: redact(url),
                protocol: version.name(),
                ..UrlStats::default()
            }));
            let (tx, rx) = std::sync::mpsc::channel();
            let sender = UrlSender {
                url: url.clone(),
                queue: Arc::clone(&queue),
                stats: Arc::clone(&stats),
                options: options.clone(),
                version: Cell::new(version),
                client: http_client(url, options.send_timeout),
            };
            let thread = std::thread::Builder::new()
                .name(format!("rw-sender-{}", i + 1))
                .spawn(move || sender.run(&rx))
                .map_err(|source| QueueError::Io {
                    dir: options.queue_path.clone(),
                    what: "start the sender thread".into(),
                    source,
                })?;
            urls.push(Url { queue, stats });
            stop.push(tx);
            threads.push(thread);
        }
        Ok(Self {
            urls,
            stop,
            threads,
            max_samples: options.max_samples_per_block.max(1),
        })
    }

    /// Counters per URL.
    pub fn stats(&self) -> Vec<UrlStats> {
        self.urls
            .iter()
            .map(|u| {
                let mut s = u.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
                s.pending_bytes = u.queue.pending_bytes();
                s.dropped_full = u.queue.dropped_blocks();
                s
            })
            .collect()
    }

    /// Stops the senders (a block in flight is finished or stays queued) and flushes the queues.
    pub fn shutdown(mut self) {
        self.stop.clear();
        for url in &self.urls {
            url.queue.close();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        for url in &self.urls {
            if let Err(err) = url.queue.flush() {
                tracing::warn!("{err}");
            }
        }
    }

    /// Encodes `batch` as snappy remote-write 1.0 bodies of at most `max_samples` samples.
    pub fn encode_blocks(batch: &MetricBatch, max_samples: usize) -> Vec<Vec<u8>> {
        let mut blocks = Vec::new();
        let mut request = WriteRequest::default();
        let mut samples = 0;
        for series in batch.iter() {
            let labels = series
                .labels()
                .map(|(name, value)| Label {
                    name: name.to_owned(),
                    value: value.to_owned(),
                })
                .collect();
            let points: Vec<Sample> = series
                .timestamps()
                .iter()
                .zip(series.values())
                .map(|(&timestamp, &value)| Sample { value, timestamp })
                .collect();
            samples += points.len();
            request.timeseries.push(TimeSeries {
                labels,
                samples: points,
                ..TimeSeries::default()
            });
            if samples >= max_samples {
                blocks.push(prompb::encode_snappy(&request));
                request.timeseries.clear();
                samples = 0;
            }
        }
        if !request.timeseries.is_empty() {
            blocks.push(prompb::encode_snappy(&request));
        }
        blocks
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        self.stop.clear();
        for url in &self.urls {
            url.queue.close();
        }
    }
}

impl SampleSink for RemoteWriter {
    /// Queues the batch for every URL. The tenant is not sent: remote-write URLs carry it.
    fn push(&self, _tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        let blocks = Self::encode_blocks(batch, self.max_samples);
        for url in &self.urls {
            for block in &blocks {
                url.queue
                    .push(block)
                    .map_err(|e| SinkError::Unavailable(e.to_string()))?;
            }
            metrics::gauge!("strata_agent_remote_write_pending_bytes", "url" => url.stats.lock().unwrap_or_else(|p| p.into_inner()).url.clone())
                .set(url.queue.pending_bytes() as f64);
        }
        Ok(PushOutcome {
            samples_written: batch.sample_count() as u64,
        })
    }
}

/// What became of a block.
enum Delivery {
    Sent,
    Rejected,
    Stopped,
}

struct UrlSender {
    url: String,
    queue: Arc<FileQueue>,
    stats: Arc<Mutex<UrlStats>>,
    options: RemoteWriteOptions,
    client: ureq::Agent,
    /// The version in use; only the sender thread touches it.
    version: Cell<Version>,
}

/// A block as one version sends it.
struct Body<'a> {
    version: Version,
    /// 1.0 is the queued block itself, 2.0 a converted copy.
    bytes: std::borrow::Cow<'a, [u8]>,
    samples: u64,
}

/// Converts a queued (snappy remote-write 1.0) block into a snappy remote-write 2.0 body.
pub fn v1_block_to_v2(block: &[u8]) -> Result<Vec<u8>, String> {
    convert_to_v2(block).map(|(bytes, _)| bytes)
}

/// [`v1_block_to_v2`] and the block's sample count.
fn convert_to_v2(block: &[u8]) -> Result<(Vec<u8>, u64), String> {
    let raw = strata_ingest::decompress::snappy(block, 1 << 30).map_err(|e| e.message)?;
    let mut batch = MetricBatch::new();
    strata_ingest::remote_write::decode_v1(&raw, &mut batch).map_err(|e| e.message)?;
    Ok((encode_v2(&batch), batch.sample_count() as u64))
}

/// Encodes `batch` as one snappy remote-write 2.0 request (labels as a symbol table).
pub fn encode_v2(batch: &MetricBatch) -> Vec<u8> {
    let mut symbols: Vec<String> = vec![String::new()];
    // Ten lookups per series: the hasher matters (see SeededXxh3).
    let mut index: std::collections::HashMap<&str, u32, SeededXxh3> =
        std::collections::HashMap::with_capacity_and_hasher(1024, SeededXxh3::new());
    index.insert("", 0);
    let mut timeseries = Vec::with_capacity(batch.series_count());
    for series in batch.iter() {
        let mut refs = Vec::with_capacity(series.labels().len() * 2);
        for (name, value) in series.labels() {
            for text in [name, value] {
                let next = u32::try_from(symbols.len()).unwrap_or(u32::MAX);
                let id = *index.entry(text).or_insert_with(|| {
                    symbols.push(text.to_owned());
                    next
                });
                refs.push(id);
            }
        }
        let samples = series
            .timestamps()
            .iter()
            .zip(series.values())
            .map(|(&timestamp, &value)| prompb::v2::Sample { value, timestamp })
            .collect();
        timeseries.push(prompb::v2::TimeSeries {
            labels_refs: refs,
            samples,
            ..prompb::v2::TimeSeries::default()
        });
    }
    prompb::v2::encode_snappy(&prompb::v2::Request { symbols, timeseries })
}

/// The symbol table's hasher: xxh3 with a per-process random seed. Cheaper than SipHash on
/// short label strings, and the seed keeps a target that exposes crafted label values from
/// forcing collisions (a slow conversion would stall the URL's queue).
#[derive(Clone, Copy)]
struct SeededXxh3(u64);

impl SeededXxh3 {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Self(*SEED.get_or_init(|| {
            // std's RandomState is seeded from the OS; one draw of it is our seed.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x5eed);
            h.finish()
        }))
    }
}

struct Xxh3Hasher(u64);

impl std::hash::BuildHasher for SeededXxh3 {
    type Hasher = Xxh3Hasher;

    fn build_hasher(&self) -> Xxh3Hasher {
        Xxh3Hasher(self.0)
    }
}

impl std::hash::Hasher for Xxh3Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl UrlSender {
    fn run(self, stop: &Receiver<()>) {
        let version = match self.version.get() {
            Version::V1 => 1.0,
            Version::V2 => 2.0,
        };
        metrics::gauge!("strata_agent_remote_write_protocol_version", "url" => redact(&self.url)).set(version);
        loop {
            if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
                return;
            }
            let peeked = match self.queue.peek(Duration::from_millis(500)) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(err) => {
                    tracing::error!("remote write queue: {err}");
                    if wait_or_stop(stop, self.options.retry_max) {
                        return;
                    }
                    continue;
                }
            };
            match self.deliver(&peeked, stop) {
                Delivery::Stopped => return,
                Delivery::Sent | Delivery::Rejected => {
                    if let Err(err) = self.queue.ack(&peeked) {
                        tracing::error!("remote write queue: {err}");
                    }
                }
            }
        }
    }

    fn stat(&self, f: impl FnOnce(&mut UrlStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The block as the current version sends it (`None`: it cannot be converted).
    fn body<'a>(&self, peeked: &'a Peeked) -> Option<Body<'a>> {
        let version = self.version.get();
        // The sample count only matters for judging a 2.0 answer.
        let (bytes, samples) = match version {
            Version::V1 => (std::borrow::Cow::Borrowed(&peeked.block[..]), 0),
            Version::V2 => match convert_to_v2(&peeked.block) {
                Ok((bytes, samples)) => (std::borrow::Cow::Owned(bytes), samples),
                Err(err) => {
                    tracing::error!(url = %redact(&self.url), "a queued block cannot be converted to remote-write 2.0; dropping it: {err}");
                    return None;
                }
            },
        };
        Some(Body {
            version,
            bytes,
            samples,
        })
    }

    /// Switches an `Auto` URL to 1.0 for good (true), or says it cannot (false).
    fn downgrade(&self, why: &str) -> bool {
        if self.options.protocol != Protocol::Auto || self.version.get() == Version::V1 {
            return false;
        }
        tracing::warn!(url = %redact(&self.url), "the receiver does not take remote-write 2.0 ({why}); sending 1.0 from now on");
        self.version.set(Version::V1);
        self.stat(|s| s.protocol = Version::V1.name());
        metrics::gauge!("strata_agent_remote_write_protocol_version", "url" => redact(&self.url)).set(1.0);
        metrics::counter!("strata_agent_remote_write_protocol_fallbacks_total").increment(1);
        true
    }

    fn deliver(&self, peeked: &Peeked, stop: &Receiver<()>) -> Delivery {
        let mut backoff = self.options.retry_min;
        let shown = redact(&self.url);
        let Some(mut body) = self.body(peeked) else {
            self.stat(|s| s.blocks_rejected += 1);
            return Delivery::Rejected;
        };
        loop {
            if body.version != self.version.get() {
                match self.body(peeked) {
                    Some(b) => body = b,
                    None => {
                        self.stat(|s| s.blocks_rejected += 1);
                        return Delivery::Rejected;
                    }
                }
            }
            let request = self
                .client
                .post(&self.url)
                .header("Content-Encoding", "snappy")
                .header("User-Agent", concat!("strata-agent/", env!("CARGO_PKG_VERSION")));
            let request = match body.version {
                Version::V1 => request
                    .header("Content-Type", prompb::CONTENT_TYPE_V1)
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
                Version::V2 => request
                    .header("Content-Type", prompb::v2::CONTENT_TYPE)
                    .header("X-Prometheus-Remote-Write-Version", "2.0.0"),
            };
            let result = request.send(&body.bytes[..]);
            let (retry_after, why) = match result {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    if (200..300).contains(&status) {
                        if body.version == Version::V2 && body.samples > 0 {
                            let written = response
                                .headers()
                                .get("x-prometheus-remote-write-samples-written")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok());
                            if written.is_none()
                                && self.downgrade("a 2xx answer without X-Prometheus-Remote-Write-Samples-Written")
                            {
                                continue;
                            }
                        }
                        self.stat(|s| s.blocks_sent += 1);
                        metrics::counter!("strata_agent_remote_write_blocks_sent_total", "version" => body.version.name()).increment(1);
                        metrics::counter!("strata_agent_remote_write_bytes_sent_total")
                            .increment(body.bytes.len() as u64);
                        return Delivery::Sent;
                    }
                    let text = response
                        .body_mut()
                        .with_config()
                        .limit(4096)
                        .read_to_string()
                        .unwrap_or_default();
                    if status == 415 && body.version == Version::V2 && self.downgrade("415 Unsupported Media Type") {
                        continue;
                    }
                    if status == 400 || status == 409 || status == 415 {
                        tracing::warn!(url = %shown, status, version = body.version.name(), "receiver refused a block; dropping it: {}", text.trim());
                        self.stat(|s| s.blocks_rejected += 1);
                        metrics::counter!("strata_agent_remote_write_blocks_dropped_total", "reason" => "rejected")
                            .increment(1);
                        return Delivery::Rejected;
                    }
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (retry_after, format!("status {status}: {}", text.trim()))
                }
                Err(err) => (None, err.to_string()),
            };
            let delay = retry_after.unwrap_or(backoff);
            self.stat(|s| s.retries += 1);
            metrics::counter!("strata_agent_remote_write_retries_total").increment(1);
            tracing::warn!(url = %shown, ?delay, "cannot send a block ({why}); retrying");
            if wait_or_stop(stop, delay) {
                return Delivery::Stopped;
            }
            backoff = (backoff * 2).min(self.options.retry_max);
        }
    }
}

/// Sleeps `delay` unless told to stop; true if stopping.
fn wait_or_stop(stop: &Receiver<()>, delay: Duration) -> bool {
    !matches!(stop.recv_timeout(delay), Err(RecvTimeoutError::Timeout))
}

#[cfg(test)]
mod tests;
