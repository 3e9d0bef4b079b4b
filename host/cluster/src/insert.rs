//! The insert role's router: a `SampleSink` that shards series over storage nodes by
//! rendezvous hashing of tenant + labels, writes each series to `replication_factor` distinct
//! nodes, and keeps writing when a node dies or hangs (FORMATS.md §5.5–5.7).
//!
//! **Buffers.** Every storage node has its own bounded buffer ([`InsertOptions::buffer_bytes`])
//! and its own sender thread that drains it in requests of up to
//! [`InsertOptions::max_request_bytes`]. `push` only places series and appends them to the
//! buffers of their nodes, so a client never waits on a storage node: a node that is slow or
//! hung delays nothing but its own buffer. Like VictoriaMetrics, insert acknowledges a write
//! once it sits in its buffers; what sits there when the insert process crashes is lost (a
//! clean shutdown drains them, see [`ClusterSink::flush`]).
//!
//! **Placement.** Each series goes to the top `replication_factor` *available* nodes of its
//! ranking. With rerouting on (the default), available means healthy and with room in its
//! buffer. A node is unhealthy while it is down (a send failed; it is probed every
//! [`InsertOptions::retry_after`] and takes data again once a probe succeeds) or slow (a send
//! has been in flight longer than [`InsertOptions::slow_after`]). The buffered data of an
//! unhealthy node is moved to the next-ranked healthy nodes by a watchdog, so a hung node's
//! share keeps flowing. With rerouting off, a node keeps its share while it is away and takes
//! it when it returns; only a full buffer refuses writes. When healthy nodes' buffers are full
//! (a burst faster than storage takes it), `push` waits up to `slow_after` for room: that is
//! the backpressure. It fails with `SinkError::Unavailable` (503) only when a series has no
//! node that can take it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError};
use strata_storage::Tenant;

use crate::client::{CallError, ClientOptions, NodeClient};
use crate::hash;
use crate::proto::{self, Dec, Enc, Service, op};

/// Settings of the router.
#[derive(Clone, Debug)]
pub struct InsertOptions {
    /// Copies of each series, on distinct nodes (capped at the number of nodes).
    pub replication_factor: usize,
    /// How often a down node is probed.
    pub retry_after: Duration,
    /// A node whose current send has taken longer than this counts as slow: it gets no new
    /// data and its buffer is rerouted until the send finishes.
    pub slow_after: Duration,
    /// Bytes (encoded rows) each node's buffer holds at most.
    pub buffer_bytes: usize,
    /// Largest insert request a sender builds from its buffer.
    pub max_request_bytes: usize,
    /// Move a slow or down node's share to healthy nodes (true), or keep it for the node.
    pub reroute: bool,
    /// Socket timeouts.
    pub client: ClientOptions,
}

impl Default for InsertOptions {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            retry_after: Duration::from_secs(1),
            slow_after: Duration::from_secs(2),
            buffer_bytes: 32 << 20,
            max_request_bytes: 2 << 20,
            reroute: true,
            client: ClientOptions {
                io_timeout: Duration::from_secs(30),
                ..ClientOptions::default()
            },
        }
    }
}

/// An item is handed to its node's buffer once its encoding reaches this size.
const ITEM_BYTES: usize = 1 << 20;

/// Encoded series of one tenant waiting for one node.
struct Item {
    tenant: Tenant,
    series: u32,
    rows: u64,
    /// `put_series` records, back to back.
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
}

impl Queue {
    fn push_back(&mut self, item: Item) {
        self.bytes += item.bytes.len();
        self.items.push_back(item);
    }

    fn push_front(&mut self, item: Item) {
        self.bytes += item.bytes.len();
        self.items.push_front(item);
    }

    fn pop_front(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        self.bytes -= item.bytes.len();
        Some(item)
    }
}

/// Monotonic milliseconds since the sink started; 0 means "nothing in flight".
fn now_ms(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64 + 1
}

/// One storage node: its buffer and what its sender thread reports.
struct Node {
    client: NodeClient,
    hash: u64,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// A send failed and no probe succeeded since.
    down: AtomicBool,
    /// When the current send started (see [`now_ms`]), 0 when idle.
    inflight_since: AtomicU64,
    /// Bytes taken out of the queue for the current send.
    inflight_bytes: AtomicU64,
}

impl Node {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slow(&self, epoch: Instant, slow_after: Duration) -> bool {
        let since = self.inflight_since.load(Ordering::Relaxed);
        since != 0 && now_ms(epoch).saturating_sub(since) > slow_after.as_millis() as u64
    }

    fn healthy(&self, epoch: Instant, slow_after: Duration) -> bool {
        !self.down.load(Ordering::Relaxed) && !self.slow(epoch, slow_after)
    }
}

