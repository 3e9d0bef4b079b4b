//! The insert role's router: a `SampleSink` that shards series over storage nodes by
//! rendezvous hashing of tenant + labels, writes each series to `replication_factor` distinct
//! nodes, and reroutes around nodes that fail (FORMATS.md §5.5–5.7).
//!
//! Each series goes to the top `replication_factor` *available* nodes of its ranking. A node
//! that fails a send (down, timed out, read-only) is marked unavailable for
//! [`InsertOptions::retry_after`]; its series move to their next-ranked nodes, which
//! rendezvous makes stable and spreads over all the others. After the pause the node is tried
//! again, so a restarted node takes new data.
//!
//! Sends are synchronous: `push` returns once every copy is acknowledged by storage (stronger
//! than VictoriaMetrics, which answers once rows sit in vminsert's buffers). What a node holds
//! in flight is bounded by the request (at most one batch per node per push), so the buffers
//! are bounded by the HTTP body limit times the concurrency. 503 (`SinkError::Unavailable`)
//! only when a series could not be placed on any node.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_ingest::{MetricBatch, PushOutcome, SampleSink, SinkError};
use strata_storage::Tenant;

use crate::client::{CallError, ClientOptions, NodeClient};
use crate::hash;
use crate::proto::{self, Enc, Service, op};

/// Settings of the router.
#[derive(Clone, Debug)]
pub struct InsertOptions {
    /// Copies of each series, on distinct nodes (capped at the number of nodes).
    pub replication_factor: usize,
    /// How long a failed node is skipped before it is tried again.
    pub retry_after: Duration,
    /// Socket timeouts.
    pub client: ClientOptions,
}

impl Default for InsertOptions {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            retry_after: Duration::from_secs(1),
            client: ClientOptions::default(),
        }
    }
}

struct Node {
    client: NodeClient,
    hash: u64,
    down_until: Mutex<Option<Instant>>,
}

impl Node {
    fn available(&self) -> bool {
        match *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(until) => Instant::now() >= until,
            None => true,
        }
    }

    fn mark_down(&self, pause: Duration) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + pause);
    }

    fn mark_up(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Shards, replicates and reroutes writes over storage nodes.
pub struct ClusterSink {
    nodes: Vec<Node>,
    options: InsertOptions,
}

impl ClusterSink {
    /// A router over the insert RPC addresses `addrs` (sorted and deduplicated here, so the
    /// placement does not depend on the order they were listed in).
    pub fn new(addrs: &[String], options: InsertOptions) -> Self {
        let mut addrs = addrs.to_vec();
        addrs.sort();
        addrs.dedup();
        let nodes = addrs
            .into_iter()
            .map(|a| Node {
                hash: hash::node_hash(&a),
                client: NodeClient::new(a, Service::Insert, options.client),
                down_until: Mutex::new(None),
            })
            .collect();
        Self { nodes, options }
    }

    /// The node addresses in placement order.
    pub fn node_addrs(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.client.addr()).collect()
    }

    fn send(&self, node: usize, tenant: Tenant, batch: &MetricBatch, series: &[usize]) -> Result<u64, CallError> {
        let mut e = Enc::with_op(op::WRITE);
        e.tenant(tenant).u32(series.len() as u32);
        for &i in series {
            let s = batch.series(i);
            proto::put_series(&mut e, s.labels(), s.timestamps(), s.values());
        }
        let reply = self.nodes[node].client.call(&e.0)?;
        let mut d = proto::Dec::new(&reply);
        d.u64().map_err(|source| CallError::Unavailable {
            addr: self.nodes[node].client.addr().to_owned(),
            source,
        })
    }
}

impl SampleSink for ClusterSink {
    fn push(&self, tenant: Tenant, batch: &MetricBatch) -> Result<PushOutcome, SinkError> {
        let n_nodes = self.nodes.len();
        if n_nodes == 0 {
            return Err(SinkError::Unavailable("no storage nodes are configured".into()));
        }
        let rf = self.options.replication_factor.clamp(1, n_nodes);
        let hashes: Vec<u64> = self.nodes.iter().map(|n| n.hash).collect();
        let mut available: Vec<bool> = self.nodes.iter().map(Node::available).collect();
        if !available.contains(&true) {
            // Every node is in its pause: try them all rather than refuse without asking.
            available.fill(true);
        }
        // Per series: its ranking, how many copies landed, and how far down the ranking we are.
        let rankings: Vec<Vec<usize>> = batch
            .iter()
            .map(|s| hash::ranking(&hashes, hash::series_key(tenant, s.labels())))
            .collect();
        let mut copies = vec![0usize; rankings.len()];
        let mut cursor = vec![0usize; rankings.len()];
        let mut want: Vec<usize> = vec![rf; rankings.len()];
        let mut written = 0u64;
        let mut last_error = String::new();
        // Each round either places every pending copy or takes at least one node out, so it
        // ends within n_nodes + 1 rounds.
        for _round in 0..=n_nodes {
            let mut per_node: Vec<Vec<usize>> = vec![Vec::new(); n_nodes];
            for (i, ranking) in rankings.iter().enumerate() {
                while want[i] > 0 && cursor[i] < n_nodes {
                    let node = ranking[cursor[i]];
                    cursor[i] += 1;
                    if available[node] {
                        per_node[node].push(i);
                        want[i] -= 1;
                    }
                }
            }
            if per_node.iter().all(Vec::is_empty) {
                break;
            }
            let results: Vec<(usize, Result<u64, CallError>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = per_node
                    .iter()
                    .enumerate()
                    .filter(|(_, series)| !series.is_empty())
                    .map(|(node, series)| (node, scope.spawn(move || self.send(node, tenant, batch, series))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(node, h)| {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(CallError::Remote {
                                addr: self.nodes[node].client.addr().to_owned(),
                                message: "sender thread panicked".into(),
                            })
                        });
                        (node, r)
                    })
                    .collect()
            });
            for (node, result) in results {
                match result {
                    Ok(_) => {
                        self.nodes[node].mark_up();
                        for &i in &per_node[node] {
                            copies[i] += 1;
                        }
                    }
                    // Bad data is bad on every node: do not reroute it.
                    Err(CallError::Remote { message, .. }) => return Err(SinkError::Rejected(message)),
                    Err(err) => {
                        tracing::warn!("storage node unavailable, rerouting its series: {err}");
                        metrics::counter!("strata_cluster_node_failures_total").increment(1);
                        last_error = err.to_string();
                        available[node] = false;
                        self.nodes[node].mark_down(self.options.retry_after);
                        for &i in &per_node[node] {
                            want[i] += 1;
                        }
                    }
                }
            }
        }
        let mut under = 0usize;
        for (i, &c) in copies.iter().enumerate() {
            if c == 0 {
                return Err(SinkError::Unavailable(format!(
                    "no storage node can take the data (last error: {last_error})"
                )));
            }
            if c < rf {
                under += 1;
            }
            written += batch.series(i).timestamps().len() as u64;
        }
        if under > 0 {
            tracing::warn!(
                series = under,
                "incompletely replicated: fewer healthy nodes than replication_factor"
            );
            metrics::counter!("strata_cluster_incomplete_replication_total").increment(under as u64);
        }
        metrics::counter!("strata_cluster_rows_sent_total").increment(written);
        Ok(PushOutcome {
            samples_written: written,
        })
    }
}
