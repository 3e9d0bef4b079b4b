//! The node-to-node wire protocol (ours, not VictoriaMetrics'; FORMATS.md §5.2–5.8 describe
//! theirs, which we follow in spirit).
//!
//! **Handshake.** The client sends `HELLO_MAGIC` (10 bytes), its protocol version (u16 BE) and
//! the service it wants (u8: 1 insert, 2 select). The server answers with a status byte
//! (0 accepted, 1 refused), its own version (u16 BE) and a message (u32 BE length + UTF-8). A
//! version mismatch is refused with a message naming both versions, and the client reports it.
//!
//! **Frames.** After the handshake both directions carry frames: `u32 BE length | zstd(level 1,
//! payload)`. A request payload is `u8 op | arguments`; a response payload is `u8 status |
//! body` where status 0 is OK, 1 an application error (body = message) and 2 "read-only"
//! (storage refuses writes for now; body = message). One request is answered before the next
//! is read, so a connection is a simple request/response pipe the client pools (keep-alive).
//!
//! **Encoding.** Integers are big-endian fixed width; strings and byte runs are `u32 length |
//! bytes`; floats travel as their IEEE bits so NaN payloads (staleness markers) survive.

use std::io::{Read, Write};

use strata_storage::Tenant;

/// The protocol version this build speaks. Bump on any incompatible change.
pub const PROTOCOL_VERSION: u16 = 2;
/// First bytes of every connection; lets a server tell our clients from port scanners.
pub const HELLO_MAGIC: &[u8; 10] = b"strata-rpc";
/// Largest compressed frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Largest decompressed payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 512 << 20;
/// Longest handshake message accepted.
const MAX_HELLO_MESSAGE: usize = 64 << 10;
/// zstd level: speed over ratio on a LAN hop (FORMATS.md §5.3 uses level 1 too).
const ZSTD_LEVEL: i32 = 1;

/// Which RPC service a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Writes (storage node port 8400).
    Insert,
    /// Reads (storage node port 8401).
    Select,
}

impl Service {
    fn code(self) -> u8 {
        match self {
            Service::Insert => 1,
            Service::Select => 2,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Service::Insert),
            2 => Some(Service::Select),
            _ => None,
        }
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Insert => "insert",
            Service::Select => "select",
        }
    }
}

/// What can go wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The socket failed or timed out.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: this node speaks version {ours}, the peer speaks version {theirs}")]
    Version {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The peer refused the handshake for another reason.
    #[error("handshake refused: {0}")]
    Refused(String),
    /// Bytes that do not follow the protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> ProtoError {
    ProtoError::Malformed(msg.into())
}

/// The client's hello bytes.
pub fn hello(service: Service, version: u16) -> Vec<u8> {
    let mut out = HELLO_MAGIC.to_vec();
    out.extend_from_slice(&version.to_be_bytes());
    out.push(service.code());
    out
}

/// Parses a client hello (13 bytes) into (version, service); `Err` carries the refusal text.
pub fn parse_hello(buf: &[u8; 13], expected: Service) -> Result<u16, String> {
    if &buf[..10] != HELLO_MAGIC {
        return Err("not a strata-rpc client".into());
    }
    let version = u16::from_be_bytes([buf[10], buf[11]]);
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version mismatch: this node speaks version {PROTOCOL_VERSION}, the peer speaks version {version}"
        ));
    }
    match Service::from_code(buf[12]) {
        Some(s) if s == expected => Ok(version),
        Some(s) => Err(format!(
            "this port serves {} RPC, the client asked for {} RPC",
            expected.name(),
            s.name()
        )),
        None => Err(format!("unknown service code {}", buf[12])),
    }
}

/// The server's handshake answer.
pub fn hello_reply(result: &Result<u16, String>) -> Vec<u8> {
    let (status, msg) = match result {
        Ok(_) => (0u8, ""),
        Err(m) => (1u8, m.as_str()),
    };
    let mut out = vec![status];
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg.as_bytes());
    out
}

