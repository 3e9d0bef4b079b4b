//! The storage node's RPC servers (insert on 8400, select on 8401) over local storage.
//!
//! One task per connection: handshake under a timeout, then read a request frame, run it on
//! the blocking pool (storage calls block on disk), write the response frame, repeat. An idle
//! connection is closed after [`IDLE_TIMEOUT`]; the client pools and redials.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_storage::index::{Label, MatchOp, TagFilter};
use strata_storage::{Storage, StorageError, TimeRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::proto::{self, Dec, Enc, ProtoError, Service, WireFilter, op, status};

/// Handshake deadline (FORMATS.md §5.2 uses 5 s too).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Reading the rest of a frame, or writing a response.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers one request payload with one response payload.
pub type Handler = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Accepts connections on `listener` for `service` until `shutdown` completes.
pub async fn serve(listener: TcpListener, service: Service, handler: Handler, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((conn, peer)) => {
                    let handler = Arc::clone(&handler);
                    tokio::spawn(async move {
                        if let Err(err) = connection(conn, service, handler).await {
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

async fn connection(mut conn: TcpStream, service: Service, handler: Handler) -> Result<(), ProtoError> {
    conn.set_nodelay(true)?;
    let mut hello = [0u8; 13];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.read_exact(&mut hello)).await {
        Ok(Ok(_)) => {}
        // Closed before the hello: a TCP health check, not worth a log line.
        Ok(Err(_)) => return Ok(()),
        Err(_) => return Err(ProtoError::Malformed("handshake timed out".into())),
    }
    let verdict = proto::parse_hello(&hello, service);
    conn.write_all(&proto::hello_reply(&verdict)).await?;
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
        let frame = tokio::task::spawn_blocking(move || {
            let reply = match proto::decode_frame(&body) {
                Ok(payload) => h(&payload),
                Err(e) => error_reply(status::ERROR, &e.to_string()),
            };
            proto::encode_frame(&reply)
        })
        .await
        .map_err(|e| ProtoError::Malformed(format!("handler task failed: {e}")))??;
        tokio::time::timeout(IO_TIMEOUT, conn.write_all(&frame))
            .await
            .map_err(|_| ProtoError::Malformed("response write timed out".into()))??;
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

/// The insert service's handler over `storage`.
pub fn insert_handler(storage: Arc<Storage>) -> Handler {
    Arc::new(move |payload: &[u8]| match handle_insert(&storage, payload) {
        Ok(reply) => reply,
        Err(HandleError::Proto(e)) => error_reply(status::ERROR, &e.to_string()),
        Err(HandleError::Storage(e)) => storage_reply(e),
    })
}

/// The select service's handler over `storage`.
pub fn select_handler(storage: Arc<Storage>) -> Handler {
    Arc::new(move |payload: &[u8]| match handle_select(&storage, payload) {
        Ok(reply) => reply,
        Err(HandleError::Proto(e)) => error_reply(status::ERROR, &e.to_string()),
        Err(HandleError::Storage(e)) => storage_reply(e),
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

fn handle_insert(storage: &Storage, payload: &[u8]) -> Result<Vec<u8>, HandleError> {
    let mut d = Dec::new(payload);
    match d.u8()? {
        op::PING => Ok(ok(Enc::default())),
        op::WRITE => {
            let tenant = d.tenant()?;
            let n = d.count(8)?;
            let mut written = 0u64;
            for _ in 0..n {
                let s = proto::get_series(&mut d)?;
                let labels: Vec<Label<'_>> = s.labels.iter().map(|(name, value)| Label { name, value }).collect();
                storage.add_series(tenant, &labels, &s.timestamps, &s.values)?;
                written += s.timestamps.len() as u64;
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

fn handle_select(storage: &Storage, payload: &[u8]) -> Result<Vec<u8>, HandleError> {
    let mut d = Dec::new(payload);
    match d.u8()? {
        op::PING => Ok(ok(Enc::default())),
        op::SEARCH => {
            let tenant = d.tenant()?;
            let filters = to_filters(&proto::get_filters(&mut d)?);
            let tr = time_range(&mut d)?;
            let max_series = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
            let mut body = Enc::default();
            let mut count = 0u32;
            // The count goes in front; patch it in after the walk.
            body.u32(0);
            storage.search(tenant, &filters, tr, max_series, &mut |name, ts, vs| {
                proto::put_series(
                    &mut body,
                    name.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    ts,
                    vs,
                );
                count += 1;
                Ok(())
            })?;
            body.0[..4].copy_from_slice(&count.to_be_bytes());
            Ok(ok(body))
        }
        op::LABEL_NAMES => {
            let tenant = d.tenant()?;
            let filters = to_filters(&proto::get_filters(&mut d)?);
            let tr = time_range(&mut d)?;
            let limit = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
            let names = storage.label_names(tenant, &filters, tr, limit)?;
            let mut e = Enc::default();
            proto::put_strings(&mut e, &names);
            Ok(ok(e))
        }
        op::LABEL_VALUES => {
            let tenant = d.tenant()?;
            let name = d.str()?.to_owned();
            let filters = to_filters(&proto::get_filters(&mut d)?);
            let tr = time_range(&mut d)?;
            let limit = usize::try_from(d.u64()?).unwrap_or(usize::MAX);
            let values = storage.label_values(tenant, &name, &filters, tr, limit)?;
            let mut e = Enc::default();
            proto::put_strings(&mut e, &values);
            Ok(ok(e))
        }
        op::SERIES_COUNT => {
            let tenant = d.tenant()?;
            let tr = time_range(&mut d)?;
            let n = storage.series_count(tenant, tr)?;
            let mut e = Enc::default();
            e.u64(n);
            Ok(ok(e))
        }
        op::DELETE_SERIES => {
            let tenant = d.tenant()?;
            let filters = to_filters(&proto::get_filters(&mut d)?);
            let n = storage.delete_series(tenant, &filters)?;
            let mut e = Enc::default();
            e.u64(n);
            Ok(ok(e))
        }
        other => Err(ProtoError::Malformed(format!("unknown select op {other}")).into()),
    }
}
