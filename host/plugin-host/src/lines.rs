//! Line-framed TCP and UDP for ingestion plugins that declare `line-framed` (Influx `:8089`,
//! Graphite `:2003`, OpenTSDB telnet `:4242`). The host frames: it reads whole lines, batches up
//! to [`MAX_CHUNK`] bytes (or whatever has arrived) and pushes each chunk into the plugin's
//! `session` for that stream ([`StreamSession`]): one session per TCP connection, one per UDP
//! listener (a run of datagrams). A chunk that fails (bad line, plugin failure, validation) is
//! logged, counted and dropped; the stream goes on, as line protocols have no way to answer.
//! After a plugin reload the next chunk finishes the old version's session and opens one on the
//! new version, so long-lived connections pick up reloads too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use strata_ingest::{IngestLimits, MetricBatch, SampleSink, Tenant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::session::StreamSession;
use crate::{PluginError, PluginHost};

/// The most bytes of lines handed to the plugin at once.
pub const MAX_CHUNK: usize = 1 << 20;

/// Open TCP connections per listener; more are closed at once (and counted), so that a flood
/// of connections cannot make the host hold an unbounded number of plugin instances.
pub const MAX_CONNECTIONS: usize = 1024;

/// The largest UDP datagram accepted (the IPv4 maximum payload).
pub const MAX_DATAGRAM: usize = 65_507;

/// Live counters of one TCP or UDP listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// TCP connections open now.
    pub open_connections: AtomicU64,
    /// TCP connections accepted since start.
    pub connections_total: AtomicU64,
    /// TCP connections closed at once because [`MAX_CONNECTIONS`] were open.
    pub refused_connections: AtomicU64,
    /// Chunks (TCP) or datagrams (UDP) stored.
    pub chunks: AtomicU64,
    /// Chunks or datagrams dropped (parse error, plugin failure, validation, storage refusal).
    pub dropped_chunks: AtomicU64,
    /// Samples stored.
    pub samples: AtomicU64,
}

/// A listener as `GET /api/v1/plugins` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerStatus {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The bound address, `host:port`.
    pub address: String,
    /// TCP connections open now (0 for UDP).
    pub open_connections: u64,
    /// TCP connections accepted since start.
    pub connections_total: u64,
    /// TCP connections refused because too many were open.
    pub refused_connections: u64,
    /// Chunks or datagrams stored.
    pub chunks: u64,
    /// Chunks or datagrams dropped.
    pub dropped_chunks: u64,
    /// Samples stored.
    pub samples: u64,
}

impl ListenerStats {
    pub(crate) fn status(&self, protocol: &'static str, address: &str) -> ListenerStatus {
        ListenerStatus {
            protocol,
            address: address.to_string(),
            open_connections: self.open_connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            refused_connections: self.refused_connections.load(Relaxed),
            chunks: self.chunks.load(Relaxed),
            dropped_chunks: self.dropped_chunks.load(Relaxed),
            samples: self.samples.load(Relaxed),
        }
    }
}

/// What every chunk of one listener needs.
#[derive(Clone)]
struct Feed {
    host: Arc<PluginHost>,
    plugin: String,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
    stats: Arc<ListenerStats>,
}

/// Accepts connections on `listener` forever, feeding lines to plugin `plugin`.
pub async fn serve_tcp(
    listener: TcpListener,
    host: Arc<PluginHost>,
    plugin: String,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
) {
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let feed = Feed::register(host, plugin, sink, limits, "tcp", &address);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(plugin = %feed.plugin, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            feed.stats.refused_connections.fetch_add(1, Relaxed);
            metrics::counter!("strata_plugin_stream_connections_refused_total", "plugin" => feed.plugin.clone())
                .increment(1);
            tracing::warn!(plugin = %feed.plugin, %peer, "too many open connections ({MAX_CONNECTIONS}); closing");
            continue;
        };
        feed.stats.connections_total.fetch_add(1, Relaxed);
        feed.stats.open_connections.fetch_add(1, Relaxed);
        let feed = feed.clone();
        tokio::spawn(async move {
            read_connection(stream, peer, &feed).await;
            feed.stats.open_connections.fetch_sub(1, Relaxed);
            drop(slot);
        });
    }
}

async fn read_connection(stream: TcpStream, peer: std::net::SocketAddr, feed: &Feed) {
    let mut reader = BufReader::new(stream);
    let mut chunk: Vec<u8> = Vec::new();
    let mut session: Option<StreamSession> = None;
    loop {
        let before = chunk.len();
        let n = match reader.read_until(b'\n', &mut chunk).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(plugin = %feed.plugin, %peer, error = %e, "connection read failed");
                break;
            }
        };
        let eof = n == 0;
        if chunk.len() - before > feed.limits.max_decompressed_bytes {
            tracing::warn!(plugin = %feed.plugin, %peer, "line longer than max_decompressed_bytes; closing");
            chunk.clear();
            break;
        }
        // Hand over when the chunk is big, the stream ended, or nothing more is buffered.
        if !chunk.is_empty() && (eof || chunk.len() >= MAX_CHUNK || reader.buffer().is_empty()) {
            let body = std::mem::take(&mut chunk);
            session = in_blocking(feed, session, move |feed, session| feed.push(session, &body)).await;
        }
        if eof {
            break;
        }
    }
    if session.is_some() {
        in_blocking(feed, session, |feed, session| feed.finish(session)).await;
    }
}

