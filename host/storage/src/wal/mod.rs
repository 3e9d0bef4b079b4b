//! The optional write-ahead log (`storage.wal = true`): every sample is appended here before it
//! enters the table, and a write is acknowledged only once its records are in the log file, so
//! an acknowledged sample survives `kill -9`. With a zero sync interval ([`Wal::create`]) the
//! acknowledgement also waits for the fsync (a power cut is survived too); with a non-zero one
//! ([`Wal::create_with_sync`], the storage's default of 100 ms) the fsync follows in the
//! background within that interval.
//!
//! Layout: `<data>/wal/<16 hex digits>.wal`, segments numbered in write order. The record
//! format (version 2: a segment header, one record per write, each series' labels written
//! once per segment and referred to by a small number afterwards) is described in
//! [`mod@format`]; segments of version 1 (one record per series with its full labels, see
//! [`v1`]) are still read at replay, so an upgrade with a non-empty log loses nothing.
//!
//! **Group commit.** [`Wal::append_batch`] encodes a whole write into the shared buffer under
//! the log's lock (encoding and assigning series refs in log order is what keeps every record
//! after the definitions it uses) and wakes the log writer. One thread (`strata-wal`) writes:
//! it takes the whole buffer (everyone's records), writes it with one `write` (and one
//! `fdatasync` when syncing each write), and wakes the waiters ([`Wal::wait`]). Records
//! appended while a write runs go out together with the next one. A waiter that finds nobody
//! writing and its records still buffered (the thread has not been scheduled yet, which on a
//! busy machine takes longer than the write) takes the buffer and writes it itself.
//!
//! A failed write is cut off the segment and its records go back in front of the buffer: its
//! waiters get the error, and the records are written again with the next request, so
//! positions never have holes (`durable >= pos` means everything up to `pos` is on disk), and
//! a definition cut off with a failed write is written again before any record that uses it.
//! If the cut itself fails, the next write starts a new segment that goes on with the same
//! refs; the reader carries definitions across segments for that case.
//!
//! **Checkpoints.** [`Wal::rotate`] closes the active segment (durable) and starts a new one
//! with no series defined. Once the storage has flushed the index and the table, segments
//! older than the active one hold nothing the parts lack and are deleted
//! ([`Wal::remove_before`]).
//!
//! **Replay.** At start-up [`visit_segment`] reads each segment in order; a torn or corrupt
//! tail (a crash mid-write) ends that segment. Replaying a record twice is harmless: exact
//! duplicate samples are removed by searches and merges.

pub mod format;
pub mod v1;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

pub use self::format::{Batch, Definitions, ReplayState, SegmentVisitor, visit_segment};
use self::format::{SeriesRefs, encode_write, segment_header};
use crate::error::{Result, StorageError};
use crate::tsid::Tenant;

/// Segment file suffix.
const SUFFIX: &str = ".wal";

/// One decoded series of one write (what [`read_segment`] returns).
#[derive(Clone, Debug, PartialEq)]
pub struct WalRecord {
    /// The tenant.
    pub tenant: Tenant,
    /// Labels as (name, value).
    pub labels: Vec<(String, String)>,
    /// Timestamps in ms.
    pub timestamps: Vec<i64>,
    /// Values, one per timestamp.
    pub values: Vec<f64>,
}

/// What [`Wal::append_batch`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Append {
    /// Logged; wait for this position with [`Wal::wait`] before acknowledging.
    Logged(u64),
    /// Nothing was logged: the series at these indexes of the batch are not defined in the
    /// active segment and were not in the definitions. Add them and call again.
    Undefined(Vec<usize>),
}

/// The active segment file.
struct Segment {
    seq: u64,
    file: File,
    /// Bytes in the file that hold the header and whole records (what a failed write is cut
    /// back to).
    len: u64,
    /// A failed write could not be cut off: the next write starts a new segment, so that the
    /// garbage ends this one instead of hiding the records after it from replay.
    broken: bool,
}