struct Shared {
    nodes: Vec<Node>,
    options: InsertOptions,
    epoch: Instant,
    stop: AtomicBool,
}

/// Shards, replicates and reroutes writes over storage nodes through per-node buffers.
pub struct ClusterSink {
    shared: Arc<Shared>,
}

impl ClusterSink {
    /// A router over the insert RPC addresses `addrs` (sorted and deduplicated here, so the
    /// placement does not depend on the order they were listed in). Starts one sender thread
    /// per node and a watchdog; they stop when the sink is dropped.
    pub fn new(addrs: &[String], options: InsertOptions) -> Self {
        let mut addrs = addrs.to_vec();
        addrs.sort();
        addrs.dedup();
        let nodes = addrs
            .into_iter()
            .map(|a| Node {
                hash: hash::node_hash(&a),
                client: NodeClient::new(a, Service::Insert, options.client.clone()),
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                down: AtomicBool::new(false),
                inflight_since: AtomicU64::new(0),
                inflight_bytes: AtomicU64::new(0),
            })
            .collect();
        let shared = Arc::new(Shared {
            nodes,
            options,
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
        });
        for i in 0..shared.nodes.len() {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("strata-send-{i}"))
                .spawn(move || sender(&s, i));
            if let Err(err) = spawned {
                tracing::error!("cannot start the sender thread of a storage node: {err}");
            }
        }
        let s = Arc::clone(&shared);
        if let Err(err) = std::thread::Builder::new()
            .name("strata-reroute".into())
            .spawn(move || watchdog(&s))
        {
            tracing::error!("cannot start the reroute watchdog: {err}");
        }
        Self { shared }
    }

    /// The node addresses in placement order.
    pub fn node_addrs(&self) -> Vec<&str> {
        self.shared.nodes.iter().map(|n| n.client.addr()).collect()
    }

    /// Bytes buffered (queued or in flight) for each node, in placement order.
    pub fn buffered_bytes(&self) -> Vec<usize> {
        self.shared
            .nodes
            .iter()
            .map(|n| n.queue().bytes + n.inflight_bytes.load(Ordering::Relaxed) as usize)
            .collect()
    }

    /// Waits until every buffer is sent, at most `timeout`; true when they all are.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.buffered_bytes().iter().all(|&b| b == 0) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ClusterSink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for n in &self.shared.nodes {
            let _guard = n.queue();
            n.wake.notify_all();
        }
    }
}

impl Shared {
    /// Whether node `i` may get new data now.
    fn available(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        let room = n.queue().bytes < self.options.buffer_bytes;
        room && (!self.options.reroute || n.healthy(self.epoch, self.options.slow_after))
    }

    fn enqueue(&self, node: usize, item: Item) {
        let n = &self.nodes[node];
        let mut q = n.queue();
        q.push_back(item);
        metrics::gauge!("strata_cluster_insert_buffer_bytes", "node" => n.client.addr().to_owned()).set(q.bytes as f64);
        n.wake.notify_one();
    }
}

/// Picks, for each of `rankings`, its first `rf` available nodes. Without rerouting a series
/// may only go to its own top `rf` nodes: if one of them is not available the series gets no
/// placement (an empty list), so the push waits or is refused instead of moving data.
fn place(rankings: &[Vec<usize>], available: &[bool], rf: usize, reroute: bool) -> Vec<Vec<usize>> {
    rankings
        .iter()
        .map(|ranking| {
            if !reroute {
                let own = &ranking[..rf.min(ranking.len())];
                return if own.iter().all(|&n| available[n]) {
                    own.to_vec()
                } else {
                    Vec::new()
                };
            }
            ranking.iter().copied().filter(|&n| available[n]).take(rf).collect()
        })
        .collect()
}

