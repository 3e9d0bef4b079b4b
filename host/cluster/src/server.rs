//! The storage node's RPC servers (insert on 8400, select on 8401) over local storage.
//!
//! One task per connection: handshake under a timeout, then read a request frame, run it on
//! the blocking pool (storage calls block on disk), write its response frames, repeat. Most
//! requests have one response frame; a search streams blocks of series as storage reads them
//! (see [`crate::proto`]), through a channel of a few frames, so a slow reader holds back the
//! storage walk instead of growing memory. An idle connection is closed after
//! [`IDLE_TIMEOUT`]; the client pools and redials.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_storage::index::metric_name::CanonicalName;
use strata_storage::index::{Label, MatchOp, TagFilter};
use strata_storage::{Storage, StorageError, TimeRange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proto::{self, Dec, Enc, ProtoError, Service, WireFilter, op, status};
use crate::tenants::TenantRegistry;

/// Handshake deadline (FORMATS.md §5.2 uses 5 s too).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Reading the rest of a frame, or writing a response.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers one request payload with response payloads handed to `emit`, which returns false
/// once the client has gone away (stop then).
pub type Handler = Arc<dyn Fn(&[u8], &mut dyn FnMut(Vec<u8>) -> bool) + Send + Sync>;

/// A handler with exactly one response payload per request.
pub fn single(f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> Handler {
    Arc::new(move |payload: &[u8], emit: &mut dyn FnMut(Vec<u8>) -> bool| {
        emit(f(payload));
    })
}

/// Response frames queued between the storage walk and the socket.
const STREAM_DEPTH: usize = 4;

/// Accepts connections on `listener` for `service` until `shutdown` completes.
pub async fn serve(listener: TcpListener, service: Service, handler: Handler, shutdown: impl Future<Output = ()>) {
    serve_tls(listener, service, handler, None, shutdown).await;
}

/// Like [`serve`], speaking TLS only when `tls` is given (see [`crate::tls`]).
pub async fn serve_tls(
    listener: TcpListener,
    service: Service,
    handler: Handler,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((conn, peer)) => {
                    let handler = Arc::clone(&handler);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let result = match acceptor {
                            None => plain(conn, service, handler).await,
                            Some(acceptor) => secured(conn, acceptor, service, handler).await,
                        };
                        if let Err(err) = result {
                            tracing::debug!(%peer, service = service.name(), "rpc connection ended: {err}");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn plain(conn: TcpStream, service: Service, handler: Handler) -> Result<(), ProtoError> {
    conn.set_nodelay(true)?;
    connection(conn, service, handler).await
}

/// A TLS connection; a client that starts with our plaintext hello gets a plaintext refusal.
async fn secured(
    mut conn: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    service: Service,
    handler: Handler,
) -> Result<(), ProtoError> {
    conn.set_nodelay(true)?;
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return Ok(()),
    }
    if first[0] == proto::HELLO_MAGIC[0] {
        let mut hello = [0u8; 13];
        if let Ok(Ok(_)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.read_exact(&mut hello)).await {
            let refusal = Err(format!(
                "this storage node requires TLS on its {} RPC port; give the client the cluster CA (cluster.tls_ca_file)",
                service.name()
            ));
            conn.write_all(&proto::hello_reply(&refusal)).await?;
            conn.shutdown().await?;
        }
        tracing::warn!(
            service = service.name(),
            "refused a plaintext RPC client: TLS is required"
        );
        return Ok(());
    }
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn))
        .await
        .map_err(|_| ProtoError::Malformed("TLS handshake timed out".into()))??;
    connection(stream, service, handler).await
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    service: Service,
    handler: Handler,
) -> Result<(), ProtoError> {
    let mut hello = [0u8; 13];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.read_exact(&mut hello)).await {
        Ok(Ok(_)) => {}
        // Closed before the hello: a TCP health check, not worth a log line.
        Ok(Err(_)) => return Ok(()),
        Err(_) => return Err(ProtoError::Malformed("handshake timed out".into())),
    }
    let verdict = proto::parse_hello(&hello, service);
    conn.write_all(&proto::hello_reply(&verdict)).await?;
    // TLS buffers records until flushed; on plain TCP this is free.
    conn.flush().await?;
    if let Err(msg) = verdict {
        tracing::warn!(service = service.name(), "refused an RPC client: {msg}");
        return Ok(());
    }
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(IDLE_TIMEOUT, conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return Ok(()),
        }
        let len = proto::check_frame_len(u32::from_be_bytes(len))?;
        let mut body = vec![0u8; len];
        tokio::time::timeout(IO_TIMEOUT, conn.read_exact(&mut body))
            .await
            .map_err(|_| ProtoError::Malformed("request frame timed out".into()))??;
        let h = Arc::clone(&handler);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, ProtoError>>(STREAM_DEPTH);
        let task = tokio::task::spawn_blocking(move || {
            let mut emit = |reply: Vec<u8>| match proto::encode_frame(&reply) {
                Ok(frame) => tx.blocking_send(Ok(frame)).is_ok(),
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    false
                }
            };
            match proto::decode_frame(&body) {
                Ok(payload) => h(&payload, &mut emit),
                Err(e) => {
                    emit(error_reply(status::ERROR, &e.to_string()));
                }
            }
        });
        while let Some(frame) = rx.recv().await {
            // A write error drops `rx`, which stops the handler at its next frame.
            let frame = frame?;
            tokio::time::timeout(IO_TIMEOUT, async {
                conn.write_all(&frame).await?;
                conn.flush().await
            })
            .await
            .map_err(|_| ProtoError::Malformed("response write timed out".into()))??;
        }
        task.await
            .map_err(|e| ProtoError::Malformed(format!("handler task failed: {e}")))?;
    }
}

