//! The optional write-ahead log (`storage.wal = true`): every sample is appended here before it
//! enters the table, and a write is acknowledged only once its records are in the log file, so
//! an acknowledged sample survives `kill -9`. With a zero sync interval ([`Wal::create`]) the
//! acknowledgement also waits for the fsync (a power cut is survived too); with a non-zero one
//! ([`Wal::create_with_sync`], the storage's default of 100 ms) the fsync follows in the
//! background within that interval.
//!
//! Layout: `<data>/wal/<16 hex digits>.wal`, segments numbered in write order. A record is
//! `u32 LE payload length | u64 LE xxh64(payload) | payload`, the payload being one series of
//! one write: `u32 account | u32 project | varint label count | {varint len, name, varint len,
//! value}* | varint n | n × i64 LE timestamps | n × f64 LE values`.
//!
//! **Group commit.** Appending only copies into a memory buffer. One thread (`strata-wal`)
//! writes: whenever a position is requested ([`Wal::submit`], [`Wal::sync_to`]) it takes the
//! whole buffer (everyone's records), writes it with one `write` (and one `fdatasync` when
//! syncing each write), and wakes the waiters. Records appended while a sync runs go out together with the next one, so
//! concurrent writers share fsyncs. [`Wal::submit`] starts the write of a whole request before
//! the request's samples go into the table, so the fsync runs while the writer works and
//! [`Wal::wait`] (the acknowledgement point) mostly finds it done.
//!
//! A failed write is cut off the segment and its records go back in front of the buffer: its
//! waiters get the error, and the records are written again with the next request, so
//! positions never have holes (`durable >= pos` means everything up to `pos` is on disk).
//!
//! **Checkpoints.** [`Wal::rotate`] closes the active segment (durable) and starts a new one.
//! Once the storage has flushed the index and the table, segments older than the active one
//! hold nothing the parts lack and are deleted ([`Wal::remove_before`]).
//!
//! **Replay.** At start-up [`read_segment`] yields the records of each segment in order; a torn
//! or corrupt tail (a crash mid-write) ends that segment. Replaying a record twice is harmless:
//! exact duplicate samples are removed by searches and merges.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, StorageError};
use crate::index::Label;
use crate::tsid::Tenant;

/// Segment file suffix.
const SUFFIX: &str = ".wal";
/// Record header: length and checksum.
const HEADER: usize = 12;
/// Largest payload accepted when reading (a write of one series is far smaller).
const MAX_RECORD: usize = 256 << 20;

/// One decoded WAL record: one series' samples of one write.
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

/// The active segment file.
struct Segment {
    seq: u64,
    file: File,
    /// Bytes in the file that hold whole records (what a failed write is cut back to).
    len: u64,
    /// A failed write could not be cut off: the next write starts a new segment, so that the
    /// garbage ends this one instead of hiding the records after it from replay.
    broken: bool,
}

/// Positions are logical byte offsets over everything appended since the log was opened.
struct State {
    /// Records appended and not yet taken by the log writer.
    buf: Vec<u8>,
    /// Cleared buffers for encoding outside the lock ([`Wal::buffer`]).
    spare: Vec<Vec<u8>>,
    /// End of everything appended.
    appended: u64,
    /// The highest position a writer asked to be durable.
    requested: u64,
    /// End of what the log writer took from `buf` (written or being written).
    taken: u64,
    /// Everything below is fsynced. Records are never dropped (a failed write puts them back),
    /// so there are no holes: `durable >= pos` means every record ending at or before `pos` is
    /// on disk.
    durable: u64,
    /// Failed writes so far; a waiter that sees it change gets `last_error`.
    failures: u64,
    last_error: Option<(Option<i32>, std::io::ErrorKind, String)>,
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

/// Spare buffers kept for reuse, and the largest one kept (a huge request's buffer is freed).
const SPARE_BUFFERS: usize = 16;
const SPARE_MAX_BYTES: usize = 4 << 20;

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

/// Decodes the records of one segment's bytes, in order. Stops at the first torn or corrupt
/// record; the second value says whether that happened (bytes were left over).
pub fn read_segment(bytes: &[u8]) -> (Vec<WalRecord>, bool) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match next_record(rest) {
            Some((rec, tail)) => {
                out.push(rec);
                rest = tail;
            }
            None => return (out, true),
        }
    }
    (out, false)
}