/// Client side of the handshake over a blocking stream.
pub fn client_handshake<S: Read + Write>(stream: &mut S, service: Service, version: u16) -> Result<(), ProtoError> {
    stream.write_all(&hello(service, version))?;
    stream.flush()?;
    let mut head = [0u8; 7];
    stream.read_exact(&mut head)?;
    let theirs = u16::from_be_bytes([head[1], head[2]]);
    let len = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if len > MAX_HELLO_MESSAGE {
        return Err(malformed(format!("handshake message of {len} bytes")));
    }
    let mut msg = vec![0u8; len];
    stream.read_exact(&mut msg)?;
    match head[0] {
        0 if theirs == version => Ok(()),
        // Either side may notice the mismatch first; report it the same way.
        _ if theirs != version => Err(ProtoError::Version { ours: version, theirs }),
        _ => Err(ProtoError::Refused(String::from_utf8_lossy(&msg).into_owned())),
    }
}

/// Compresses `payload` into a frame (length prefix included).
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let compressed = zstd::bulk::compress(payload, ZSTD_LEVEL)?;
    if compressed.len() > MAX_FRAME_BYTES {
        return Err(malformed(format!(
            "frame of {} bytes exceeds the {MAX_FRAME_BYTES}-byte limit",
            compressed.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + compressed.len());
    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Checks a frame length read from the wire.
pub fn check_frame_len(len: u32) -> Result<usize, ProtoError> {
    let len = len as usize;
    if len > MAX_FRAME_BYTES {
        return Err(malformed(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"
        )));
    }
    Ok(len)
}

/// Decompresses a frame body, refusing payloads over [`MAX_PAYLOAD_BYTES`].
pub fn decode_frame(body: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let decoder = zstd::stream::read::Decoder::new(body)?;
    let mut out = Vec::new();
    decoder
        .take(MAX_PAYLOAD_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(format!("bad zstd frame: {e}")))?;
    if out.len() > MAX_PAYLOAD_BYTES {
        return Err(malformed("payload exceeds the decompressed size limit"));
    }
    Ok(out)
}

/// Writes one frame to a blocking stream.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> Result<(), ProtoError> {
    w.write_all(&encode_frame(payload)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame from a blocking stream.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Vec<u8>, ProtoError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = check_frame_len(u32::from_be_bytes(len))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode_frame(&body)
}

/// Request operations.
pub mod op {
    /// Liveness probe; empty body.
    pub const PING: u8 = 0;
    /// Insert service: `tenant | u32 n | series*`.
    pub const WRITE: u8 = 1;
    /// Select service: `tenant | filters | i64 min | i64 max | u64 max_series` → a stream of
    /// blocks `u8 status | u8 last | u32 n | (u64 key_a | u64 key_b | series)*`, sorted by
    /// the key (see `server::group_key`), the last with `last = 1`; an error frame ends a
    /// stream early.
    pub const SEARCH: u8 = 10;
    /// Select service: `tenant | filters | i64 min | i64 max | u64 limit` → strings.
    pub const LABEL_NAMES: u8 = 11;
    /// Select service: `tenant | str name | filters | i64 min | i64 max | u64 limit` → strings.
    pub const LABEL_VALUES: u8 = 12;
    /// Select service: `tenant | i64 min | i64 max` → u64.
    pub const SERIES_COUNT: u8 = 13;
    /// Select service: `tenant | filters` → u64 series deleted.
    pub const DELETE_SERIES: u8 = 14;
    /// Select service: `tenant | i64 date_ms | str focus_label | u32 top_n` → the day's
    /// cardinality statistics as JSON (storage's `TsdbStatus`).
    pub const TSDB_STATUS: u8 = 15;
    /// Select service: empty → `u32 n | tenant*`, the tenants that ever wrote to the node.
    pub const TENANTS: u8 = 16;
    /// Select service: `tenant | filters | i64 min | i64 max | u64 max_series` → `u32 n |
    /// (u32 nlabels | (str, str)*)*`, series names without samples.
    pub const SERIES: u8 = 17;
}

/// Response status codes.
pub mod status {
    /// Success; the body is the result.
    pub const OK: u8 = 0;
    /// The request failed for a reason that retrying elsewhere would not fix.
    pub const ERROR: u8 = 1;
    /// The node takes no writes now (disk short); send elsewhere.
    pub const READ_ONLY: u8 = 2;
}

/// Appends protocol values to a buffer.
#[derive(Default, Debug)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// A buffer starting with `op`.
    pub fn with_op(op: u8) -> Self {
        Enc(vec![op])
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    /// u32 BE.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// u64 BE.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// i64 BE.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// f64 as its bits.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.u64(v.to_bits())
    }
    /// `u32 len | bytes`.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// The tenant: u32 account, u32 project.
    pub fn tenant(&mut self, t: Tenant) -> &mut Self {
        self.u32(t.account_id).u32(t.project_id)
    }
}

/// Reads protocol values from a payload; every read is bounds-checked.
#[derive(Debug)]
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() - self.pos < n {
            return Err(malformed(format!(
                "truncated: need {n} bytes at offset {}, have {}",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    /// u32 BE.
    pub fn u32(&mut self) -> Result<u32, ProtoError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// u64 BE.
    pub fn u64(&mut self) -> Result<u64, ProtoError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    /// i64 BE.
    pub fn i64(&mut self) -> Result<i64, ProtoError> {
        Ok(self.u64()? as i64)
    }
    /// f64 from its bits.
    pub fn f64(&mut self) -> Result<f64, ProtoError> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// `u32 len | UTF-8 bytes`.
    pub fn str(&mut self) -> Result<&'a str, ProtoError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| malformed("string is not UTF-8"))
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left so
    /// a hostile count cannot make us allocate.
    pub fn count(&mut self, min_item: usize) -> Result<usize, ProtoError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() - self.pos {
            return Err(malformed(format!("count {n} exceeds the remaining payload")));
        }
        Ok(n)
    }
    /// The tenant.
    pub fn tenant(&mut self) -> Result<Tenant, ProtoError> {
        Ok(Tenant {
            account_id: self.u32()?,
            project_id: self.u32()?,
        })
    }
    /// True when everything was read.
    pub fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// One label matcher on the wire: name, op (0 `=`, 1 `!=`, 2 `=~`, 3 `!~`), value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireFilter {
    /// Label name.
    pub name: String,
    /// Operator code.
    pub op: u8,
    /// Value or regex.
    pub value: String,
}

/// Writes `filters` as `u32 n | (str name, u8 op, str value)*`.
pub fn put_filters(e: &mut Enc, filters: &[WireFilter]) {
    e.u32(filters.len() as u32);
    for f in filters {
        e.str(&f.name).u8(f.op).str(&f.value);
    }
}

/// Reads what [`put_filters`] wrote.
pub fn get_filters(d: &mut Dec<'_>) -> Result<Vec<WireFilter>, ProtoError> {
    let n = d.count(9)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = d.str()?.to_owned();
        let op = d.u8()?;
        if op > 3 {
            return Err(malformed(format!("unknown match operator {op}")));
        }
        let value = d.str()?.to_owned();
        out.push(WireFilter { name, op, value });
    }
    Ok(out)
}

/// One series on the wire: `u32 nlabels | (str, str)* | u32 nsamples | i64* | f64*`.
#[derive(Clone, Debug, PartialEq)]
pub struct WireSeries {
    /// (name, value) pairs.
    pub labels: Vec<(String, String)>,
    /// Millisecond timestamps.
    pub timestamps: Vec<i64>,
    /// Values, parallel to `timestamps`.
    pub values: Vec<f64>,
}

/// Writes one series from borrowed parts.
pub fn put_series<'a>(
    e: &mut Enc,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    timestamps: &[i64],
    values: &[f64],
) {
    e.u32(labels.len() as u32);
    for (n, v) in labels {
        e.str(n).str(v);
    }
    e.u32(timestamps.len() as u32);
    for &t in timestamps {
        e.i64(t);
    }
    for &v in values {
        e.f64(v);
    }
}

/// Reads one series.
pub fn get_series(d: &mut Dec<'_>) -> Result<WireSeries, ProtoError> {
    let nl = d.count(8)?;
    let mut labels = Vec::with_capacity(nl);
    for _ in 0..nl {
        labels.push((d.str()?.to_owned(), d.str()?.to_owned()));
    }
    let ns = d.count(16)?;
    let mut timestamps = Vec::with_capacity(ns);
    for _ in 0..ns {
        timestamps.push(d.i64()?);
    }
    let mut values = Vec::with_capacity(ns);
    for _ in 0..ns {
        values.push(d.f64()?);
    }
    Ok(WireSeries {
        labels,
        timestamps,
        values,
    })
}

/// Writes a string list.
pub fn put_strings(e: &mut Enc, items: &[String]) {
    e.u32(items.len() as u32);
    for s in items {
        e.str(s);
    }
}

/// Reads a string list.
pub fn get_strings(d: &mut Dec<'_>) -> Result<Vec<String>, ProtoError> {
    let n = d.count(4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(d.str()?.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let payload = b"hello hello hello".repeat(100);
        let frame = encode_frame(&payload).unwrap();
        assert!(frame.len() < payload.len(), "compressed");
        let mut r = &frame[..];
        assert_eq!(read_frame(&mut r).unwrap(), payload);
        // A huge length is refused before anything is allocated.
        let mut bad = &[0xff, 0xff, 0xff, 0xff][..];
        assert!(matches!(read_frame(&mut bad), Err(ProtoError::Malformed(_))));
        // Not zstd.
        let mut junk = vec![0, 0, 0, 3, 1, 2, 3];
        let mut r = &junk[..];
        assert!(matches!(read_frame(&mut r), Err(ProtoError::Malformed(_))));
        junk.truncate(5);
        let mut r = &junk[..];
        assert!(matches!(read_frame(&mut r), Err(ProtoError::Io(_))));
    }

    #[test]
    fn hello_checks_version_magic_and_service() {
        let mut buf = [0u8; 13];
        buf.copy_from_slice(&hello(Service::Insert, PROTOCOL_VERSION));
        assert_eq!(parse_hello(&buf, Service::Insert), Ok(PROTOCOL_VERSION));
        let err = parse_hello(&buf, Service::Select).unwrap_err();
        assert!(err.contains("serves select RPC"), "{err}");
        buf.copy_from_slice(&hello(Service::Insert, 7));
        let err = parse_hello(&buf, Service::Insert).unwrap_err();
        assert!(err.contains("version 2") && err.contains("version 7"), "{err}");
        buf[0] = b'X';
        assert!(parse_hello(&buf, Service::Insert).is_err());
    }

    #[test]
    fn series_and_filters_round_trip() {
        let mut e = Enc::default();
        put_series(
            &mut e,
            [("__name__", "up"), ("job", "a")].into_iter(),
            &[1, 2],
            &[f64::from_bits(0x7ff0_0000_0000_0002), 3.5],
        );
        put_filters(
            &mut e,
            &[WireFilter {
                name: "job".into(),
                op: 2,
                value: "a.*".into(),
            }],
        );
        let mut d = Dec::new(&e.0);
        let s = get_series(&mut d).unwrap();
        assert_eq!(s.labels[1], ("job".to_owned(), "a".to_owned()));
        assert_eq!(s.values[0].to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(get_filters(&mut d).unwrap()[0].op, 2);
        assert!(d.is_done());
        // Truncations and hostile counts fail cleanly.
        for cut in 0..e.0.len() {
            let mut d = Dec::new(&e.0[..cut]);
            assert!(get_series(&mut d).and_then(|_| get_filters(&mut d)).is_err());
        }
        let mut d = Dec::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(get_strings(&mut d).is_err());
    }
}