fn error_reply(code: u8, msg: &str) -> Vec<u8> {
    let mut out = vec![code];
    // Bounded so a pathological message cannot blow the frame (VictoriaMetrics caps at 64 KiB).
    let msg = &msg.as_bytes()[..msg.len().min(64 << 10)];
    out.extend_from_slice(msg);
    out
}

fn storage_reply(err: StorageError) -> Vec<u8> {
    match err {
        StorageError::Unavailable(m) => error_reply(status::READ_ONLY, &m),
        e @ (StorageError::InvalidInput(_) | StorageError::TooManySeries { .. }) => {
            error_reply(status::ERROR, &e.to_string())
        }
        other => {
            tracing::error!("storage request failed: {other}");
            error_reply(
                status::ERROR,
                "storage request failed; the storage node's log has the details",
            )
        }
    }
}

fn reply_for(err: HandleError) -> Vec<u8> {
    match err {
        HandleError::Proto(e) => error_reply(status::ERROR, &e.to_string()),
        HandleError::Storage(e) => storage_reply(e),
    }
}

/// The insert service's handler over `storage`; every tenant that writes is noted in `tenants`.
pub fn insert_handler(storage: Arc<Storage>, tenants: Arc<TenantRegistry>) -> Handler {
    single(move |payload: &[u8]| handle_insert(&storage, &tenants, payload).unwrap_or_else(reply_for))
}

/// The select service's handler over `storage`: searches stream, the rest answer once.
pub fn select_handler(storage: Arc<Storage>, tenants: Arc<TenantRegistry>) -> Handler {
    Arc::new(move |payload: &[u8], emit: &mut dyn FnMut(Vec<u8>) -> bool| {
        let mut d = Dec::new(payload);
        let result = match d.u8() {
            Ok(op::SEARCH) => stream_search(&storage, &mut d, emit),
            Ok(code) => handle_select(&storage, &tenants, code, &mut d).map(|reply| {
                emit(reply);
            }),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            emit(reply_for(e));
        }
    })
}

enum HandleError {
    Proto(ProtoError),
    Storage(StorageError),
}

impl From<ProtoError> for HandleError {
    fn from(e: ProtoError) -> Self {
        HandleError::Proto(e)
    }
}

