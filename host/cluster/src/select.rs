//! The select role's fan-out: a `SeriesSource` for one tenant that asks every storage node in
//! parallel and merges the answers (FORMATS.md §5.7–5.9).
//!
//! - Searches stream: every node sends blocks of series in a common order and
//!   [`crate::merge`] merges them as they arrive, so neither side holds the whole answer.
//! - Series merge by their labels; samples at the same timestamp count once (replicas hold
//!   identical copies, so which one wins does not matter).
//! - An error a node *reports* (bad regex, too many series) fails the query: every node would
//!   say the same.
//! - A node that cannot be reached is counted. Fewer failures than `replication_factor` leave
//!   the answer complete; more make it partial ([`QueryStatus::is_partial`]); none answering
//!   at all fails the query ([`QueryStatus::is_unavailable`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_query::{LabelMatcher, Labels, MatchOp, Series, SeriesSource, SourceError};
use strata_storage::Tenant;

use crate::client::{CallError, ClientOptions, NodeClient};
use crate::merge::{self, MergeOutcome, NodeMsg};
use crate::proto::{self, Dec, Enc, ProtoError, Service, WireFilter, op};

/// Series handed to the engine per batch.
const SELECT_BATCH: usize = 1024;

/// The storage nodes a select node reads from.
pub struct SelectCluster {
    nodes: Vec<NodeClient>,
    replication_factor: usize,
    max_series: usize,
}

impl SelectCluster {
    /// Reads from the select RPC addresses `addrs`; `replication_factor` is the insert side's,
    /// `max_series` the per-node limit of one selector.
    pub fn new(addrs: &[String], replication_factor: usize, max_series: usize, client: ClientOptions) -> Self {
        let mut addrs = addrs.to_vec();
        addrs.sort();
        addrs.dedup();
        Self {
            nodes: addrs
                .into_iter()
                .map(|a| NodeClient::new(a, Service::Select, client.clone()))
                .collect(),
            replication_factor: replication_factor.max(1),
            max_series,
        }
    }

    /// A source for `tenant` with a fresh status; one per request.
    pub fn source(self: &Arc<Self>, tenant: Tenant) -> ClusterSource {
        self.source_with_max_series(tenant, self.max_series)
    }

    /// [`SelectCluster::source`] with a tenant's own series limit (`[[limits.tenants]]`).
    pub fn source_with_max_series(self: &Arc<Self>, tenant: Tenant, max_series: usize) -> ClusterSource {
        ClusterSource {
            cluster: Arc::clone(self),
            tenant,
            status: Arc::new(QueryStatus::default()),
            max_series,
        }
    }

    /// Deletes `tenant`'s series matching `matchers` on every node; returns the copies deleted
    /// (a replicated series counts once per copy). Unlike reads, a node that cannot be reached
    /// fails the call: a delete that skipped a node would leave data behind.
    pub fn delete_series(&self, tenant: Tenant, matchers: &[LabelMatcher]) -> Result<u64, SourceError> {
        let mut e = Enc::with_op(op::DELETE_SERIES);
        e.tenant(tenant);
        proto::put_filters(&mut e, &wire_filters(matchers));
        let status = QueryStatus::default();
        let bodies = self.fan_out(&e.0, &status)?;
        if bodies.len() < self.nodes.len() {
            return Err(SourceError(
                "some storage nodes did not answer; the delete is incomplete, retry it".into(),
            ));
        }
        let mut total = 0u64;
        for body in bodies {
            total += Dec::new(&body).u64().map_err(bad_reply)?;
        }
        Ok(total)
    }

