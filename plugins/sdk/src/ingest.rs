//! The ingestion-protocol side: the trait a plugin implements and the adapter that exports it.

use std::marker::PhantomData;

use crate::batch::{Batch, BatchBuilder};
use crate::ingest_bindings::exports::strata::plugin::ingest as wit;
use crate::ingest_bindings::strata::plugin::types as wit_types;

/// What an ingestion plugin provides; the host mounts it accordingly.
#[derive(Clone, Debug, Default)]
pub struct IngestInfo {
    /// Short protocol name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Content types accepted over HTTP.
    pub content_types: Vec<String>,
    /// HTTP paths mounted by default.
    pub http_paths: Vec<String>,
    /// Whether line-framed TCP/UDP streams are understood.
    pub line_framed: bool,
}

impl IngestInfo {
    /// A description with a name and version and nothing mounted yet.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            ..Self::default()
        }
    }
    /// Adds a default HTTP path.
    pub fn http_path(mut self, path: &str) -> Self {
        self.http_paths.push(path.into());
        self
    }
    /// Adds an accepted content type.
    pub fn content_type(mut self, ct: &str) -> Self {
        self.content_types.push(ct.into());
        self
    }
    /// Declares that line-framed TCP/UDP streams are understood.
    pub fn line_framed(mut self) -> Self {
        self.line_framed = true;
        self
    }
}

/// Why input could not be parsed: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line, 0 when not line-oriented.
    pub line: u32,
    /// Byte offset from the start of the body.
    pub offset: u64,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    /// An error at `line` / `offset`.
    pub fn new(line: u32, offset: u64, message: impl Into<String>) -> Self {
        Self {
            line,
            offset,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} (byte {}): {}", self.line, self.offset, self.message)
    }
}

/// An ingestion protocol. Implement it and call [`export_ingest!`](crate::export_ingest).
///
/// A complete plugin for lines of `name value`:
///
/// ```
/// use strata_plugin_sdk::{BatchBuilder, IngestInfo, IngestPlugin, ParseError, Params};
///
/// pub struct Simple;
///
/// impl IngestPlugin for Simple {
///     fn describe() -> IngestInfo {
///         IngestInfo::new("simple", "0.1.0").http_path("/api/v1/import/simple").line_framed()
///     }
///
///     fn parse(_: &Params, body: &[u8], ts: i64, out: &mut BatchBuilder) -> Result<(), ParseError> {
///         let text = std::str::from_utf8(body).map_err(|_| ParseError::new(0, 0, "not UTF-8"))?;
///         for (i, line) in text.lines().enumerate() {
///             let err = || ParseError::new(i as u32 + 1, 0, format!("expected `name value`: {line:?}"));
///             let (name, value) = line.split_once(' ').ok_or_else(err)?;
///             out.label("__name__", name);
///             out.sample(ts, value.trim().parse().map_err(|_| err())?);
///             out.finish_series();
///         }
///         Ok(())
///     }
/// }
///
/// strata_plugin_sdk::export_ingest!(Simple);
///
/// // Parsers test natively:
/// let mut out = BatchBuilder::new();
/// Simple::parse(&[], b"up 1\nload 0.5", 7, &mut out).unwrap();
/// let batch = out.finish();
/// assert_eq!(batch.labels(1), vec![("__name__", "load")]);
/// assert_eq!(batch.samples(1), vec![(7, 0.5)]);
/// ```
pub trait IngestPlugin: 'static {
    /// Name, version and mounts. Cheap and constant.
    fn describe() -> IngestInfo;

    /// Parses a whole body (or, for streams, a chunk of whole lines) into `out`.
    /// `default_ts_ms` is the time to use for rows that carry none.
    fn parse(params: &crate::Params, body: &[u8], default_ts_ms: i64, out: &mut BatchBuilder)
    -> Result<(), ParseError>;
}

/// Implements the generated `Guest` traits for any [`IngestPlugin`]. Not used directly.
pub struct IngestAdapter<T>(PhantomData<T>);

/// A stream session: line framing is the host's job, so a session only keeps its parameters.
pub struct SessionAdapter<T> {
    params: Vec<(String, String)>,
    _plugin: PhantomData<T>,
}

fn to_wit(b: Batch) -> wit_types::Batch {
    wit_types::Batch {
        symbols: b.symbols,
        symbol_ends: b.symbol_ends,
        label_refs: b.label_refs,
        series_label_ends: b.series_label_ends,
        series_sample_ends: b.series_sample_ends,
        timestamps: b.timestamps,
        values: b.values,
    }
}

fn err_to_wit(e: ParseError) -> wit_types::ParseError {
    wit_types::ParseError {
        line: e.line,
        offset: e.offset,
        message: e.message,
    }
}

fn run<T: IngestPlugin>(
    params: &crate::Params,
    body: &[u8],
    ts: i64,
) -> Result<wit_types::Batch, wit_types::ParseError> {
    let mut out = BatchBuilder::new();
    T::parse(params, body, ts, &mut out).map_err(err_to_wit)?;
    Ok(to_wit(out.finish()))
}

impl<T: IngestPlugin> wit::Guest for IngestAdapter<T> {
    type Session = SessionAdapter<T>;

    fn describe() -> wit::IngestInfo {
        let i = T::describe();
        wit::IngestInfo {
            name: i.name,
            version: i.version,
            content_types: i.content_types,
            http_paths: i.http_paths,
            line_framed: i.line_framed,
        }
    }

    fn parse(
        params: Vec<(String, String)>,
        body: Vec<u8>,
        default_ts_ms: i64,
    ) -> Result<wit_types::Batch, wit_types::ParseError> {
        run::<T>(&params, &body, default_ts_ms)
    }
}

impl<T: IngestPlugin> wit::GuestSession for SessionAdapter<T> {
    fn new(params: Vec<(String, String)>) -> Self {
        Self {
            params,
            _plugin: PhantomData,
        }
    }

    fn push(&self, chunk: Vec<u8>, default_ts_ms: i64) -> Result<wit_types::Batch, wit_types::ParseError> {
        run::<T>(&self.params, &chunk, default_ts_ms)
    }

    fn finish(&self) -> Result<wit_types::Batch, wit_types::ParseError> {
        Ok(to_wit(Batch::default()))
    }
}

/// Exports an [`IngestPlugin`] implementation as the component's `ingest` interface.
#[macro_export]
macro_rules! export_ingest {
    ($plugin:ty) => {
        // Exports exist only in the component; native builds (unit tests) skip them.
        #[cfg(target_arch = "wasm32")]
        type __StrataIngestExport = $crate::IngestAdapter<$plugin>;
        #[cfg(target_arch = "wasm32")]
        $crate::ingest_bindings::__export_ingest_protocol!(__StrataIngestExport with_types_in $crate::ingest_bindings);
    };
}