impl From<StorageError> for HandleError {
    fn from(e: StorageError) -> Self {
        HandleError::Storage(e)
    }
}

fn ok(body: Enc) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.0.len() + 1);
    out.push(status::OK);
    out.extend_from_slice(&body.0);
    out
}

fn handle_insert(storage: &Storage, tenants: &TenantRegistry, payload: &[u8]) -> Result<Vec<u8>, HandleError> {
    let mut d = Dec::new(payload);
    match d.u8()? {
        op::PING => Ok(ok(Enc::default())),
        op::WRITE => {
            let tenant = d.tenant()?;
            tenants.note(tenant);
            let n = d.count(8)?;
            let mut written = 0u64;
            // Labels borrow from the payload and the sample buffers are reused: this loop runs
            // once per series of every write, and owned copies were a large part of the hop's
            // CPU cost.
            let mut labels: Vec<Label<'_>> = Vec::new();
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            for _ in 0..n {
                labels.clear();
                ts.clear();
                vs.clear();
                let nl = d.count(8)?;
                for _ in 0..nl {
                    let name = d.str()?;
                    let value = d.str()?;
                    labels.push(Label { name, value });
                }
                let ns = d.count(16)?;
                for _ in 0..ns {
                    ts.push(d.i64()?);
                }
                for _ in 0..ns {
                    vs.push(d.f64()?);
                }
                storage.add_series(tenant, &labels, &ts, &vs)?;
                written += ns as u64;
            }
            // With storage.wal on, acknowledge only what is on disk (one shared fsync).
            storage.sync_wal()?;
            metrics::counter!("strata_cluster_rows_received_total").increment(written);
            let mut e = Enc::default();
            e.u64(written);
            Ok(ok(e))
        }
        other => Err(ProtoError::Malformed(format!("unknown insert op {other}")).into()),
    }
}

fn to_filters(wire: &[WireFilter]) -> Vec<TagFilter> {
    wire.iter()
        .map(|f| {
            let op = match f.op {
                0 => MatchOp::Equal,
                1 => MatchOp::NotEqual,
                2 => MatchOp::RegexMatch,
                _ => MatchOp::RegexNoMatch,
            };
            TagFilter::new(f.name.clone(), op, f.value.clone())
        })
        .collect()
}

fn time_range(d: &mut Dec<'_>) -> Result<TimeRange, ProtoError> {
    Ok(TimeRange {
        min: d.i64()?,
        max: d.i64()?,
    })
}

/// A search block is sent once its encoding reaches this size.
const STREAM_BLOCK_BYTES: usize = 256 << 10;

/// The part of a series' TSID that every node computes alike from its labels (metric name
/// hash, job and instance hashes; FORMATS.md §1.1). Storage walks series in TSID order, so
/// every node's stream is sorted by this key, which lets select merge the streams of all
/// nodes and meet the copies of a replicated series together.
fn group_key(tenant: strata_storage::Tenant, labels: &[(String, String)]) -> Result<(u64, u64), StorageError> {
    let labels: Vec<Label<'_>> = labels.iter().map(|(name, value)| Label { name, value }).collect();
    let tsid = CanonicalName::from_labels(tenant, &labels)?.tsid(0);
    Ok((
        tsid.metric_group_id,
        (u64::from(tsid.job_id) << 32) | u64::from(tsid.instance_id),
    ))
}

fn search_block() -> Enc {
    let mut e = Enc::default();
    e.u8(status::OK).u8(0).u32(0);
    e
}

