//! Ingestion: the batch type every decoder produces ([`MetricBatch`]), the [`SampleSink`] it goes
//! into, and the native protocol decoders (remote-write 1.0/2.0, JSON-lines import, text
//! exposition), with the [`IngestLimits`] every request is validated against.
//!
//! Every endpoint follows the same steps: decompress (bounded) → decode into a batch →
//! [`IngestLimits::validate`] → [`SampleSink::push`]. A request is all-or-nothing: if anything in
//! it is invalid, nothing of it is pushed.

pub mod batch;
pub mod decompress;
pub mod error;
pub mod exposition;
pub mod jsonl;
pub mod limits;
pub mod pipeline;
pub mod prompb;
pub mod remote_write;
pub mod sink;
mod wire;

pub use batch::{BatchOverflow, MetricBatch, SeriesRef};
pub use error::{IngestError, RejectReason};
pub use limits::IngestLimits;
pub use pipeline::{IngestFailure, Ingestor, RequestMeta, WriteSummary, parse_extra_labels};
pub use remote_write::{RemoteWriteStats, RemoteWriteVersion};
pub use sink::{MemorySink, PushOutcome, SampleSink, SinkError, StoredSeries};
pub use strata_storage::Tenant;
