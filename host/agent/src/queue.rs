//! The persistent FIFO queue of remote-write blocks, one per URL (FORMATS.md §6.1).
//!
//! Layout of the queue directory: `flock.lock` (one process at a time), `metainfo.json` =
//! `{"Name","ReaderOffset","WriterOffset"}`, and chunk files named `%016X` of the global byte
//! offset they start at. A block is `u64 BE length | bytes` and never straddles chunks: a block
//! that does not fit in the rest of a chunk starts the next one.
//!
//! Durability: blocks are written to the chunk file at once (so they survive a killed process);
//! metainfo is written at most once a second and on close. On open, the writer offset is moved
//! forward over complete blocks found after the recorded one, so blocks written after the last
//! metainfo flush are not lost; a reader offset that lags re-sends some blocks (the receiver
//! de-duplicates equal samples). A damaged block header skips the rest of its chunk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_fsutil::DirLock;

/// Largest block accepted (as vmagent's MaxBlockSize).
pub const MAX_BLOCK_SIZE: u64 = 32 << 20;
/// Default chunk file size: 16 maximal blocks, about 512 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = (MAX_BLOCK_SIZE + 8) * 16;

/// Queue failures.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file operation failed.
    #[error("queue {dir}: {what}: {source}")]
    Io {
        /// The queue directory.
        dir: PathBuf,
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process holds the queue.
    #[error("queue {dir} is locked: {message}")]
    Locked {
        /// The queue directory.
        dir: PathBuf,
        /// The lock error.
        message: String,
    },
    /// The block cannot be queued at all.
    #[error("block of {0} bytes is larger than the queue allows")]
    TooLarge(u64),
}

/// Options of one queue.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// Recorded in metainfo (the URL without credentials).
    pub name: String,
    /// Chunk file size.
    pub chunk_size: u64,
    /// Most bytes kept on disk; the oldest blocks are dropped to make room (0: unlimited).
    pub max_disk_bytes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetaInfo {
    name: String,
    reader_offset: u64,
    writer_offset: u64,
}

struct State {
    reader: u64,
    writer: u64,
    writer_file: Option<File>,
    reader_file: Option<(u64, File)>,
    meta_flushed: Instant,
    meta_dirty: bool,
    dropped_blocks: u64,
    closed: bool,
}

/// A persistent FIFO of byte blocks. Safe to share between one writer side and one reader.
pub struct FileQueue {
    options: QueueOptions,
    state: Mutex<State>,
    ready: Condvar,
    _lock: DirLock,
}

/// A block handed out by [`FileQueue::peek`]; pass it to [`FileQueue::ack`] once delivered.
#[derive(Debug)]
pub struct Peeked {
    /// The block.
    pub block: Vec<u8>,
    offset: u64,
    next: u64,
}

/// The outcome of reading the header at the reader offset.
enum Head {
    /// A block of this length.
    Block(u64),
    /// Nothing more in this chunk: move to the next.
    EndOfChunk,
}