/// Streams the series of a search in blocks: `u8 OK | u8 last | u32 n | (u64 key, u64 key,
/// series)*`; the last block has `last = 1`. An error ends the stream with an error frame.
fn stream_search(storage: &Storage, d: &mut Dec<'_>, emit: &mut dyn FnMut(Vec<u8>) -> bool) -> Result<(), HandleError> {
    let tenant = d.tenant()?;
    let filters = to_filters(&proto::get_filters(d)?);
    let tr = time_range(d)?;
    let max_series = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
    let mut block = search_block();
    let mut count = 0u32;
    let mut gone = false;
    let walked = storage.search(tenant, &filters, tr, max_series, &mut |name, ts, vs| {
        let (a, b) = group_key(tenant, &name.labels)?;
        block.u64(a).u64(b);
        proto::put_series(
            &mut block,
            name.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            ts,
            vs,
        );
        count += 1;
        if block.0.len() >= STREAM_BLOCK_BYTES {
            let mut full = std::mem::replace(&mut block, search_block()).0;
            full[2..6].copy_from_slice(&count.to_be_bytes());
            count = 0;
            if !emit(full) {
                gone = true;
                return Err(StorageError::Unavailable("the select node went away".into()));
            }
        }
        Ok(())
    });
    match walked {
        Err(_) if gone => Ok(()),
        Err(e) => Err(e.into()),
        Ok(()) => {
            block.0[1] = 1;
            block.0[2..6].copy_from_slice(&count.to_be_bytes());
            emit(block.0);
            Ok(())
        }
    }
}

fn handle_select(
    storage: &Storage,
    tenants: &TenantRegistry,
    code: u8,
    d: &mut Dec<'_>,
) -> Result<Vec<u8>, HandleError> {
    match code {
        op::PING => Ok(ok(Enc::default())),
        op::TENANTS => {
            let list = tenants.list();
            let mut e = Enc::default();
            e.u32(list.len() as u32);
            for t in list {
                e.tenant(t);
            }
            Ok(ok(e))
        }
        op::SERIES => {
            let tenant = d.tenant()?;
            let filters = to_filters(&proto::get_filters(d)?);
            let tr = time_range(d)?;
            let max_series = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
            let names = storage.series(tenant, &filters, tr, max_series)?;
            let mut e = Enc::default();
            e.u32(names.len() as u32);
            for name in &names {
                e.u32(name.labels.len() as u32);
                for (n, v) in &name.labels {
                    e.str(n).str(v);
                }
            }
            Ok(ok(e))
        }
        op::TSDB_STATUS => {
            let tenant = d.tenant()?;
            let date_ms = d.i64()?;
            let focus = d.str()?.to_owned();
            let top_n = d.u32()? as usize;
            let focus = (!focus.is_empty()).then_some(focus.as_str());
            let status = storage.tsdb_status(tenant, date_ms, focus, top_n)?;
            let json = serde_json::to_vec(&status)
                .map_err(|e| ProtoError::Malformed(format!("cannot encode the status: {e}")))?;
            Ok(ok(Enc(json)))
        }
        op::LABEL_NAMES => {
            let tenant = d.tenant()?;
            let filters = to_filters(&proto::get_filters(d)?);
            let tr = time_range(d)?;
            let limit = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
            let names = storage.label_names(tenant, &filters, tr, limit)?;
            let mut e = Enc::default();
            proto::put_strings(&mut e, &names);
            Ok(ok(e))
        }
        op::LABEL_VALUES => {
            let tenant = d.tenant()?;
            let name = d.str()?.to_owned();
            let filters = to_filters(&proto::get_filters(d)?);
            let tr = time_range(d)?;
            let limit = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
            let values = storage.label_values(tenant, &name, &filters, tr, limit)?;
            let mut e = Enc::default();
            proto::put_strings(&mut e, &values);
            Ok(ok(e))
        }
        op::SERIES_COUNT => {
            let tenant = d.tenant()?;
            let tr = time_range(d)?;
            let n = storage.series_count(tenant, tr)?;
            let mut e = Enc::default();
            e.u64(n);
            Ok(ok(e))
        }
        op::DELETE_SERIES => {
            let tenant = d.tenant()?;
            let filters = to_filters(&proto::get_filters(d)?);
            let n = storage.delete_series(tenant, &filters)?;
            let mut e = Enc::default();
            e.u64(n);
            Ok(ok(e))
        }
        other => Err(ProtoError::Malformed(format!("unknown select op {other}")).into()),
    }
}

