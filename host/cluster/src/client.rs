//! A blocking client for one storage node's RPC port: dials with a timeout, shakes hands,
//! keeps idle connections for reuse (keep-alive) and bounds every call by a timeout.
//!
//! Blocking on purpose: `SampleSink::push` and `SeriesSource` are synchronous and already run
//! off the async executor, so a plain socket per call keeps the code straight.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::proto::{self, PROTOCOL_VERSION, ProtoError, Service, status};
use crate::tls::{ClientTls, Conn};

/// Idle pooled connections older than this are dropped rather than reused: the server (or a
/// middlebox) may have closed them.
const MAX_IDLE: Duration = Duration::from_secs(50);
/// Idle connections kept per node.
const MAX_POOLED: usize = 16;

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The node could not be reached or did not answer in time: try another node.
    #[error("storage node {addr} unavailable: {source}")]
    Unavailable {
        /// The node.
        addr: String,
        /// Why.
        source: ProtoError,
    },
    /// The node refuses writes for now (disk short).
    #[error("storage node {addr} is read-only: {message}")]
    ReadOnly {
        /// The node.
        addr: String,
        /// The node's reason.
        message: String,
    },
    /// The node answered with an error that another node would give too.
    #[error("storage node {addr}: {message}")]
    Remote {
        /// The node.
        addr: String,
        /// The node's message.
        message: String,
    },
}

/// Timeouts and TLS of a node client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// TCP connect plus handshake.
    pub dial_timeout: Duration,
    /// Reading or writing one frame.
    pub io_timeout: Duration,
    /// Dial over TLS (see [`crate::tls`]).
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// A pooled client for one node and service.
#[derive(Debug)]
pub struct NodeClient {
    addr: String,
    service: Service,
    version: u16,
    options: ClientOptions,
    pool: Mutex<Vec<(Conn, Instant)>>,
}

impl NodeClient {
    /// A client for `addr` (`host:port`); nothing is dialled until the first call.
    pub fn new(addr: impl Into<String>, service: Service, options: ClientOptions) -> Self {
        Self::with_version(addr, service, options, PROTOCOL_VERSION)
    }

    /// A client claiming another protocol version; tests use it to check refusals.
    pub fn with_version(addr: impl Into<String>, service: Service, options: ClientOptions, version: u16) -> Self {
        Self {
            addr: addr.into(),
            service,
            version,
            options,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// The node's address as configured.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn unavailable(&self, source: ProtoError) -> CallError {
        CallError::Unavailable {
            addr: self.addr.clone(),
            source,
        }
    }

    fn dial(&self) -> Result<Conn, ProtoError> {
        let addrs: Vec<SocketAddr> = self.addr.to_socket_addrs()?.collect();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.options.dial_timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(self.options.dial_timeout))?;
                    s.set_write_timeout(Some(self.options.dial_timeout))?;
                    let mut conn = match &self.options.tls {
                        Some(tls) => tls.wrap(&self.addr, s)?,
                        None => Conn::Plain(s),
                    };
                    proto::client_handshake(&mut conn, self.service, self.version)?;
                    conn.tcp().set_read_timeout(Some(self.options.io_timeout))?;
                    conn.tcp().set_write_timeout(Some(self.options.io_timeout))?;
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ProtoError::Io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the address resolves to nothing")
        })))
    }

    fn pooled(&self) -> Option<Conn> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = pool.pop() {
            if since.elapsed() < MAX_IDLE {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, conn: Conn) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_POOLED {
            pool.push((conn, Instant::now()));
        }
    }

    fn exchange(conn: &mut Conn, request: &[u8]) -> Result<Vec<u8>, ProtoError> {
        proto::write_frame(conn, request)?;
        proto::read_frame(conn)
    }

    fn status_error(&self, code: u8, body: &[u8]) -> CallError {
        let message = String::from_utf8_lossy(body).into_owned();
        match code {
            status::READ_ONLY => CallError::ReadOnly {
                addr: self.addr.clone(),
                message,
            },
            status::ERROR => CallError::Remote {
                addr: self.addr.clone(),
                message,
            },
            other => self.unavailable(ProtoError::Malformed(format!("unknown status {other}"))),
        }
    }

    /// Sends a request answered by a stream of frames (`u8 status | u8 last | body`) and
    /// hands each OK body to `on_block`, which returns false to stop early. Returns true when
    /// the stream ended, false when `on_block` stopped it (the connection is dropped then,
    /// since unread frames may follow).
    pub fn call_stream(&self, request: &[u8], on_block: &mut dyn FnMut(&[u8]) -> bool) -> Result<bool, CallError> {
        let first_frame = |conn: &mut Conn| -> Result<Vec<u8>, ProtoError> {
            proto::write_frame(conn, request)?;
            proto::read_frame(conn)
        };
        // A pooled connection may have died while idle: redial once if it fails before the
        // first frame.
        let (mut conn, mut frame) = match self.pooled().map(|mut c| first_frame(&mut c).map(|f| (c, f))) {
            Some(Ok(ok)) => ok,
            _ => {
                let mut conn = self.dial().map_err(|e| self.unavailable(e))?;
                let f = first_frame(&mut conn).map_err(|e| self.unavailable(e))?;
                (conn, f)
            }
        };
        loop {
            let (&code, rest) = frame
                .split_first()
                .ok_or_else(|| self.unavailable(ProtoError::Malformed("empty response".into())))?;
            if code != status::OK {
                // The server ends a stream with an error frame and then waits for the next
                // request, so the connection stays usable.
                self.put_back(conn);
                return Err(self.status_error(code, rest));
            }
            let (&last, body) = rest
                .split_first()
                .ok_or_else(|| self.unavailable(ProtoError::Malformed("stream frame without a flag".into())))?;
            if !on_block(body) {
                return Ok(false);
            }
            if last != 0 {
                self.put_back(conn);
                return Ok(true);
            }
            frame = proto::read_frame(&mut conn).map_err(|e| self.unavailable(e))?;
        }
    }

    /// Sends one request payload and returns the OK body.
    pub fn call(&self, request: &[u8]) -> Result<Vec<u8>, CallError> {
        // A pooled connection may have died while idle; one fresh dial retries that case.
        let reply = match self.pooled() {
            Some(mut conn) => match Self::exchange(&mut conn, request) {
                Ok(r) => Some((conn, r)),
                Err(_) => None,
            },
            None => None,
        };
        let (conn, reply) = match reply {
            Some(ok) => ok,
            None => {
                let mut conn = self.dial().map_err(|e| self.unavailable(e))?;
                let r = Self::exchange(&mut conn, request).map_err(|e| self.unavailable(e))?;
                (conn, r)
            }
        };
        self.put_back(conn);
        let (&code, body) = reply
            .split_first()
            .ok_or_else(|| self.unavailable(ProtoError::Malformed("empty response".into())))?;
        match code {
            status::OK => Ok(body.to_vec()),
            other => Err(self.status_error(other, body)),
        }
    }
}