    /// The tenants that wrote to any node, sorted; fails only when no node answered.
    pub fn tenants(&self) -> Result<Vec<Tenant>, SourceError> {
        let status = QueryStatus::default();
        let mut all = std::collections::BTreeSet::new();
        for body in self.fan_out(&[op::TENANTS], &status)? {
            let mut d = Dec::new(&body);
            let n = d.count(8).map_err(bad_reply)?;
            for _ in 0..n {
                all.insert(d.tenant().map_err(bad_reply)?);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Every node's cardinality statistics of `tenant` for the day of `date_ms`, as JSON
    /// objects (storage's `TsdbStatus`), with the status of the fan-out.
    pub fn tsdb_status(
        &self,
        tenant: Tenant,
        date_ms: i64,
        focus_label: Option<&str>,
        top_n: usize,
    ) -> Result<(Vec<serde_json::Value>, QueryStatus), SourceError> {
        let mut e = Enc::with_op(op::TSDB_STATUS);
        e.tenant(tenant)
            .i64(date_ms)
            .str(focus_label.unwrap_or(""))
            .u32(u32::try_from(top_n).unwrap_or(u32::MAX));
        let status = QueryStatus::default();
        let bodies = self.fan_out(&e.0, &status)?;
        let parsed = bodies
            .iter()
            .map(|b| {
                serde_json::from_slice(b)
                    .map_err(|err| SourceError(format!("bad status answer from a storage node: {err}")))
            })
            .collect::<Result<Vec<serde_json::Value>, SourceError>>()?;
        Ok((parsed, status))
    }

    /// The replication factor the nodes were written with.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Sends a search `request` to every node at once and merges their streams into `emit`.
    fn stream(&self, request: &[u8], emit: &mut dyn FnMut(Series) -> bool) -> Result<MergeOutcome, SourceError> {
        std::thread::scope(|scope| {
            let mut streams = Vec::with_capacity(self.nodes.len());
            for node in &self.nodes {
                // Two blocks in the queue keep the socket busy while the merge works.
                let (tx, rx) = std::sync::mpsc::sync_channel::<NodeMsg>(2);
                streams.push(rx);
                scope.spawn(move || {
                    let mut bad: Option<ProtoError> = None;
                    let result = node.call_stream(request, &mut |body| match merge::decode_block(body) {
                        Ok(block) => tx.send(NodeMsg::Block(block)).is_ok(),
                        Err(e) => {
                            bad = Some(e);
                            false
                        }
                    });
                    let failure = match (result, bad) {
                        (_, Some(e)) => Some(CallError::Unavailable {
                            addr: node.addr().to_owned(),
                            source: e,
                        }),
                        (Err(e), None) => Some(e),
                        (Ok(_), None) => None,
                    };
                    if let Some(e) = failure {
                        let _ = tx.send(NodeMsg::Failed(e));
                    }
                });
            }
            // Returning drops the receivers, which stops readers still streaming.
            merge::merge_streams(streams, emit)
        })
    }

    /// Sends `request` to every node at once; returns the answers of those that answered.
    fn fan_out(&self, request: &[u8], status: &QueryStatus) -> Result<Vec<Vec<u8>>, SourceError> {
        let results: Vec<Result<Vec<u8>, CallError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|n| scope.spawn(move || n.call(request)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CallError::Remote {
                            addr: String::new(),
                            message: "fan-out thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut ok = Vec::with_capacity(results.len());
        let mut failed = 0usize;
        let mut last = String::new();
        for r in results {
            match r {
                Ok(body) => ok.push(body),
                Err(CallError::Remote { addr, message }) => {
                    return Err(SourceError(format!("storage node {addr}: {message}")));
                }
                Err(err) => {
                    tracing::warn!("select fan-out: {err}");
                    metrics::counter!("strata_cluster_select_node_failures_total").increment(1);
                    failed += 1;
                    last = err.to_string();
                }
            }
        }
        if ok.is_empty() {
            status.unavailable.store(true, Ordering::Relaxed);
            return Err(SourceError(format!("no storage node answered (last error: {last})")));
        }
        if failed >= self.replication_factor {
            status.partial.store(true, Ordering::Relaxed);
        }
        Ok(ok)
    }
}

/// What happened to the reads of one request.
#[derive(Debug, Default)]
pub struct QueryStatus {
    partial: AtomicBool,
    unavailable: AtomicBool,
}

impl QueryStatus {
    /// Records a merge's failures over `nodes` nodes; fails when no node answered.
    fn record(&self, outcome: &MergeOutcome, nodes: usize, replication_factor: usize) -> Result<(), SourceError> {
        if outcome.failed >= nodes {
            self.unavailable.store(true, Ordering::Relaxed);
            return Err(SourceError(format!(
                "no storage node answered (last error: {})",
                outcome.last_error
            )));
        }
        if outcome.failed >= replication_factor {
            self.partial.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Some data may be missing: more nodes failed than replication covers.
    pub fn is_partial(&self) -> bool {
        self.partial.load(Ordering::Relaxed)
    }

    /// No node answered a read.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable.load(Ordering::Relaxed)
    }
}

/// The fan-out `SeriesSource` of one tenant and one request.
#[derive(Clone)]
pub struct ClusterSource {
    cluster: Arc<SelectCluster>,
    tenant: Tenant,
    status: Arc<QueryStatus>,
    max_series: usize,
}

impl ClusterSource {
    /// The status shared by every read through this source.
    pub fn status(&self) -> Arc<QueryStatus> {
        Arc::clone(&self.status)
    }
}

fn wire_filters(matchers: &[LabelMatcher]) -> Vec<WireFilter> {
    matchers
        .iter()
        .map(|m| WireFilter {
            name: m.name.clone(),
            op: match m.op {
                MatchOp::Equal => 0,
                MatchOp::NotEqual => 1,
                MatchOp::RegexMatch => 2,
                MatchOp::RegexNoMatch => 3,
            },
            value: m.value.clone(),
        })
        .collect()
}

fn bad_reply(e: ProtoError) -> SourceError {
    SourceError(format!("bad answer from a storage node: {e}"))
}

fn merge_strings(parts: Vec<Vec<u8>>) -> Result<Vec<String>, SourceError> {
    let mut all = std::collections::BTreeSet::new();
    for body in parts {
        let mut d = Dec::new(&body);
        all.extend(proto::get_strings(&mut d).map_err(bad_reply)?);
    }
    Ok(all.into_iter().collect())
}

impl SeriesSource for ClusterSource {
    fn select(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SourceError> {
        let mut all = Vec::new();
        self.select_batches(matchers, start_ms, end_ms, &mut |batch| {
            all.extend(batch);
            true
        })?;
        Ok(all)
    }

    /// Streams from every node at once and merges as blocks arrive (see [`crate::merge`]).
    fn select_batches(
        &self,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
        f: &mut dyn FnMut(Vec<Series>) -> bool,
    ) -> Result<(), SourceError> {
        let mut e = Enc::with_op(op::SEARCH);
        e.tenant(self.tenant);
        proto::put_filters(&mut e, &wire_filters(matchers));
        e.i64(start_ms).i64(end_ms).u64(self.max_series as u64);
        let max_series = self.max_series;
        let mut batch: Vec<Series> = Vec::new();
        let mut emitted = 0usize;
        let mut too_many = false;
        let outcome = self.cluster.stream(&e.0, &mut |s| {
            emitted += 1;
            if emitted > max_series {
                too_many = true;
                return false;
            }
            batch.push(s);
            if batch.len() >= SELECT_BATCH {
                return f(std::mem::take(&mut batch));
            }
            true
        })?;
        if too_many {
            return Err(SourceError(format!(
                "the query matches more than {max_series} series; narrow the selector"
            )));
        }
        self.status
            .record(&outcome, self.cluster.nodes.len(), self.cluster.replication_factor)?;
        if !outcome.stopped && !batch.is_empty() {
            f(batch);
        }
        Ok(())
    }

    /// Names only, from every node's index (no samples are read), merged by labels.
    fn series_labels(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, SourceError> {
        let mut e = Enc::with_op(op::SERIES);
        e.tenant(self.tenant);
        proto::put_filters(&mut e, &wire_filters(matchers));
        e.i64(start_ms).i64(end_ms).u64(self.max_series as u64);
        let mut all = std::collections::BTreeSet::new();
        for body in self.cluster.fan_out(&e.0, &self.status)? {
            let mut d = Dec::new(&body);
            let n = d.count(4).map_err(bad_reply)?;
            for _ in 0..n {
                let nl = d.count(8).map_err(bad_reply)?;
                let mut pairs = Vec::with_capacity(nl);
                for _ in 0..nl {
                    pairs.push((
                        d.str().map_err(bad_reply)?.to_owned(),
                        d.str().map_err(bad_reply)?.to_owned(),
                    ));
                }
                all.insert(Labels::from_pairs(pairs));
            }
        }
        if all.len() > self.max_series {
            return Err(SourceError(format!(
                "the query matches more than {} series; narrow the selector",
                self.max_series
            )));
        }
        Ok(all.into_iter().collect())
    }

    fn label_names(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<String>, SourceError> {
        let mut e = Enc::with_op(op::LABEL_NAMES);
        e.tenant(self.tenant);
        proto::put_filters(&mut e, &wire_filters(matchers));
        e.i64(start_ms).i64(end_ms).u64(self.max_series as u64);
        merge_strings(self.cluster.fan_out(&e.0, &self.status)?)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[LabelMatcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, SourceError> {
        let mut e = Enc::with_op(op::LABEL_VALUES);
        e.tenant(self.tenant).str(name);
        proto::put_filters(&mut e, &wire_filters(matchers));
        e.i64(start_ms).i64(end_ms).u64(self.max_series as u64);
        merge_strings(self.cluster.fan_out(&e.0, &self.status)?)
    }
}
