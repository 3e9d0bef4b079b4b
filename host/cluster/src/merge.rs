//! Streaming merge of the search streams of several storage nodes.
//!
//! Every node streams its series sorted by a group key (the label-derived part of the TSID:
//! metric name, job and instance hashes), so the copies of a replicated series, which have
//! the same labels and hence the same key, arrive at about the same point of every stream.
//! The merge repeatedly takes the smallest key at the front of all streams, collects every
//! series with that key from every node, merges series with equal labels into one (a
//! timestamp present on several nodes counts once) and hands them on. Memory is bounded by a
//! few blocks per node plus one key group, not by the size of the answer.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Receiver;

use strata_query::{Labels, Series, SourceError};

use crate::client::CallError;
use crate::proto::{self, Dec, ProtoError, WireSeries};

/// The sort key of a series in a search stream.
pub type GroupKey = (u64, u64);

/// A series' samples while merging: timestamps and values.
type Samples = (Vec<i64>, Vec<f64>);

/// What a node's reader thread passes to the merge.
pub enum NodeMsg {
    /// The next block of series, in key order.
    Block(Vec<(GroupKey, WireSeries)>),
    /// The node failed; its stream ends here.
    Failed(CallError),
}

/// Decodes one search block body (after the status and `last` bytes).
pub fn decode_block(body: &[u8]) -> Result<Vec<(GroupKey, WireSeries)>, ProtoError> {
    let mut d = Dec::new(body);
    let n = d.count(24)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let key = (d.u64()?, d.u64()?);
        out.push((key, proto::get_series(&mut d)?));
    }
    if !d.is_done() {
        return Err(ProtoError::Malformed("trailing bytes after a search block".into()));
    }
    Ok(out)
}

/// How the merge went, for the partial-response decision.
#[derive(Debug, Default)]
pub struct MergeOutcome {
    /// Nodes whose stream failed (unreachable, timed out, read-only).
    pub failed: usize,
    /// The last such failure.
    pub last_error: String,
    /// The consumer stopped the merge early.
    pub stopped: bool,
}

struct Cursor {
    rx: Receiver<NodeMsg>,
    block: VecDeque<(GroupKey, WireSeries)>,
    done: bool,
    last: Option<GroupKey>,
}

impl Cursor {
    /// The key at the front of this stream, fetching the next block when needed.
    fn front(&mut self, outcome: &mut MergeOutcome) -> Result<Option<GroupKey>, SourceError> {
        while self.block.is_empty() && !self.done {
            match self.rx.recv() {
                Ok(NodeMsg::Block(b)) => self.block = b.into(),
                Ok(NodeMsg::Failed(CallError::Remote { addr, message })) => {
                    return Err(SourceError(format!("storage node {addr}: {message}")));
                }
                Ok(NodeMsg::Failed(err)) => {
                    tracing::warn!("select fan-out: {err}");
                    metrics::counter!("strata_cluster_select_node_failures_total").increment(1);
                    outcome.failed += 1;
                    outcome.last_error = err.to_string();
                    self.done = true;
                }
                // The reader finished its stream.
                Err(_) => self.done = true,
            }
        }
        let Some(&(key, _)) = self.block.front() else {
            return Ok(None);
        };
        if self.last.is_some_and(|last| key < last) {
            return Err(SourceError(
                "a storage node sent search results out of order; is it running another version?".into(),
            ));
        }
        self.last = Some(key);
        Ok(Some(key))
    }
}