impl FileQueue {
    /// Opens (or creates) the queue in `options.dir`.
    pub fn open(options: QueueOptions) -> Result<Self, QueueError> {
        let dir = options.dir.clone();
        let io = |what: &str| {
            let dir = dir.clone();
            let what = what.to_owned();
            move |source| QueueError::Io { dir, what, source }
        };
        strata_fsutil::create_dir_all_durable(&dir).map_err(io("create the directory"))?;
        let lock = DirLock::acquire(&dir).map_err(|e| QueueError::Locked {
            dir: dir.clone(),
            message: e.to_string(),
        })?;
        let meta: MetaInfo = match std::fs::read(dir.join("metainfo.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(dir = %dir.display(), "unreadable metainfo.json ({err}); starting from the chunk files");
                MetaInfo::default()
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => MetaInfo::default(),
            Err(err) => return Err(io("read metainfo.json")(err)),
        };
        let chunks = list_chunks(&dir).map_err(io("list chunk files"))?;
        let mut reader = meta.reader_offset;
        let mut writer = meta.writer_offset;
        // Without metainfo, the chunk files still say where data is.
        if let (Some(first), true) = (chunks.first(), meta.writer_offset == 0) {
            reader = *first;
            writer = *chunks.last().unwrap_or(first);
        }
        writer = writer.max(reader);
        let queue = Self {
            options,
            state: Mutex::new(State {
                reader,
                writer,
                writer_file: None,
                reader_file: None,
                meta_flushed: Instant::now(),
                meta_dirty: true,
                dropped_blocks: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            _lock: lock,
        };
        {
            let mut st = queue.lock();
            queue.recover_writer(&mut st)?;
            for start in chunks {
                if start + queue.options.chunk_size <= queue.chunk_start(st.reader) {
                    let _ = std::fs::remove_file(queue.chunk_path(start));
                }
            }
            queue.flush_meta(&mut st)?;
        }
        Ok(queue)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io_err(&self, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QueueError {
        let dir = self.options.dir.clone();
        let what = what.into();
        move |source| QueueError::Io { dir, what, source }
    }

    fn chunk_start(&self, offset: u64) -> u64 {
        offset - offset % self.options.chunk_size
    }

    fn chunk_path(&self, start: u64) -> PathBuf {
        self.options.dir.join(format!("{start:016X}"))
    }

    /// Moves the writer over complete blocks written after the last metainfo flush and cuts a
    /// torn block at the end.
    fn recover_writer(&self, st: &mut State) -> Result<(), QueueError> {
        let start = self.chunk_start(st.writer);
        let path = self.chunk_path(start);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io_err("open the writer chunk")(e)),
        };
        let len = file.metadata().map_err(self.io_err("stat the writer chunk"))?.len();
        let mut pos = st.writer - start;
        let mut header = [0u8; 8];
        while pos + 8 <= len {
            if file.read_exact_at(&mut header, pos).is_err() {
                break;
            }
            let n = u64::from_be_bytes(header);
            if n == 0 || n > MAX_BLOCK_SIZE || pos + 8 + n > len {
                break;
            }
            pos += 8 + n;
        }
        if pos < len {
            file.set_len(pos).map_err(self.io_err("truncate a torn block"))?;
        }
        if start + pos != st.writer {
            tracing::info!(dir = %self.options.dir.display(), recovered = start + pos - st.writer, "recovered queued bytes written after the last metainfo flush");
        }
        st.writer = start + pos;
        Ok(())
    }

    /// Appends a block. Drops the oldest blocks if the disk budget is exceeded.
    pub fn push(&self, block: &[u8]) -> Result<(), QueueError> {
        let n = block.len() as u64;
        if n == 0 || n > MAX_BLOCK_SIZE || n + 8 > self.options.chunk_size {
            return Err(QueueError::TooLarge(n));
        }
        let max = self.options.max_disk_bytes;
        if max > 0 && n + 8 > max {
            return Err(QueueError::TooLarge(n));
        }
        let mut st = self.lock();
        while max > 0 && st.writer - st.reader + n + 8 > max && st.reader < st.writer {
            self.drop_oldest(&mut st)?;
        }
        let start = self.chunk_start(st.writer);
        if st.writer + 8 + n > start + self.options.chunk_size {
            st.writer = start + self.options.chunk_size;
            st.writer_file = None;
        }
        if st.writer_file.is_none() {
            let path = self.chunk_path(self.chunk_start(st.writer));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(self.io_err("open a chunk for writing"))?;
            st.writer_file = Some(file);
        }
        let mut record = Vec::with_capacity(block.len() + 8);
        record.extend_from_slice(&n.to_be_bytes());
        record.extend_from_slice(block);
        let file = st.writer_file.as_mut().ok_or(QueueError::TooLarge(n))?;
        file.write_all(&record).map_err(self.io_err("append a block"))?;
        st.writer += n + 8;
        st.meta_dirty = true;
        self.maybe_flush_meta(&mut st)?;
        drop(st);
        self.ready.notify_all();
        Ok(())
    }

    fn drop_oldest(&self, st: &mut State) -> Result<(), QueueError> {
        match self.read_head(st)? {
            Head::Block(n) => {
                st.reader += 8 + n;
                st.dropped_blocks += 1;
                metrics::counter!("strata_agent_remote_write_blocks_dropped_total", "reason" => "queue_full")
                    .increment(1);
            }
            Head::EndOfChunk => self.next_reader_chunk(st),
        }
        st.meta_dirty = true;
        Ok(())
    }

    fn next_reader_chunk(&self, st: &mut State) {
        let old = self.chunk_start(st.reader);
        st.reader = (old + self.options.chunk_size).min(st.writer);
        st.reader_file = None;
        if old != self.chunk_start(st.writer) {
            let _ = std::fs::remove_file(self.chunk_path(old));
        }
    }

    /// Reads the header at the reader offset (which must be below the writer).
    fn read_head(&self, st: &mut State) -> Result<Head, QueueError> {
        let start = self.chunk_start(st.reader);
        if st.reader_file.as_ref().is_none_or(|(s, _)| *s != start) {
            match File::open(self.chunk_path(start)) {
                Ok(f) => st.reader_file = Some((start, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Head::EndOfChunk),
                Err(e) => return Err(self.io_err("open a chunk for reading")(e)),
            }
        }
        let Some((_, file)) = st.reader_file.as_ref() else {
            return Ok(Head::EndOfChunk);
        };
        let pos = st.reader - start;
        let mut header = [0u8; 8];
        if file.read_exact_at(&mut header, pos).is_err() {
            return Ok(Head::EndOfChunk);
        }
        let n = u64::from_be_bytes(header);
        let len = file.metadata().map_err(self.io_err("stat a chunk"))?.len();
        if n == 0 || n > MAX_BLOCK_SIZE || pos + 8 + n > len {
            tracing::warn!(dir = %self.options.dir.display(), offset = st.reader, "damaged block header; skipping the rest of the chunk");
            metrics::counter!("strata_agent_remote_write_blocks_dropped_total", "reason" => "corrupt").increment(1);
            return Ok(Head::EndOfChunk);
        }
        Ok(Head::Block(n))
    }

    /// The oldest block, without removing it; waits up to `wait` for one. `None` on timeout or
    /// after [`FileQueue::close`].
    pub fn peek(&self, wait: Duration) -> Result<Option<Peeked>, QueueError> {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        loop {
            if st.closed {
                return Ok(None);
            }
            if st.reader < st.writer {
                match self.read_head(&mut st)? {
                    Head::Block(n) => {
                        let start = self.chunk_start(st.reader);
                        let mut block = vec![0u8; usize::try_from(n).unwrap_or(0)];
                        if let Some((_, file)) = st.reader_file.as_ref() {
                            file.read_exact_at(&mut block, st.reader - start + 8)
                                .map_err(self.io_err("read a block"))?;
                        }
                        return Ok(Some(Peeked {
                            block,
                            offset: st.reader,
                            next: st.reader + 8 + n,
                        }));
                    }
                    Head::EndOfChunk => {
                        self.next_reader_chunk(&mut st);
                        st.meta_dirty = true;
                        continue;
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            st = self
                .ready
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Removes the block `peeked` came from, unless it was dropped meanwhile.
    pub fn ack(&self, peeked: &Peeked) -> Result<(), QueueError> {
        let mut st = self.lock();
        if st.reader == peeked.offset {
            st.reader = peeked.next;
            st.meta_dirty = true;
            self.maybe_flush_meta(&mut st)?;
        }
        Ok(())
    }

    /// Bytes waiting on disk.
    pub fn pending_bytes(&self) -> u64 {
        let st = self.lock();
        st.writer - st.reader
    }

    /// Blocks dropped to respect the disk budget since open.
    pub fn dropped_blocks(&self) -> u64 {
        self.lock().dropped_blocks
    }

    fn maybe_flush_meta(&self, st: &mut State) -> Result<(), QueueError> {
        if st.meta_dirty && st.meta_flushed.elapsed() >= Duration::from_secs(1) {
            self.flush_meta(st)?;
        }
        Ok(())
    }

    fn flush_meta(&self, st: &mut State) -> Result<(), QueueError> {
        let meta = MetaInfo {
            name: self.options.name.clone(),
            reader_offset: st.reader,
            writer_offset: st.writer,
        };
        let bytes = serde_json::to_vec(&meta).unwrap_or_default();
        strata_fsutil::atomic_write(&self.options.dir.join("metainfo.json"), &bytes)
            .map_err(self.io_err("write metainfo.json"))?;
        st.meta_flushed = Instant::now();
        st.meta_dirty = false;
        Ok(())
    }

    /// Writes metainfo now (also done on drop).
    pub fn flush(&self) -> Result<(), QueueError> {
        let mut st = self.lock();
        if let Some(file) = st.writer_file.as_ref() {
            file.sync_data().map_err(self.io_err("sync the writer chunk"))?;
        }
        self.flush_meta(&mut st)
    }

    /// Wakes waiting readers; `peek` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }
}

impl Drop for FileQueue {
    fn drop(&mut self) {
        if let Err(err) = self.flush() {
            tracing::warn!("cannot flush the queue on close: {err}");
        }
    }
}

fn list_chunks(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut chunks = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str()
            && name.len() == 16
            && let Ok(start) = u64::from_str_radix(name, 16)
        {
            chunks.push(start);
        }
    }
    chunks.sort_unstable();
    Ok(chunks)
}

#[cfg(test)]
mod tests;