/// Positions are logical byte offsets over everything appended since the log was opened.
struct State {
    /// Records appended and not yet taken by the log writer.
    buf: Vec<u8>,
    /// Series defined in the active segment (including records still in `buf`).
    refs: SeriesRefs,
    /// End of everything appended.
    appended: u64,
    /// The highest position a writer asked to be durable.
    requested: u64,
    /// End of what the log writer took from `buf` (written or being written).
    taken: u64,
    /// Everything below is written (and fsynced without a sync interval). Records are never
    /// dropped (a failed write puts them back), so there are no holes: `durable >= pos` means
    /// every record ending at or before `pos` is in the file.
    durable: u64,
    /// Failed writes so far; a waiter that sees it change gets `last_error`.
    failures: u64,
    last_error: Option<(Option<i32>, std::io::ErrorKind, String)>,
    /// Successful writes so far (tells a background fsync whether a write slipped in).
    writes: u64,
    /// When the oldest write not yet fsynced was made (sync interval mode only).
    unsynced_since: Option<Instant>,
    stop: bool,
}

struct Inner {
    dir: PathBuf,
    /// Zero: every write is fdatasync'ed before its waiters return (survives power loss).
    /// Otherwise waiters return once their records are written to the file (in the kernel's
    /// page cache: they survive the process being killed) and the log writer fdatasyncs at most
    /// this long after a write (a power loss can cost up to this much).
    sync_interval: Duration,
    state: Mutex<State>,
    /// Wakes the log writer: a position was requested, or stop.
    work: Condvar,
    /// Wakes waiters: `durable` or `failures` changed.
    progress: Condvar,
    /// Held by the log writer while it writes and syncs, and by rotation.
    segment: Mutex<Segment>,
    /// Tests: how the next writes fail.
    #[cfg(test)]
    faults: Mutex<tests::Faults>,
}

/// The log of one data directory. `Send + Sync`. A thread (`strata-wal`) writes and fsyncs
/// whatever was requested; it stops when the log is dropped.
pub struct Wal {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// The largest write buffer kept for reuse (a huge request's buffer is freed).
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Sequence numbers of the segments in `dir`, ascending (a missing directory has none).
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io("cannot list", dir, e)),
    };
    let mut v: Vec<u64> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let hex = n.strip_suffix(SUFFIX)?;
            (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016X}{SUFFIX}"))
}

/// Decodes one segment's bytes (any version, on its own: no definitions carried in) into
/// records, in order. Stops at the first torn or corrupt record; the second value says whether
/// that happened. For tools and tests; replay uses [`visit_segment`].
pub fn read_segment(bytes: &[u8]) -> (Vec<WalRecord>, bool) {
    let mut out = Vec::new();
    let mut state = ReplayState::default();
    let torn = visit_segment(Path::new(""), bytes, &mut state, &mut |tenant, labels, ts, vals| {
        out.push(WalRecord {
            tenant,
            labels: labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            timestamps: ts.to_vec(),
            values: vals.to_vec(),
        });
        Ok(())
    })
    .unwrap_or(true);
    (out, torn)
}

/// Creates segment `seq` with its header; returns the file and its length. The header is
/// synced with the first records (a segment cut short before that reads as empty).
fn create_segment(dir: &Path, seq: u64) -> Result<(File, u64)> {
    let path = segment_path(dir, seq);
    // Appending: a write always lands at the end, also after a failed write was cut off.
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StorageError::io("cannot create", &path, e))?;
    let header = segment_header();
    f.set_len(0)
        .and_then(|()| f.write_all(&header))
        .map_err(|e| StorageError::io("cannot write", &path, e))?;
    strata_fsutil::fsync_dir(dir).map_err(|e| StorageError::io("cannot fsync", dir, e))?;
    Ok((f, header.len() as u64))
}