/// Merges two sorted sample runs; at equal timestamps the first run's sample is kept.
pub fn merge_samples(a: (&[i64], &[f64]), b: (&[i64], &[f64])) -> (Vec<i64>, Vec<f64>) {
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

/// Merges the streams behind `streams` into `emit` (false stops the merge). A node that
/// reports an error fails the merge; a node that fails otherwise is counted in the outcome.
pub fn merge_streams(
    streams: Vec<Receiver<NodeMsg>>,
    emit: &mut dyn FnMut(Series) -> bool,
) -> Result<MergeOutcome, SourceError> {
    let mut cursors: Vec<Cursor> = streams
        .into_iter()
        .map(|rx| Cursor {
            rx,
            block: VecDeque::new(),
            done: false,
            last: None,
        })
        .collect();
    let mut outcome = MergeOutcome::default();
    loop {
        let mut min: Option<GroupKey> = None;
        for c in &mut cursors {
            if let Some(k) = c.front(&mut outcome)? {
                min = Some(min.map_or(k, |m| m.min(k)));
            }
        }
        let Some(key) = min else {
            return Ok(outcome);
        };
        // Every series with this key, from every node, merged by labels.
        let mut group: HashMap<Vec<(String, String)>, Samples> = HashMap::new();
        for c in &mut cursors {
            while c.front(&mut outcome)? == Some(key) {
                let Some((_, s)) = c.block.pop_front() else { break };
                match group.get_mut(&s.labels) {
                    Some(existing) => {
                        *existing = merge_samples((&existing.0, &existing.1), (&s.timestamps, &s.values));
                    }
                    None => {
                        group.insert(s.labels, (s.timestamps, s.values));
                    }
                }
            }
        }
        let mut merged: Vec<Series> = group
            .into_iter()
            .map(|(labels, (timestamps, values))| Series {
                labels: Labels::from_pairs(labels),
                timestamps,
                values,
            })
            .collect();
        merged.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in merged {
            if !emit(s) {
                outcome.stopped = true;
                return Ok(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::*;
    use crate::proto::{Enc, put_series};

    fn ws(inst: &str, samples: &[(i64, f64)]) -> WireSeries {
        WireSeries {
            labels: vec![("__name__".into(), "m".into()), ("instance".into(), inst.into())],
            timestamps: samples.iter().map(|s| s.0).collect(),
            values: samples.iter().map(|s| s.1).collect(),
        }
    }

    fn stream(blocks: Vec<Vec<(GroupKey, WireSeries)>>, fail: Option<CallError>) -> Receiver<NodeMsg> {
        let (tx, rx) = sync_channel(blocks.len() + 1);
        for b in blocks {
            tx.send(NodeMsg::Block(b)).unwrap();
        }
        if let Some(e) = fail {
            tx.send(NodeMsg::Failed(e)).unwrap();
        }
        rx
    }

    fn collect(streams: Vec<Receiver<NodeMsg>>) -> (Vec<Series>, MergeOutcome) {
        let mut out = Vec::new();
        let outcome = merge_streams(streams, &mut |s| {
            out.push(s);
            true
        })
        .unwrap();
        (out, outcome)
    }

    #[test]
    fn replicas_merge_once_across_blocks_and_nodes() {
        // Node A has keys 1, 2 (the key-2 group split over two blocks); node B has 2, 3.
        let a = stream(
            vec![
                vec![
                    ((0, 1), ws("a", &[(1, 1.0), (2, 2.0)])),
                    ((0, 2), ws("b1", &[(1, 1.0)])),
                ],
                vec![((0, 2), ws("b2", &[(1, 5.0), (3, 3.0)]))],
            ],
            None,
        );
        let b = stream(
            vec![vec![
                ((0, 2), ws("b2", &[(2, 4.0), (3, 3.0)])),
                ((0, 3), ws("c", &[(9, 9.0)])),
            ]],
            None,
        );
        let (out, outcome) = collect(vec![a, b]);
        let names: Vec<&str> = out.iter().map(|s| s.labels.get("instance")).collect();
        assert_eq!(names, ["a", "b1", "b2", "c"]);
        assert_eq!(out[2].timestamps, vec![1, 2, 3]);
        assert_eq!(out[2].values, vec![5.0, 4.0, 3.0]);
        assert_eq!(outcome.failed, 0);
    }

    #[test]
    fn failures_are_counted_or_fail_the_merge_and_order_is_checked() {
        let unreachable = CallError::Unavailable {
            addr: "n1".into(),
            source: ProtoError::Malformed("gone".into()),
        };
        let a = stream(vec![vec![((0, 1), ws("a", &[(1, 1.0)]))]], Some(unreachable));
        let b = stream(vec![vec![((0, 5), ws("b", &[(1, 1.0)]))]], None);
        let (out, outcome) = collect(vec![a, b]);
        assert_eq!(out.len(), 2);
        assert_eq!(outcome.failed, 1);

        let remote = CallError::Remote {
            addr: "n2".into(),
            message: "too many series".into(),
        };
        let a = stream(vec![], Some(remote));
        let err = merge_streams(vec![a], &mut |_| true).unwrap_err();
        assert!(err.0.contains("too many series"), "{err}");

        let a = stream(
            vec![vec![((0, 5), ws("a", &[(1, 1.0)])), ((0, 4), ws("b", &[(1, 1.0)]))]],
            None,
        );
        assert!(merge_streams(vec![a], &mut |_| true).is_err());
    }

    #[test]
    fn the_consumer_can_stop_early() {
        let a = stream(
            vec![vec![((0, 1), ws("a", &[(1, 1.0)])), ((0, 2), ws("b", &[(1, 1.0)]))]],
            None,
        );
        let mut seen = 0;
        let outcome = merge_streams(vec![a], &mut |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert!(outcome.stopped);
        assert_eq!(seen, 1);
    }

    #[test]
    fn blocks_decode_and_reject_garbage() {
        let mut e = Enc::default();
        e.u32(1).u64(7).u64(8);
        put_series(&mut e, [("__name__", "m")].into_iter(), &[1], &[2.0]);
        let block = decode_block(&e.0).unwrap();
        assert_eq!(block[0].0, (7, 8));
        e.u8(0);
        assert!(decode_block(&e.0).is_err());
        assert!(decode_block(&[0, 0, 0, 9]).is_err());
    }
}