/// Receives datagrams on `socket` forever, feeding each (whole lines, as Influx, Graphite and
/// StatsD-style clients send) to plugin `plugin` through one session. A datagram that fails is
/// dropped and counted.
pub async fn serve_udp(
    socket: tokio::net::UdpSocket,
    host: Arc<PluginHost>,
    plugin: String,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
) {
    let address = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let feed = Feed::register(host, plugin, sink, limits, "udp", &address);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut session: Option<StreamSession> = None;
    loop {
        let n = match socket.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::debug!(plugin = %feed.plugin, error = %e, "UDP receive failed");
                continue;
            }
        };
        if n == 0 {
            continue;
        }
        let body = buf[..n].to_vec();
        // Datagrams are processed one at a time: UDP has no back-pressure, so a burst queues
        // in the socket buffer (and overflows there) instead of in our memory.
        session = in_blocking(&feed, session, move |feed, session| feed.push(session, &body)).await;
    }
}

/// Runs `f` on a blocking thread (plugin calls are CPU work) and hands the session back; a
/// panic there loses only the session.
async fn in_blocking(
    feed: &Feed,
    mut session: Option<StreamSession>,
    f: impl FnOnce(&Feed, &mut Option<StreamSession>) + Send + 'static,
) -> Option<StreamSession> {
    let feed = feed.clone();
    tokio::task::spawn_blocking(move || {
        f(&feed, &mut session);
        session
    })
    .await
    .unwrap_or(None)
}

impl Feed {
    /// The feed of a new listener, listed in the host's plugin status under `protocol` and
    /// `address`.
    fn register(
        host: Arc<PluginHost>,
        plugin: String,
        sink: Arc<dyn SampleSink>,
        limits: IngestLimits,
        protocol: &'static str,
        address: &str,
    ) -> Self {
        let stats = host.register_listener(&plugin, protocol, address);
        Self {
            host,
            plugin,
            sink,
            limits,
            stats,
        }
    }

    /// Pushes one chunk into the session, opening (or re-opening after a reload or a failure)
    /// it first.
    fn push(&self, session: &mut Option<StreamSession>, body: &[u8]) {
        let Some(current) = self.host.ingest_plugin(&self.plugin) else {
            tracing::warn!(plugin = %self.plugin, "plugin not loaded; dropping lines");
            self.stats.dropped_chunks.fetch_add(1, Relaxed);
            return;
        };
        if session
            .as_ref()
            .is_some_and(|s| s.is_broken() || !Arc::ptr_eq(s.plugin(), &current))
        {
            // A reload (or a failed instance): end the old session, keeping what it buffered.
            self.finish(session);
        }
        if session.is_none() {
            match StreamSession::open(current, &[]) {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    self.store(Err(e));
                    return;
                }
            }
        }
        let Some(s) = session.as_mut() else { return };
        let mut batch = MetricBatch::new();
        let now = strata_ingest::limits::now_ms();
        let result = s.push(body, now, &mut batch).map(|()| batch);
        self.store(result);
    }

    /// Ends the session (if any and usable) and stores what it still held.
    fn finish(&self, session: &mut Option<StreamSession>) {
        let Some(s) = session.take() else { return };
        if s.is_broken() {
            return;
        }
        let mut batch = MetricBatch::new();
        let result = s.finish(&mut batch).map(|()| batch);
        // A session that had nothing buffered returns an empty batch: not a chunk.
        if result.as_ref().is_ok_and(MetricBatch::is_empty) {
            return;
        }
        self.store(result);
    }

    /// Validates and stores one parsed chunk, counting it either way.
    fn store(&self, parsed: Result<MetricBatch, PluginError>) {
        let now = strata_ingest::limits::now_ms();
        let result = parsed.map_err(|e| e.to_string()).and_then(|mut batch| {
            self.limits.validate(&mut batch, now).map_err(|e| e.to_string())?;
            if batch.is_empty() {
                return Ok(0);
            }
            self.sink
                .push(Tenant::default(), &batch)
                .map(|_| batch.sample_count())
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(n) => {
                self.stats.chunks.fetch_add(1, Relaxed);
                self.stats.samples.fetch_add(n as u64, Relaxed);
                metrics::counter!("strata_rows_inserted_total", "type" => format!("plugin_{}", self.plugin))
                    .increment(n as u64);
            }
            Err(e) => {
                self.stats.dropped_chunks.fetch_add(1, Relaxed);
                metrics::counter!("strata_plugin_stream_chunks_dropped_total", "plugin" => self.plugin.clone())
                    .increment(1);
                tracing::warn!(plugin = %self.plugin, error = %e, "dropped a chunk of lines");
            }
        }
    }
}
