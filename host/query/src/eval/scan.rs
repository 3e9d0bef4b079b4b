//! Parallel, streaming reads: the shards of a selection ([`SeriesSource::select_shards`]) are
//! read on the worker threads, and each series is turned into its per-step result (or folded
//! into an aggregation) as soon as it arrives, so the raw samples of a whole selection never
//! sit in memory at once.
//!
//! [`SeriesSource::select_shards`]: crate::source::SeriesSource::select_shards

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Ctx, QueryError};
use crate::labels::LabelMatcher;
use crate::source::{SelectShard, Series};

/// Series between two deadline checks inside a shard.
const DEADLINE_EVERY: usize = 64;

/// Series per chunk when one reader feeds several workers.
const CHUNK: usize = 64;

impl Ctx<'_> {
    /// Reads the series of `matchers` over `[mint, maxt]` on up to `threads()` threads. Each
    /// worker starts with `init()` and calls `visit(state, shard, series)` for every series of
    /// the shards it takes (shards are taken in order, so `shard` lets a caller restore the
    /// source's order). Limits (series, samples, deadline) are checked as series arrive.
    /// Returns the workers' states.
    pub fn scan<S: Send>(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        init: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, usize, Series) -> Result<(), QueryError> + Sync,
    ) -> Result<Vec<S>, QueryError> {
        self.check_deadline()?;
        let mut shards = self.engine.source.select_shards(matchers, mint, maxt)?;
        if shards.len() == 1 && self.threads() > 1 {
            // A source that cannot split its reads: one thread reads, all compute.
            if let Some(shard) = shards.pop() {
                return self.scan_one_shard(shard, init, visit);
            }
        }
        let workers = self.threads().min(shards.len()).max(1);
        let queue: Mutex<std::iter::Enumerate<std::vec::IntoIter<SelectShard<'_>>>> =
            Mutex::new(shards.into_iter().enumerate());
        let failure: Mutex<Option<QueryError>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let selected = AtomicUsize::new(0);
        let work = || -> S {
            let mut state = init();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let next = match queue.lock() {
                    Ok(mut q) => q.next(),
                    Err(_) => None,
                };
                let Some((idx, shard)) = next else {
                    break;
                };
                let mut seen = 0usize;
                let result = shard(&mut |series: Series| {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    seen += 1;
                    let outcome = self
                        .count_series(&selected, &series)
                        .and_then(|_| {
                            if seen.is_multiple_of(DEADLINE_EVERY) {
                                self.check_deadline()
                            } else {
                                Ok(())
                            }
                        })
                        .and_then(|_| visit(&mut state, idx, series));
                    match outcome {
                        Ok(()) => true,
                        Err(e) => {
                            fail(&failure, &stop, e);
                            false
                        }
                    }
                });
                if let Err(e) = result {
                    fail(&failure, &stop, e.into());
                }
            }
            state
        };
        let states: Vec<S> = if workers == 1 {
            vec![work()]
        } else {
            let work = &work;
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
                let mut out = Vec::with_capacity(handles.len());
                for h in handles {
                    match h.join() {
                        Ok(s) => out.push(s),
                        Err(_) => fail(&failure, &stop, QueryError::Eval("a worker thread panicked".into())),
                    }
                }
                out
            })
        };
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        self.check_deadline()?;
        Ok(states)
    }

    /// [`Ctx::scan`] over a single shard: this thread reads it, computes the first chunk of
    /// series itself, and hands later chunks to the workers through a small bounded queue (so
    /// memory stays bounded too). Chunks are numbered in read order and passed as the `shard`
    /// index, which keeps the source's order recoverable.
    fn scan_one_shard<S: Send>(
        &self,
        shard: SelectShard<'_>,
        init: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, usize, Series) -> Result<(), QueryError> + Sync,
    ) -> Result<Vec<S>, QueryError> {
        let workers = self.threads().max(1);
        let failure: Mutex<Option<QueryError>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let selected = AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Series>)>(workers * 2);
        let rx = Mutex::new(rx);
        let work = || -> S {
            let mut state = init();
            loop {
                let msg = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => break,
                };
                let Ok((idx, chunk)) = msg else {
                    break;
                };
                for series in chunk {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let outcome = self
                        .count_series(&selected, &series)
                        .and_then(|_| visit(&mut state, idx, series));
                    if let Err(e) = outcome {
                        fail(&failure, &stop, e);
                    }
                }
                if let Err(e) = self.check_deadline() {
                    fail(&failure, &stop, e);
                }
            }
            state
        };
        let states = std::thread::scope(|scope| {
            let work = &work;
            let mut handles = Vec::new();
            // The first CHUNK series are computed right here: a small selection never pays
            // for threads. Workers start once there is more.
            let mut inline = init();
            let mut inline_seen = 0usize;
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut idx = 1usize;
            let result = shard(&mut |series: Series| {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                if inline_seen < CHUNK {
                    inline_seen += 1;
                    let outcome = self
                        .count_series(&selected, &series)
                        .and_then(|_| visit(&mut inline, 0, series));
                    if let Err(e) = outcome {
                        fail(&failure, &stop, e);
                        return false;
                    }
                    return true;
                }
                if handles.is_empty() {
                    handles.extend((0..workers).map(|_| scope.spawn(work)));
                }
                chunk.push(series);
                if chunk.len() == CHUNK {
                    if tx.send((idx, std::mem::take(&mut chunk))).is_err() {
                        return false;
                    }
                    idx += 1;
                }
                true
            });
            if !chunk.is_empty() {
                let _ = tx.send((idx, chunk));
            }
            // Closing the queue ends the workers once it is drained.
            drop(tx);
            if let Err(e) = result {
                fail(&failure, &stop, e.into());
            }
            let mut out = Vec::with_capacity(handles.len() + 1);
            out.push(inline);
            for h in handles {
                match h.join() {
                    Ok(s) => out.push(s),
                    Err(_) => fail(&failure, &stop, QueryError::Eval("a worker thread panicked".into())),
                }
            }
            out
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        self.check_deadline()?;
        Ok(states)
    }

    /// Reads the series of `matchers` and maps each with `f` (dropping `None`s) on the worker
    /// threads; the results come back in the source's order.
    pub fn scan_map<T: Send>(
        &self,
        matchers: &[LabelMatcher],
        mint: i64,
        maxt: i64,
        f: impl Fn(Series) -> Option<T> + Sync,
    ) -> Result<Vec<T>, QueryError> {
        let states = self.scan(
            matchers,
            mint,
            maxt,
            Vec::new,
            |out: &mut Vec<(usize, T)>, shard, series| {
                if let Some(t) = f(series) {
                    out.push((shard, t));
                }
                Ok(())
            },
        )?;
        let mut all: Vec<(usize, T)> = states.into_iter().flatten().collect();
        // Stable: series keep their order inside a shard.
        all.sort_by_key(|(shard, _)| *shard);
        Ok(all.into_iter().map(|(_, t)| t).collect())
    }

    /// Counts one series against the series limit (per selector) and the samples limit (per
    /// query).
    fn count_series(&self, selected: &AtomicUsize, s: &Series) -> Result<(), QueryError> {
        self.series_fetched.fetch_add(1, Ordering::Relaxed);
        if selected.fetch_add(1, Ordering::Relaxed) + 1 > self.opts().max_series {
            return Err(QueryError::TooManySeries(self.opts().max_series));
        }
        let n = s.timestamps.len();
        let total = self.samples_fetched.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.opts().max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }
}

/// Records the first failure and tells every worker to stop.
fn fail(failure: &Mutex<Option<QueryError>>, stop: &AtomicBool, e: QueryError) {
    stop.store(true, Ordering::Relaxed);
    if let Ok(mut f) = failure.lock()
        && f.is_none()
    {
        *f = Some(e);
    }
}