impl Wal {
    /// Starts a new, empty segment numbered `seq` in `dir` (created if needed) and the thread
    /// that writes it. Older segments are left alone (replay them first).
    pub fn create(dir: &Path, seq: u64) -> Result<Wal> {
        Self::create_with_sync(dir, seq, Duration::ZERO)
    }

    /// [`Wal::create`] with a sync interval: zero fsyncs before every acknowledgement; a longer
    /// one acknowledges once records are written to the file and fsyncs in the background at
    /// most `sync_interval` later (see `Inner::sync_interval`).
    pub fn create_with_sync(dir: &Path, seq: u64, sync_interval: Duration) -> Result<Wal> {
        strata_fsutil::create_dir_all_durable(dir).map_err(|e| StorageError::io("cannot create", dir, e))?;
        let (file, len) = create_segment(dir, seq)?;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            sync_interval,
            state: Mutex::new(State {
                buf: Vec::with_capacity(1 << 20),
                refs: SeriesRefs::default(),
                appended: 0,
                requested: 0,
                taken: 0,
                durable: 0,
                failures: 0,
                last_error: None,
                writes: 0,
                unsynced_since: None,
                stop: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            segment: Mutex::new(Segment {
                seq,
                file,
                len,
                broken: false,
            }),
            #[cfg(test)]
            faults: Mutex::new(tests::Faults::default()),
        });
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("strata-wal".into())
            .spawn(move || for_thread.run())
            .map_err(|e| StorageError::Unavailable(format!("cannot start the WAL thread: {e}")))?;
        Ok(Wal {
            inner,
            thread: Some(thread),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Encodes one write (all of `batch`, for `tenant`) into the log's buffer and starts
    /// writing it, so the write runs while the caller does other work. Series that the active
    /// segment has not defined yet must be in `defs` (their labels); if some are not, nothing
    /// is logged and their indexes come back ([`Append::Undefined`]). Each call is one
    /// checksummed record: replay sees all of it or none.
    ///
    /// With `start` false the record is only buffered: it goes out with the next write that
    /// anyone requests (for callers that log many small writes and then wait once).
    pub fn append_batch(&self, tenant: Tenant, batch: &Batch, defs: &Definitions, start: bool) -> Append {
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        let before = st.buf.len();
        if let Err(missing) = encode_write(&mut st.buf, &mut st.refs, tenant, batch, defs) {
            return Append::Undefined(missing);
        }
        st.appended += (st.buf.len() - before) as u64;
        let pos = st.appended;
        if start {
            st.requested = st.requested.max(pos);
            self.inner.work.notify_one();
        }
        Append::Logged(pos)
    }

    /// Series defined in the active segment so far.
    pub fn defined_series(&self) -> usize {
        self.inner.state.lock().refs.len()
    }

    /// Everything appended so far.
    pub fn appended(&self) -> u64 {
        self.inner.state.lock().appended
    }

    /// Bytes in the active segment, written or buffered (a size trigger for checkpoints).
    pub fn active_segment_bytes(&self) -> u64 {
        let pending = {
            let st = self.inner.state.lock();
            st.appended - st.durable
        };
        self.inner.segment.lock().len + pending
    }

    /// Returns once every record up to `pos` is on disk, or written to the file when a sync
    /// interval is set (group commit, see the module docs).
    pub fn sync_to(&self, pos: u64) -> Result<()> {
        {
            let mut st = self.inner.state.lock();
            if st.durable >= pos {
                return Ok(());
            }
            st.requested = st.requested.max(pos);
        }
        self.inner.work.notify_one();
        self.wait(pos)
    }

    /// Waits until everything up to `pos` (from [`Wal::append_batch`]) is on disk. Fails if a write
    /// fails meanwhile; the records stay buffered and are written again with later ones.
    pub fn wait(&self, pos: u64) -> Result<()> {
        let mut st = self.inner.state.lock();
        let failures = st.failures;
        loop {
            if st.durable >= pos {
                return Ok(());
            }
            if st.failures != failures || st.stop {
                return Err(self.inner.error(&st));
            }
            if st.taken == st.durable && st.taken < pos {
                // Nobody is writing and these records are not taken yet (the log thread has
                // not run): write them here.
                st.requested = st.requested.max(pos);
                st = self.inner.write_taken(st);
                continue;
            }
            self.inner.progress.wait(&mut st);
        }
    }

    /// Makes everything appended durable, then starts segment `active + 1` with no series
    /// defined. Returns the new segment's number: every older segment is complete. Call it
    /// while nothing is appended (the storage holds its gate exclusively); records appended
    /// meanwhile anyway are written out before the switch.
    pub fn rotate(&self) -> Result<u64> {
        let mut seg = loop {
            let pos = self.appended();
            self.sync_to(pos)?;
            let seg = self.inner.segment.lock();
            let mut st = self.inner.state.lock();
            if st.appended == st.durable {
                // Nothing buffered refers to this segment's refs: the next record defines
                // whatever it uses in the new one.
                st.refs.reset();
                break seg;
            }
        };
        if !self.inner.sync_interval.is_zero() {
            // The closing segment's records must be on disk before a checkpoint may rely on it.
            seg.file
                .sync_data()
                .map_err(|e| StorageError::io("cannot sync", &self.inner.dir, e))?;
        }
        let seq = seg.seq + 1;
        (seg.file, seg.len) = create_segment(&self.inner.dir, seq)?;
        seg.seq = seq;
        seg.broken = false;
        Ok(seq)
    }

    /// Deletes the segments numbered below `seq`.
    pub fn remove_before(&self, seq: u64) -> Result<usize> {
        remove_segments_before(&self.inner.dir, seq)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.inner.state.lock().stop = true;
        self.inner.work.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    /// The log writer: takes everything appended whenever a position is requested, writes it
    /// with one `write` and one `fdatasync`. Records appended while a sync runs go out together
    /// with the next one (group commit).
    fn run(&self) {
        let mut st = self.state.lock();
        loop {
            // Idle while nothing is requested, or while a waiter writes (`taken > durable`).
            while (st.requested <= st.taken || st.taken > st.durable) && !st.stop {
                match st.unsynced_since {
                    None => self.work.wait(&mut st),
                    Some(since) => {
                        let due = since + self.sync_interval;
                        if Instant::now() >= due {
                            let writes = st.writes;
                            drop(st);
                            let synced = self.background_sync();
                            st = self.state.lock();
                            // Writes made while syncing may not be covered: sync again later.
                            st.unsynced_since = (!synced || st.writes != writes).then(Instant::now);
                        } else {
                            self.work.wait_until(&mut st, due);
                        }
                    }
                }
            }
            if st.requested <= st.taken {
                // Stopping, and nothing anyone waits for is left.
                let unsynced = st.unsynced_since.is_some();
                drop(st);
                if unsynced {
                    self.background_sync();
                }
                return;
            }
            st = self.write_taken(st);
        }
    }

    /// Takes everything appended, writes it with one `write` (and `fdatasync` without a sync
    /// interval), and wakes the waiters. Called by the log thread, or by a waiter that finds
    /// the log idle with its records not yet taken (it writes them itself instead of waiting
    /// for the thread to be scheduled, which on a busy machine costs more than the write).
    /// Requires `taken == durable` (nobody else writing).
    fn write_taken<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let from = st.taken;
        let to = st.appended;
        let buf = std::mem::take(&mut st.buf);
        st.taken = to;
        drop(st);
        let res = self.write(&buf);
        st = self.state.lock();
        match res {
            Ok(()) => {
                st.durable = to;
                st.writes += 1;
                if !self.sync_interval.is_zero() && st.unsynced_since.is_none() {
                    st.unsynced_since = Some(Instant::now());
                    // The log thread schedules the background fsync.
                    self.work.notify_one();
                }
                let mut buf = buf;
                buf.clear();
                if st.buf.is_empty() && buf.capacity() <= KEEP_BUFFER_BYTES {
                    // Keep the allocation for the next batch.
                    st.buf = buf;
                }
            }
            Err(e) => {
                // Put the records back in front of the newer ones: positions stay
                // contiguous, and the next request writes them again. Waiters up to here
                // get the error; nobody retries until asked.
                let mut back = buf;
                back.extend_from_slice(&st.buf);
                st.buf = back;
                st.taken = from;
                st.requested = from;
                st.failures += 1;
                st.last_error = Some((e.raw_os_error(), e.kind(), e.to_string()));
                metrics::counter!("strata_wal_write_errors_total").increment(1);
            }
        }
        if st.requested > st.taken {
            // Requested while this write ran.
            self.work.notify_one();
        }
        self.progress.notify_all();
        st
    }

    /// The periodic fdatasync of the sync-interval mode. A failure is counted and logged and
    /// retried at the next interval: the records are in the page cache already, and the
    /// process going on cannot make them safer than a later successful sync will.
    /// Returns whether it succeeded.
    fn background_sync(&self) -> bool {
        let seg = self.segment.lock();
        match seg.file.sync_data() {
            Ok(()) => {
                metrics::counter!("strata_wal_syncs_total").increment(1);
                true
            }
            Err(e) => {
                metrics::counter!("strata_wal_write_errors_total").increment(1);
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot fsync the write-ahead log; retrying");
                false
            }
        }
    }

    /// Appends `buf` to the active segment and fsyncs it (unless a sync interval is set); cuts
    /// a failed write off.
    fn write(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut seg = self.segment.lock();
        if seg.broken {
            // Goes on with the refs of the segment before (see the module docs).
            let seq = seg.seq + 1;
            (seg.file, seg.len) = create_segment(&self.dir, seq).map_err(std::io::Error::other)?;
            seg.seq = seq;
            seg.broken = false;
        }
        let sync_now = self.sync_interval.is_zero();
        #[cfg(test)]
        let res = self.faults.lock().write(&seg.file, buf);
        #[cfg(not(test))]
        let res = (&seg.file).write_all(buf);
        let res = res.and_then(|()| if sync_now { seg.file.sync_data() } else { Ok(()) });
        match res {
            Ok(()) => {
                seg.len += buf.len() as u64;
                if sync_now {
                    metrics::counter!("strata_wal_syncs_total").increment(1);
                }
                metrics::counter!("strata_wal_bytes_total").increment(buf.len() as u64);
                Ok(())
            }
            Err(e) => {
                // Cut the partial write off so later records stay readable; if even that
                // fails, later records go to a new segment.
                let len = seg.len;
                #[cfg(test)]
                let cut = self.faults.lock().cut(&seg.file, len);
                #[cfg(not(test))]
                let cut = seg.file.set_len(len);
                if cut.and_then(|()| seg.file.sync_data()).is_err() {
                    seg.broken = true;
                }
                Err(e)
            }
        }
    }

    /// The error a waiter gets after a failed write.
    fn error(&self, st: &State) -> StorageError {
        let source = match &st.last_error {
            Some((Some(code), _, _)) => std::io::Error::from_raw_os_error(*code),
            Some((None, kind, msg)) => std::io::Error::new(*kind, msg.clone()),
            None => std::io::Error::other("the write-ahead log is closed"),
        };
        StorageError::io("cannot write", &self.dir, source)
    }
}

/// Deletes the segments in `dir` numbered below `seq`; returns how many.
pub fn remove_segments_before(dir: &Path, seq: u64) -> Result<usize> {
    let mut n = 0;
    for s in list_segments(dir)?.into_iter().filter(|&s| s < seq) {
        let p = segment_path(dir, s);
        std::fs::remove_file(&p).map_err(|e| StorageError::io("cannot remove", &p, e))?;
        n += 1;
    }
    if n > 0 {
        strata_fsutil::fsync_dir(dir).map_err(|e| StorageError::io("cannot fsync", dir, e))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
