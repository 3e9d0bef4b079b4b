//! The select role's fan-out: a `SeriesSource` for one tenant that asks every storage node in
//! parallel and merges the answers (FORMATS.md §5.7–5.9).
//!
//! - Series merge by their labels; samples at the same timestamp count once (replicas hold
//!   identical copies, so which one wins does not matter).
//! - An error a node *reports* (bad regex, too many series) fails the query: every node would
//!   say the same.
//! - A node that cannot be reached is counted. Fewer failures than `replication_factor` leave
//!   the answer complete; more make it partial ([`QueryStatus::is_partial`]); none answering
//!   at all fails the query ([`QueryStatus::is_unavailable`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_query::{LabelMatcher, Labels, MatchOp, Series, SeriesSource, SourceError};
use strata_storage::Tenant;

use crate::client::{CallError, ClientOptions, NodeClient};
use crate::proto::{self, Dec, Enc, ProtoError, Service, WireFilter, op};

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
                .map(|a| NodeClient::new(a, Service::Select, client))
                .collect(),
            replication_factor: replication_factor.max(1),
            max_series,
        }
    }

    /// A source for `tenant` with a fresh status; one per request.
    pub fn source(self: &Arc<Self>, tenant: Tenant) -> ClusterSource {
        ClusterSource {
            cluster: Arc::clone(self),
            tenant,
            status: Arc::new(QueryStatus::default()),
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

/// Merges two sorted sample runs; at equal timestamps the first run's sample is kept.
fn merge_samples(a: (&[i64], &[f64]), b: (&[i64], &[f64])) -> (Vec<i64>, Vec<f64>) {
    let (mut ts, mut vs) = (Vec::with_capacity(a.0.len() + b.0.len()), Vec::new());
    vs.reserve(a.0.len() + b.0.len());
    let (mut i, mut j) = (0, 0);
    while i < a.0.len() || j < b.0.len() {
        let take_a = j >= b.0.len() || (i < a.0.len() && a.0[i] <= b.0[j]);
        if take_a {
            if j < b.0.len() && a.0[i] == b.0[j] {
                j += 1;
            }
            ts.push(a.0[i]);
            vs.push(a.1[i]);
            i += 1;
        } else {
            ts.push(b.0[j]);
            vs.push(b.1[j]);
            j += 1;
        }
    }
    (ts, vs)
}

/// A series' samples while merging: timestamps and values.
type Samples = (Vec<i64>, Vec<f64>);

/// Merges per-node series lists into one, by labels.
pub fn merge_series(parts: Vec<Vec<proto::WireSeries>>) -> Vec<Series> {
    let mut by_labels: HashMap<Vec<(String, String)>, Samples> = HashMap::new();
    for part in parts {
        for s in part {
            match by_labels.get_mut(&s.labels) {
                Some(existing) => {
                    *existing = merge_samples((&existing.0, &existing.1), (&s.timestamps, &s.values));
                }
                None => {
                    by_labels.insert(s.labels, (s.timestamps, s.values));
                }
            }
        }
    }
    let mut out: Vec<Series> = by_labels
        .into_iter()
        .map(|(labels, (timestamps, values))| Series {
            labels: Labels::from_pairs(labels),
            timestamps,
            values,
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
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
        let mut e = Enc::with_op(op::SEARCH);
        e.tenant(self.tenant);
        proto::put_filters(&mut e, &wire_filters(matchers));
        e.i64(start_ms).i64(end_ms).u64(self.cluster.max_series as u64);
        let bodies = self.cluster.fan_out(&e.0, &self.status)?;
        let mut parts = Vec::with_capacity(bodies.len());
        for body in bodies {
            let mut d = Dec::new(&body);
            let n = d.count(8).map_err(bad_reply)?;
            let mut part = Vec::with_capacity(n);
            for _ in 0..n {
                part.push(proto::get_series(&mut d).map_err(bad_reply)?);
            }
            parts.push(part);
        }
        let merged = merge_series(parts);
        if merged.len() > self.cluster.max_series {
            return Err(SourceError(format!(
                "the query matches more than {} series; narrow the selector",
                self.cluster.max_series
            )));
        }
        Ok(merged)
    }

    fn label_names(&self, matchers: &[LabelMatcher], start_ms: i64, end_ms: i64) -> Result<Vec<String>, SourceError> {
        let mut e = Enc::with_op(op::LABEL_NAMES);
        e.tenant(self.tenant);
        proto::put_filters(&mut e, &wire_filters(matchers));
        e.i64(start_ms).i64(end_ms).u64(self.cluster.max_series as u64);
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
        e.i64(start_ms).i64(end_ms).u64(self.cluster.max_series as u64);
        merge_strings(self.cluster.fan_out(&e.0, &self.status)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> proto::WireSeries {
        proto::WireSeries {
            labels: labels.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            timestamps: samples.iter().map(|s| s.0).collect(),
            values: samples.iter().map(|s| s.1).collect(),
        }
    }

    #[test]
    fn replicas_merge_into_one_series_with_each_sample_once() {
        let a = ws(&[("__name__", "m"), ("i", "1")], &[(1, 1.0), (2, 2.0), (4, 4.0)]);
        let b = ws(
            &[("__name__", "m"), ("i", "1")],
            &[(2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)],
        );
        let c = ws(&[("__name__", "m"), ("i", "2")], &[(1, 9.0)]);
        let merged = merge_series(vec![vec![a, c], vec![b]]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].timestamps, vec![1, 2, 3, 4, 5]);
        assert_eq!(merged[0].values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(merged[1].labels.get("i"), "2");
    }
}
