//! Line-framed TCP for ingestion plugins that declare `line-framed` (Influx `:8089`, Graphite
//! `:2003`, OpenTSDB telnet `:4242`). The host frames: it reads whole lines, batches up to
//! [`MAX_CHUNK`] bytes (or whatever has arrived) and hands each chunk to the plugin's `parse` in a
//! plugin instance. A chunk that fails (bad line, plugin failure, validation) is logged and
//! counted and dropped; the connection goes on, as line protocols over TCP have no way to answer.
//! [`serve_udp`] takes one datagram of whole lines as one chunk.

use std::sync::Arc;

use strata_ingest::{IngestLimits, MetricBatch, SampleSink, Tenant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

use crate::PluginHost;

/// The most bytes of lines handed to the plugin at once.
pub const MAX_CHUNK: usize = 1 << 20;

/// Accepts connections on `listener` forever, feeding lines to plugin `plugin`.
pub async fn serve_tcp(
    listener: TcpListener,
    host: Arc<PluginHost>,
    plugin: String,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(plugin = %plugin, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (host, plugin, sink, limits) = (host.clone(), plugin.clone(), sink.clone(), limits.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut chunk: Vec<u8> = Vec::new();
            loop {
                let before = chunk.len();
                let n = match reader.read_until(b'\n', &mut chunk).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(plugin = %plugin, %peer, error = %e, "connection read failed");
                        break;
                    }
                };
                let eof = n == 0;
                if chunk.len() - before > limits.max_decompressed_bytes {
                    tracing::warn!(plugin = %plugin, %peer, "line longer than max_decompressed_bytes; closing");
                    break;
                }
                // Hand over when the chunk is big, the stream ended, or nothing more is buffered.
                if !chunk.is_empty() && (eof || chunk.len() >= MAX_CHUNK || reader.buffer().is_empty()) {
                    let body = std::mem::take(&mut chunk);
                    let (host, plugin, sink, limits) = (host.clone(), plugin.clone(), sink.clone(), limits.clone());
                    let _ =
                        tokio::task::spawn_blocking(move || ingest_chunk(&host, &plugin, &*sink, &limits, &body)).await;
                }
                if eof {
                    break;
                }
            }
        });
    }
}

/// The largest UDP datagram accepted (the IPv4 maximum payload).
pub const MAX_DATAGRAM: usize = 65_507;

/// Receives datagrams on `socket` forever, feeding each (whole lines, as Influx, Graphite and
/// StatsD-style clients send) to plugin `plugin`. A datagram that fails is dropped and counted.
pub async fn serve_udp(
    socket: tokio::net::UdpSocket,
    host: Arc<PluginHost>,
    plugin: String,
    sink: Arc<dyn SampleSink>,
    limits: IngestLimits,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match socket.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::debug!(plugin = %plugin, error = %e, "UDP receive failed");
                continue;
            }
        };
        if n == 0 {
            continue;
        }
        let body = buf[..n].to_vec();
        let (host, name, sink, limits) = (host.clone(), plugin.clone(), sink.clone(), limits.clone());
        // Datagrams are processed one at a time: UDP has no back-pressure, so a burst queues
        // in the socket buffer (and overflows there) instead of in our memory.
        let _ = tokio::task::spawn_blocking(move || ingest_chunk(&host, &name, &*sink, &limits, &body)).await;
    }
}

/// Parses, validates and stores one chunk; returns the samples stored.
fn ingest_chunk(host: &PluginHost, name: &str, sink: &dyn SampleSink, limits: &IngestLimits, body: &[u8]) -> usize {
    let Some(plugin) = host.ingest_plugin(name) else {
        tracing::warn!(plugin = %name, "plugin not loaded; dropping lines");
        return 0;
    };
    let now = strata_ingest::limits::now_ms();
    let mut batch = MetricBatch::new();
    let result = plugin
        .parse_into(&[], body, now, &mut batch)
        .map_err(|e| e.to_string())
        .and_then(|()| limits.validate(&mut batch, now).map_err(|e| e.to_string()))
        .and_then(|()| {
            if batch.is_empty() {
                return Ok(0);
            }
            sink.push(Tenant::default(), &batch)
                .map(|_| batch.sample_count())
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(n) => {
            metrics::counter!("strata_rows_inserted_total", "type" => format!("plugin_{name}")).increment(n as u64);
            n
        }
        Err(e) => {
            metrics::counter!("strata_plugin_stream_chunks_dropped_total", "plugin" => name.to_string()).increment(1);
            tracing::warn!(plugin = %name, error = %e, "dropped a chunk of lines");
            0
        }
    }
}
