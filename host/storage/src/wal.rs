//! The optional write-ahead log (`storage.wal = true`): every sample is appended here before it
//! enters the table, and a write is acknowledged only once its records are fsynced, so an
//! acknowledged sample survives `kill -9` or a power cut.
//!
//! Layout: `<data>/wal/<16 hex digits>.wal`, segments numbered in write order. A record is
//! `u32 LE payload length | u64 LE xxh64(payload) | payload`, the payload being one series of
//! one write: `u32 account | u32 project | varint label count | {varint len, name, varint len,
//! value}* | varint n | n × i64 LE timestamps | n × f64 LE values`.
//!
//! **Group commit.** Appends only copy into a memory buffer. [`Wal::sync_to`] makes a position
//! durable: the first waiter becomes the leader, writes the whole buffer (everyone's records) and
//! fsyncs once; writers that queued behind it find their position already synced. Concurrent
//! writers therefore share fsyncs, and a lone writer pays one fsync per request.
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
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

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

struct Active {
    seq: u64,
    file: File,
    /// Bytes in the segment file (written, maybe not yet synced).
    file_len: u64,
    buf: Vec<u8>,
    /// Logical bytes appended since open, across segments.
    appended: u64,
}

/// The log of one data directory. `Send + Sync`.
pub struct Wal {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Held by the leader that writes and fsyncs; also by rotation.
    sync_lock: Mutex<()>,
    synced: AtomicU64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

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
    /// Starts a new, empty segment numbered `seq` in `dir` (created if needed). Older segments
    /// are left alone (replay them first).
    pub fn create(dir: &Path, seq: u64) -> Result<Wal> {
        strata_fsutil::create_dir_all_durable(dir).map_err(|e| StorageError::io("cannot create", dir, e))?;
        let file = create_segment(dir, seq)?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Wal {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active {
                seq,
                file,
                file_len,
                buf: Vec::with_capacity(1 << 20),
                appended: 0,
            }),
            sync_lock: Mutex::new(()),
            synced: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Buffers one record (no I/O); returns the position [`Wal::sync_to`] must reach for it.
    pub fn append(&self, tenant: Tenant, labels: &[Label<'_>], timestamps: &[i64], values: &[f64]) -> u64 {
        let mut a = self.active.lock();
        let before = a.buf.len();
        encode_record(&mut a.buf, tenant, labels, timestamps, values);
        a.appended += (a.buf.len() - before) as u64;
        a.appended
    }

    /// Everything appended so far.
    pub fn appended(&self) -> u64 {
        self.active.lock().appended
    }

    /// Bytes written to the active segment (a size trigger for checkpoints).
    pub fn active_segment_bytes(&self) -> u64 {
        let a = self.active.lock();
        a.file_len + a.buf.len() as u64
    }

    /// Returns once every record up to `pos` is on disk (group commit, see the module docs).
    pub fn sync_to(&self, pos: u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) >= pos {
            return Ok(());
        }
        let _leader = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= pos {
            return Ok(());
        }
        self.write_and_sync()
    }

    /// Writes the buffer to the active segment and fsyncs it. Call with `sync_lock` held.
    fn write_and_sync(&self) -> Result<()> {
        let (buf, end, file, at) = {
            let mut a = self.active.lock();
            let buf = std::mem::take(&mut a.buf);
            let file = a.file.try_clone();
            (buf, a.appended, file, a.file_len)
        };
        let path = segment_path(&self.dir, self.active.lock().seq);
        let res = file
            .and_then(|mut f| {
                f.write_all(&buf)?;
                f.sync_data()?;
                Ok(f)
            })
            .map_err(|e| StorageError::io("cannot write", &path, e));
        match res {
            Ok(_) => {
                self.active.lock().file_len = at + buf.len() as u64;
                self.synced.store(end, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                // Cut a partial write off so later records stay readable. The failed records
                // were not acknowledged; their writers get the error.
                let a = self.active.lock();
                let _ = a.file.set_len(at);
                Err(e)
            }
        }
    }

    /// Makes everything appended durable, then starts segment `active + 1`. Returns the new
    /// segment's number: every older segment is complete.
    pub fn rotate(&self) -> Result<u64> {
        let _leader = self.sync_lock.lock();
        self.write_and_sync()?;
        let mut a = self.active.lock();
        let seq = a.seq + 1;
        a.file = create_segment(&self.dir, seq)?;
        a.file_len = 0;
        a.seq = seq;
        Ok(seq)
    }

    /// Deletes the segments numbered below `seq`.
    pub fn remove_before(&self, seq: u64) -> Result<usize> {
        remove_segments_before(&self.dir, seq)
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
        let dir = tempfile::tempdir().unwrap();
        let wal = std::sync::Arc::new(Wal::create(dir.path(), 1).unwrap());
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
}