impl SampleSink for ClusterSink {
    fn push(&self, tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        let sh = &*self.shared;
        let n_nodes = sh.nodes.len();
        if n_nodes == 0 {
            return Err(SinkError::Unavailable("no storage nodes are configured".into()));
        }
        let rf = sh.options.replication_factor.clamp(1, n_nodes);
        let hashes: Vec<u64> = sh.nodes.iter().map(|n| n.hash).collect();
        let rankings: Vec<Vec<usize>> = batch
            .iter()
            .map(|s| hash::ranking(&hashes, hash::series_key(tenant, s.labels())))
            .collect();
        // A healthy node with a full buffer drains soon: wait for room a while (backpressure
        // on bursts) rather than refuse. Down or slow nodes are not waited for.
        let deadline = Instant::now() + sh.options.slow_after;
        let placement = loop {
            let available: Vec<bool> = (0..n_nodes).map(|i| sh.available(i)).collect();
            let placement = place(&rankings, &available, rf, sh.options.reroute);
            if !placement.iter().any(Vec::is_empty) {
                break placement;
            }
            let draining = sh.nodes.iter().any(|n| n.healthy(sh.epoch, sh.options.slow_after));
            if !draining || Instant::now() >= deadline {
                // Refuse the whole request before buffering any of it, so a retry does not
                // duplicate.
                metrics::counter!("strata_cluster_insert_refused_total").increment(1);
                return Err(SinkError::Unavailable(
                    "no storage node can take the data: all are down, slow or have full buffers".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let mut per_node: Vec<Item> = (0..n_nodes)
            .map(|_| Item {
                tenant,
                series: 0,
                rows: 0,
                bytes: Vec::new(),
            })
            .collect();
        let mut written = 0u64;
        let mut under = 0u64;
        for (i, nodes) in placement.iter().enumerate() {
            let s = batch.series(i);
            let rows = s.timestamps().len() as u64;
            written += rows;
            if nodes.len() < rf {
                under += 1;
            }
            for &node in nodes {
                let item = &mut per_node[node];
                let mut e = Enc(std::mem::take(&mut item.bytes));
                proto::put_series(&mut e, s.labels(), s.timestamps(), s.values());
                item.bytes = e.0;
                item.series += 1;
                item.rows += rows;
                // Hand full items over at once: the sender compresses and sends this part
                // while the rest is encoded, and each pass over the bytes stays in cache.
                if item.bytes.len() >= ITEM_BYTES {
                    let full = std::mem::replace(
                        item,
                        Item {
                            tenant,
                            series: 0,
                            rows: 0,
                            bytes: Vec::with_capacity(ITEM_BYTES + (ITEM_BYTES >> 3)),
                        },
                    );
                    sh.enqueue(node, full);
                }
            }
        }
        for (node, item) in per_node.into_iter().enumerate() {
            if item.series > 0 {
                sh.enqueue(node, item);
            }
        }
        if under > 0 {
            tracing::warn!(
                series = under,
                "incompletely replicated: fewer healthy nodes than replication_factor"
            );
            metrics::counter!("strata_cluster_incomplete_replication_total").increment(under);
        }
        metrics::counter!("strata_cluster_rows_buffered_total").increment(written);
        Ok(PushOutcome {
            samples_written: written,
        })
    }
}

/// Takes items of one tenant from the front of `q`, up to `max_bytes` (at least one item).
fn take_request(q: &mut Queue, max_bytes: usize) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    let mut size = 0usize;
    while let Some(front) = q.items.front() {
        let fits = out.is_empty() || (front.tenant == out[0].tenant && size + front.bytes.len() <= max_bytes);
        if !fits {
            break;
        }
        size += front.bytes.len();
        if let Some(item) = q.pop_front() {
            out.push(item);
        }
    }
    out
}

fn write_request(items: &[Item]) -> Vec<u8> {
    let size: usize = items.iter().map(|i| i.bytes.len()).sum();
    let series: u32 = items.iter().map(|i| i.series).sum();
    let mut e = Enc(Vec::with_capacity(size + 13));
    e.u8(op::WRITE).tenant(items[0].tenant).u32(series);
    for item in items {
        e.0.extend_from_slice(&item.bytes);
    }
    e.0
}

/// Sender thread of node `i`: drains its buffer; on failure marks the node down, puts the
/// request back for the watchdog (or for itself when rerouting is off) and probes the node
/// until it answers again.
fn sender(sh: &Shared, i: usize) {
    let node = &sh.nodes[i];
    let addr = node.client.addr().to_owned();
    loop {
        if node.down.load(Ordering::Relaxed) {
            std::thread::sleep(sh.options.retry_after);
            if sh.stop.load(Ordering::Relaxed) {
                return;
            }
            if node.client.call(&[op::PING]).is_ok() {
                tracing::info!(node = %addr, "storage node is back");
                node.down.store(false, Ordering::Relaxed);
            }
            continue;
        }
        let items = {
            let mut q = node.queue();
            while q.items.is_empty() && !sh.stop.load(Ordering::Relaxed) {
                q = node
                    .wake
                    .wait_timeout(q, Duration::from_millis(500))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if q.items.is_empty() {
                return;
            }
            let items = take_request(&mut q, sh.options.max_request_bytes);
            let bytes: usize = items.iter().map(|it| it.bytes.len()).sum();
            node.inflight_bytes.store(bytes as u64, Ordering::Relaxed);
            node.inflight_since.store(now_ms(sh.epoch), Ordering::Relaxed);
            items
        };
        let result = node.client.call(&write_request(&items));
        node.inflight_since.store(0, Ordering::Relaxed);
        let rows: u64 = items.iter().map(|it| it.rows).sum();
        match result {
            Ok(_) => {
                metrics::counter!("strata_cluster_rows_sent_total").increment(rows);
                node.inflight_bytes.store(0, Ordering::Relaxed);
            }
            // Bad data is bad on every node: rerouting would not help. The client was
            // answered already, so all that is left is to count and log it.
            Err(CallError::Remote { message, .. }) => {
                tracing::error!(node = %addr, rows, "storage node rejected rows: {message}");
                metrics::counter!("strata_cluster_rows_dropped_total").increment(rows);
                node.inflight_bytes.store(0, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::warn!("storage node unavailable, its buffer waits or is rerouted: {err}");
                metrics::counter!("strata_cluster_node_failures_total").increment(1);
                node.down.store(true, Ordering::Relaxed);
                let mut q = node.queue();
                for item in items.into_iter().rev() {
                    q.push_front(item);
                }
                node.inflight_bytes.store(0, Ordering::Relaxed);
            }
        }
        if sh.stop.load(Ordering::Relaxed) && node.queue().items.is_empty() {
            return;
        }
    }
}

/// Moves the buffers of unhealthy nodes to healthy ones, every 100 ms.
fn watchdog(sh: &Shared) {
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if !sh.options.reroute {
            continue;
        }
        for i in 0..sh.nodes.len() {
            if !sh.nodes[i].healthy(sh.epoch, sh.options.slow_after) {
                reroute(sh, i);
            }
        }
    }
}

/// Re-places the queued (not in-flight) items of node `from` on other available nodes.
///
/// A series' other copies went to the best available nodes of its ranking, so its rerouted
/// copy skips the first `rf - 1` nodes of the ranking without `from`, to land on a node that
/// does not hold a copy yet. When none is available the item stays for `from`.
fn reroute(sh: &Shared, from: usize) {
    let items: Vec<Item> = {
        let mut q = sh.nodes[from].queue();
        std::iter::from_fn(|| q.pop_front()).collect()
    };
    if items.is_empty() {
        return;
    }
    let n_nodes = sh.nodes.len();
    let rf = sh.options.replication_factor.clamp(1, n_nodes);
    let mut available: Vec<bool> = (0..n_nodes).map(|i| sh.available(i)).collect();
    available[from] = false;
    let hashes: Vec<u64> = sh.nodes.iter().map(|n| n.hash).collect();
    let mut keep: Vec<Item> = Vec::new();
    let mut moved = 0u64;
    for item in items {
        let Some(targets) = reroute_item(&item, from, &hashes, &available, rf) else {
            keep.push(item);
            continue;
        };
        for (node, out) in targets.into_iter().enumerate() {
            if out.series > 0 {
                moved += out.rows;
                sh.enqueue(node, out);
            }
        }
    }
    if moved > 0 {
        tracing::info!(node = %sh.nodes[from].client.addr(), rows = moved, "rerouted a storage node's buffer");
        metrics::counter!("strata_cluster_rows_rerouted_total").increment(moved);
    }
    if !keep.is_empty() {
        let mut q = sh.nodes[from].queue();
        for item in keep.into_iter().rev() {
            q.push_front(item);
        }
    }
}

/// Splits `item` (queued for `from`) over other available nodes; `None` when some series of
/// it has nowhere to go, or when it does not decode (it was encoded here, so that is a bug;
/// keeping it is the safe side).
fn reroute_item(item: &Item, from: usize, hashes: &[u64], available: &[bool], rf: usize) -> Option<Vec<Item>> {
    let mut out: Vec<Item> = (0..hashes.len())
        .map(|_| Item {
            tenant: item.tenant,
            series: 0,
            rows: 0,
            bytes: Vec::new(),
        })
        .collect();
    let mut d = Dec::new(&item.bytes);
    let mut e = Enc::default();
    while !d.is_done() {
        let s = proto::get_series(&mut d).ok()?;
        let key = hash::series_key(item.tenant, s.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let ranking: Vec<usize> = hash::ranking(hashes, key).into_iter().filter(|&n| n != from).collect();
        let target = ranking
            .iter()
            .skip(rf - 1)
            .chain(ranking.iter())
            .copied()
            .find(|&n| available[n])?;
        e.0.clear();
        proto::put_series(
            &mut e,
            s.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &s.timestamps,
            &s.values,
        );
        let o = &mut out[target];
        o.bytes.extend_from_slice(&e.0);
        o.series += 1;
        o.rows += s.timestamps.len() as u64;
    }
    Some(out)
}

#[cfg(test)]
#[path = "insert_tests.rs"]
mod tests;