fn next_record(src: &[u8]) -> Option<(WalRecord, &[u8])> {
    if src.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(src[..4].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(src[4..12].try_into().ok()?);
    if len > MAX_RECORD || src.len() - HEADER < len {
        return None;
    }
    let payload = &src[HEADER..HEADER + len];
    if xxhash_rust::xxh64::xxh64(payload, 0) != sum {
        return None;
    }
    Some((decode_payload(payload)?, &src[HEADER + len..]))
}

/// Decodes one record payload; `None` if it is malformed.
pub fn decode_payload(p: &[u8]) -> Option<WalRecord> {
    let mut r = Reader(p);
    let tenant = Tenant {
        account_id: u32::from_le_bytes(r.take(4)?.try_into().ok()?),
        project_id: u32::from_le_bytes(r.take(4)?.try_into().ok()?),
    };
    let nl = r.varint()?;
    let mut labels = Vec::with_capacity(nl.min(256) as usize);
    for _ in 0..nl {
        let n = r.string()?;
        let v = r.string()?;
        labels.push((n, v));
    }
    let n = r.varint()? as usize;
    if n.checked_mul(16)? != r.0.len() {
        return None;
    }
    let ts_bytes = r.take(n * 8)?;
    let timestamps = ts_bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let values =
        r.0.chunks_exact(8)
            .map(|c| f64::from_bits(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
            .collect();
    Some(WalRecord {
        tenant,
        labels,
        timestamps,
        values,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.varint()?).ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn put_varint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// Appends one framed record to `dst`.
pub fn encode_record(dst: &mut Vec<u8>, tenant: Tenant, labels: &[Label<'_>], timestamps: &[i64], values: &[f64]) {
    let start = dst.len();
    dst.extend_from_slice(&[0; HEADER]);
    dst.extend_from_slice(&tenant.account_id.to_le_bytes());
    dst.extend_from_slice(&tenant.project_id.to_le_bytes());
    put_varint(dst, labels.len() as u64);
    for l in labels {
        put_varint(dst, l.name.len() as u64);
        dst.extend_from_slice(l.name.as_bytes());
        put_varint(dst, l.value.len() as u64);
        dst.extend_from_slice(l.value.as_bytes());
    }
    let n = timestamps.len().min(values.len());
    put_varint(dst, n as u64);
    for t in &timestamps[..n] {
        dst.extend_from_slice(&t.to_le_bytes());
    }
    for v in &values[..n] {
        dst.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    let payload_len = dst.len() - start - HEADER;
    let sum = xxhash_rust::xxh64::xxh64(&dst[start + HEADER..], 0);
    dst[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    dst[start + 4..start + HEADER].copy_from_slice(&sum.to_le_bytes());
}

fn create_segment(dir: &Path, seq: u64) -> Result<File> {
    let path = segment_path(dir, seq);
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StorageError::io("cannot create", &path, e))?;
    strata_fsutil::fsync_dir(dir).map_err(|e| StorageError::io("cannot fsync", dir, e))?;
    Ok(f)
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
        let file = create_segment(dir, seq)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            sync_interval,
            state: Mutex::new(State {
                buf: Vec::with_capacity(1 << 20),
                spare: Vec::new(),
                appended: 0,
                requested: 0,
                taken: 0,
                durable: 0,
                failures: 0,
                last_error: None,
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

    /// Buffers one record (no I/O); returns the position [`Wal::sync_to`] must reach for it.
    pub fn append(&self, tenant: Tenant, labels: &[Label<'_>], timestamps: &[i64], values: &[f64]) -> u64 {
        let mut st = self.inner.state.lock();
        let before = st.buf.len();
        encode_record(&mut st.buf, tenant, labels, timestamps, values);
        st.appended += (st.buf.len() - before) as u64;
        st.appended
    }

    /// An empty buffer to encode a request's records into with [`encode_record`], outside any
    /// lock; hand it to [`Wal::submit`].
    pub fn buffer(&self) -> Vec<u8> {
        self.inner.state.lock().spare.pop().unwrap_or_default()
    }

    /// Appends `records` (whole framed records, see [`encode_record`]) and starts writing them
    /// at once, so the fsync runs while the caller does other work. Returns the position to
    /// pass to [`Wal::wait`] before acknowledging them.
    pub fn submit(&self, mut records: Vec<u8>) -> u64 {
        let mut st = self.inner.state.lock();
        st.appended += records.len() as u64;
        if st.buf.is_empty() {
            // Nobody else is waiting to be written: take the caller's buffer as it is.
            std::mem::swap(&mut st.buf, &mut records);
        } else {
            st.buf.extend_from_slice(&records);
        }
        records.clear();
        if st.spare.len() < SPARE_BUFFERS && records.capacity() <= SPARE_MAX_BYTES && records.capacity() > 0 {
            st.spare.push(records);
        }
        let pos = st.appended;
        st.requested = st.requested.max(pos);
        drop(st);
        self.inner.work.notify_one();
        pos
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

    /// Waits until everything up to `pos` (from [`Wal::submit`]) is on disk. Fails if a write
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
            self.inner.progress.wait(&mut st);
        }
    }

    /// Makes everything appended durable, then starts segment `active + 1`. Returns the new
    /// segment's number: every older segment is complete. Call it while nothing is appended
    /// (the storage holds its gate exclusively).
    pub fn rotate(&self) -> Result<u64> {
        let pos = self.appended();
        self.sync_to(pos)?;
        let mut seg = self.inner.segment.lock();
        if !self.inner.sync_interval.is_zero() {
            // The closing segment's records must be on disk before a checkpoint may rely on it.
            seg.file
                .sync_data()
                .map_err(|e| StorageError::io("cannot sync", &self.inner.dir, e))?;
        }
        let seq = seg.seq + 1;
        seg.file = create_segment(&self.inner.dir, seq)?;
        seg.len = 0;
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
        // When the oldest write not yet fsynced was made (sync interval mode only).
        let mut unsynced_since: Option<Instant> = None;
        loop {
            while st.requested <= st.taken && !st.stop {
                match unsynced_since {
                    None => self.work.wait(&mut st),
                    Some(since) => {
                        let due = since + self.sync_interval;
                        if Instant::now() >= due {
                            drop(st);
                            self.background_sync(&mut unsynced_since);
                            st = self.state.lock();
                        } else {
                            self.work.wait_until(&mut st, due);
                        }
                    }
                }
            }
            if st.requested <= st.taken {
                // Stopping, and nothing anyone waits for is left.
                drop(st);
                if unsynced_since.is_some() {
                    self.background_sync(&mut unsynced_since);
                }
                return;
            }
            let from = st.taken;
            let to = st.appended;
            let buf = std::mem::take(&mut st.buf);
            st.taken = to;
            drop(st);
            let res = self.write(&buf);
            if res.is_ok() && !self.sync_interval.is_zero() {
                unsynced_since.get_or_insert_with(Instant::now);
            }
            st = self.state.lock();
            match res {
                Ok(()) => {
                    st.durable = to;
                    let mut buf = buf;
                    buf.clear();
                    if st.buf.is_empty() {
                        // Keep the allocation for the next batch.
                        st.buf = buf;
                    } else if st.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_MAX_BYTES {
                        st.spare.push(buf);
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
            self.progress.notify_all();
        }
    }

    /// The periodic fdatasync of the sync-interval mode. A failure is counted and logged and
    /// retried at the next interval: the records are in the page cache already, and the
    /// process going on cannot make them safer than a later successful sync will.
    fn background_sync(&self, unsynced_since: &mut Option<Instant>) {
        let seg = self.segment.lock();
        match seg.file.sync_data() {
            Ok(()) => {
                *unsynced_since = None;
                metrics::counter!("strata_wal_syncs_total").increment(1);
            }
            Err(e) => {
                *unsynced_since = Some(Instant::now());
                metrics::counter!("strata_wal_write_errors_total").increment(1);
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot fsync the write-ahead log; retrying");
            }
        }
    }

    /// Appends `buf` to the active segment and fsyncs it (unless a sync interval is set); cuts
    /// a failed write off.
    fn write(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut seg = self.segment.lock();
        if seg.broken {
            let seq = seg.seq + 1;
            seg.file = create_segment(&self.dir, seq).map_err(std::io::Error::other)?;
            seg.seq = seq;
            seg.len = 0;
            seg.broken = false;
        }
        let sync_now = self.sync_interval.is_zero();
        let res = (&seg.file)
            .write_all(buf)
            .and_then(|()| if sync_now { seg.file.sync_data() } else { Ok(()) });
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
                if seg.file.set_len(len).and_then(|()| seg.file.sync_data()).is_err() {
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
mod tests {
    use super::*;

    fn labels() -> Vec<Label<'static>> {
        vec![
            Label {
                name: "__name__",
                value: "up",
            },
            Label {
                name: "job",
                value: "a",
            },
        ]
    }

    #[test]
    fn records_round_trip_and_torn_tails_stop_reading() {
        let mut buf = Vec::new();
        let t = Tenant {
            account_id: 7,
            project_id: 9,
        };
        encode_record(&mut buf, t, &labels(), &[1, 2], &[0.5, f64::NAN]);
        let first_len = buf.len();
        encode_record(&mut buf, Tenant::default(), &labels(), &[3], &[1.0]);
        let (recs, torn) = read_segment(&buf);
        assert!(!torn);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].tenant, t);
        assert_eq!(recs[0].labels[1], ("job".to_string(), "a".to_string()));
        assert_eq!(recs[0].timestamps, vec![1, 2]);
        assert!(recs[0].values[1].is_nan());
        assert_eq!(recs[1].values, vec![1.0]);
        for cut in 1..buf.len() {
            let (recs, torn) = read_segment(&buf[..cut]);
            assert_eq!(recs.len(), usize::from(cut >= first_len), "cut at {cut}");
            assert_eq!(torn, cut != first_len, "cut at {cut}");
        }
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (recs, torn) = read_segment(&bad);
        assert_eq!(recs.len(), 1);
        assert!(torn);
    }

    #[test]
    fn group_commit_rotation_and_removal() {
        group_commit_rotation_and_removal_with(Duration::ZERO);
    }

    /// The sync-interval mode gives the same answers: records are in the file when `sync_to`
    /// returns (what survives the process being killed), and rotation closes a segment whole.
    #[test]
    fn group_commit_rotation_and_removal_with_a_sync_interval() {
        group_commit_rotation_and_removal_with(Duration::from_millis(30));
    }

    fn group_commit_rotation_and_removal_with(sync: Duration) {
        let dir = tempfile::tempdir().unwrap();
        let wal = std::sync::Arc::new(Wal::create_with_sync(dir.path(), 1, sync).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let pos = wal.append(Tenant::default(), &labels(), &[i * 1000 + j], &[1.0]);
                        wal.sync_to(pos).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let seq = wal.rotate().unwrap();
        assert_eq!(seq, 2);
        let pos = wal.append(Tenant::default(), &labels(), &[5], &[5.0]);
        wal.sync_to(pos).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
        let (recs, torn) = read_segment(&std::fs::read(segment_path(dir.path(), 1)).unwrap());
        assert!(!torn);
        assert_eq!(recs.len(), 400);
        let (recs, _) = read_segment(&std::fs::read(segment_path(dir.path(), 2)).unwrap());
        assert_eq!(recs.len(), 1);
        assert_eq!(wal.remove_before(seq).unwrap(), 1);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2]);
    }

    #[test]
    fn submitted_batches_are_durable_when_waited_for_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = std::sync::Arc::new(Wal::create(dir.path(), 1).unwrap());
        let threads: Vec<_> = (0..4i64)
            .map(|i| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for j in 0..40i64 {
                        let mut buf = wal.buffer();
                        assert!(buf.is_empty());
                        // Two records per batch: they must stay adjacent and in order.
                        encode_record(&mut buf, Tenant::default(), &labels(), &[i * 1000 + j], &[0.0]);
                        encode_record(&mut buf, Tenant::default(), &labels(), &[i * 1000 + j], &[1.0]);
                        let pos = wal.submit(buf);
                        wal.wait(pos).unwrap();
                        // Everything up to `pos` is in the file now.
                        let on_disk = std::fs::metadata(segment_path(wal.dir(), 1)).unwrap().len();
                        assert!(on_disk >= pos, "{on_disk} < {pos}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // A per-record append mixed in, made durable with sync_to.
        let pos = wal.append(Tenant::default(), &labels(), &[99], &[9.0]);
        wal.sync_to(pos).unwrap();
        assert_eq!(wal.active_segment_bytes(), pos);
        drop(wal);
        let (recs, torn) = read_segment(&std::fs::read(segment_path(dir.path(), 1)).unwrap());
        assert!(!torn);
        assert_eq!(recs.len(), 4 * 40 * 2 + 1);
        for pair in recs[..320].chunks(2) {
            assert_eq!(pair[0].timestamps, pair[1].timestamps);
            assert_eq!((pair[0].values[0], pair[1].values[0]), (0.0, 1.0));
        }
        let mut per_writer = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for r in recs[..320].iter().step_by(2) {
            per_writer[(r.timestamps[0] / 1000) as usize].push(r.timestamps[0] % 1000);
        }
        for seen in per_writer {
            assert_eq!(seen, (0..40).collect::<Vec<_>>());
        }
        assert_eq!(recs[320].values, vec![9.0]);
    }
}