#[cfg(test)]
mod tests {
    use strata_storage::data::TableOptions;
    use strata_storage::index::IndexOptions;
    use strata_storage::{StorageOptions, Tenant};

    use super::*;
    use crate::merge::decode_block;

    /// A SEARCH request for `{__name__=~"m.*"}` over all time, refused above `max_series`.
    fn search_m(tenant: Tenant, max_series: u64) -> Vec<u8> {
        let mut s = Enc::with_op(op::SEARCH);
        s.tenant(tenant);
        proto::put_filters(
            &mut s,
            &[WireFilter {
                name: "__name__".into(),
                op: 2,
                value: "m.*".into(),
            }],
        );
        s.i64(0).i64(i64::MAX / 2).u64(max_series);
        s.0
    }

    fn collect(h: &Handler, request: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        h(request, &mut |f| {
            frames.push(f);
            true
        });
        frames
    }

    /// A real storage node's search stream comes in several blocks, sorted by group key, the
    /// last one flagged; errors come as one error frame; tenants are noted on write.
    #[test]
    fn search_streams_sorted_blocks_from_storage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(
            Storage::open(StorageOptions {
                data_path: dir.path().to_path_buf(),
                table: TableOptions::default(),
                index: IndexOptions::default(),
            })
            .unwrap(),
        );
        let tenants = Arc::new(TenantRegistry::in_memory());
        let insert = insert_handler(Arc::clone(&storage), Arc::clone(&tenants));
        let select = select_handler(Arc::clone(&storage), Arc::clone(&tenants));
        let tenant = Tenant {
            account_id: 3,
            project_id: 4,
        };
        let n = 3000u32;
        let mut w = Enc::with_op(op::WRITE);
        w.tenant(tenant).u32(n);
        // Recent samples: older ones fall outside the default retention.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ts: Vec<i64> = (0..20).map(|k| now - 60_000 + k * 1000).collect();
        let vs: Vec<f64> = (0..20).map(f64::from).collect();
        for i in 0..n {
            let (job, inst, name) = (format!("job-{}", i % 7), format!("i-{i}"), format!("m{}", i % 5));
            proto::put_series(
                &mut w,
                [
                    ("__name__", name.as_str()),
                    ("job", job.as_str()),
                    ("instance", inst.as_str()),
                ]
                .into_iter(),
                &ts,
                &vs,
            );
        }
        let reply = collect(&insert, &w.0);
        assert_eq!(reply[0][0], status::OK, "{:?}", String::from_utf8_lossy(&reply[0]));
        assert_eq!(tenants.list(), vec![tenant]);
        storage.force_flush().unwrap();

        let frames = collect(&select, &search_m(tenant, 1_000_000));
        assert!(
            frames.len() > 2,
            "{} frames: {:?}",
            frames.len(),
            String::from_utf8_lossy(&frames[0])
        );
        let mut keys = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            assert_eq!(f[0], status::OK);
            assert_eq!(f[1], u8::from(k == frames.len() - 1), "only the last block is flagged");
            for (key, series) in decode_block(&f[2..]).unwrap() {
                assert_eq!(series.timestamps.len(), 20);
                keys.push(key);
            }
        }
        assert_eq!(keys.len(), n as usize);
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "stream sorted by group key");

        // Too many series: one error frame.
        let frames = collect(&select, &search_m(tenant, 10));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0][0], status::ERROR);

        // Another tenant sees nothing; the tenant list answers.
        let frames = collect(&select, &search_m(Tenant::default(), 10));
        assert_eq!(decode_block(&frames[0][2..]).unwrap().len(), 0);
        let frames = collect(&select, &[op::TENANTS]);
        assert_eq!(&frames[0][..5], &[status::OK, 0, 0, 0, 1]);
        // A stopped consumer stops the walk after one block.
        let mut got = 0;
        select(&search_m(tenant, 1_000_000), &mut |_| {
            got += 1;
            false
        });
        assert_eq!(got, 1);
    }
}
