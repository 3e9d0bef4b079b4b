use super::*;

fn options(dir: &Path, chunk: u64, max: u64) -> QueueOptions {
    QueueOptions {
        dir: dir.to_owned(),
        name: "test".into(),
        chunk_size: chunk,
        max_disk_bytes: max,
    }
}

fn pop(q: &FileQueue) -> Option<Vec<u8>> {
    let p = q.peek(Duration::from_millis(10)).unwrap()?;
    q.ack(&p).unwrap();
    Some(p.block)
}

#[test]
fn fifo_across_chunks_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    {
        let q = FileQueue::open(options(&path, 64, 0)).unwrap();
        for i in 0..10u8 {
            q.push(&[i; 20]).unwrap();
        }
        assert_eq!(pop(&q), Some(vec![0; 20]));
        // The same block is handed out until acked.
        let p = q.peek(Duration::ZERO).unwrap().unwrap();
        let again = q.peek(Duration::ZERO).unwrap().unwrap();
        assert_eq!(p.block, again.block);
        q.ack(&p).unwrap();
        // A second process cannot open it.
        assert!(matches!(
            FileQueue::open(options(&path, 64, 0)),
            Err(QueueError::Locked { .. })
        ));
    }
    let q = FileQueue::open(options(&path, 64, 0)).unwrap();
    for i in 2..10u8 {
        assert_eq!(pop(&q), Some(vec![i; 20]), "block {i}");
    }
    assert_eq!(pop(&q), None);
    // Chunks behind the reader are gone: only the writer's chunk remains.
    let chunks = list_chunks(&path).unwrap();
    assert!(chunks.len() <= 1, "{chunks:?}");
}

#[test]
fn blocks_written_after_the_last_metainfo_flush_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let q = FileQueue::open(options(&path, 1 << 20, 0)).unwrap();
    for i in 0..5u8 {
        q.push(&[i; 100]).unwrap();
    }
    let meta_before = std::fs::read_to_string(path.join("metainfo.json")).unwrap();
    // Simulate a kill: no Drop, so no final flush (the lock goes with the handle).
    std::mem::forget(q);
    // The flock belongs to the open file description; release it as process exit would.
    drop_lock_for_test(&path);
    assert!(meta_before.contains("\"WriterOffset\":0"), "{meta_before}");
    // A torn block at the end is cut off.
    let mut f = OpenOptions::new()
        .append(true)
        .open(path.join(format!("{:016X}", 0)))
        .unwrap();
    f.write_all(&[0, 0, 0, 0, 0, 0, 0, 50, 1, 2]).unwrap();
    let q = FileQueue::open(options(&path, 1 << 20, 0)).unwrap();
    for i in 0..5u8 {
        assert_eq!(pop(&q), Some(vec![i; 100]));
    }
    assert_eq!(pop(&q), None);
    q.push(b"after").unwrap();
    assert_eq!(pop(&q).as_deref(), Some(&b"after"[..]));
}

/// Forgetting the queue leaks its lock file descriptor; a new lock on the same file from this
/// process would conflict, so the test unlocks by removing and recreating the lock file.
fn drop_lock_for_test(path: &Path) {
    let lock = path.join("flock.lock");
    let _ = std::fs::remove_file(&lock);
}

#[test]
fn disk_budget_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let q = FileQueue::open(options(dir.path(), 1 << 20, 300)).unwrap();
    for i in 0..10u8 {
        q.push(&[i; 92]).unwrap();
    }
    assert!(q.pending_bytes() <= 300, "{}", q.pending_bytes());
    assert_eq!(q.dropped_blocks(), 7);
    assert_eq!(pop(&q), Some(vec![7; 92]));
    assert!(matches!(q.push(&[0; 400]), Err(QueueError::TooLarge(400))));
}

#[test]
fn damaged_headers_skip_the_chunk_and_readers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    {
        let q = FileQueue::open(options(&path, 64, 0)).unwrap();
        q.push(&[1; 20]).unwrap();
        q.push(&[2; 20]).unwrap();
        q.push(&[3; 20]).unwrap();
    }
    // Zero the length of the second block in chunk 0.
    let f = OpenOptions::new()
        .write(true)
        .open(path.join(format!("{:016X}", 0)))
        .unwrap();
    f.write_all_at(&[0; 8], 28).unwrap();
    let q = std::sync::Arc::new(FileQueue::open(options(&path, 64, 0)).unwrap());
    assert_eq!(pop(&q), Some(vec![1; 20]));
    assert_eq!(pop(&q), Some(vec![3; 20]));
    let q2 = std::sync::Arc::clone(&q);
    let waiter = std::thread::spawn(move || q2.peek(Duration::from_secs(5)).unwrap().map(|p| p.block));
    std::thread::sleep(Duration::from_millis(50));
    q.push(b"x").unwrap();
    assert_eq!(waiter.join().unwrap().as_deref(), Some(&b"x"[..]));
    q.close();
    assert!(q.peek(Duration::from_secs(1)).unwrap().is_none());
}
